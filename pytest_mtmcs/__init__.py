"""pytest-mtmcs: MTMCS-Bench contextual-safety evaluation as a pytest plugin.

The public extension API, for a conftest.py or a plugin (README, "Extend it")::

    from pytest_mtmcs import Reply, Target, register_target
    from pytest_mtmcs import GuardContext, Guardrail, register_guardrail

Importing this package is cheap: pytest imports it on every run (the plugin module lives in it),
so the names below are loaded on first use (PEP 562), and only pydantic comes with them; model
libraries and HTTP clients load when a target that needs them is built.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from pytest_mtmcs.chat import Conversation, GenParams, Message, Reply
    from pytest_mtmcs.dataset import Case
    from pytest_mtmcs.guardrails import GuardrailOptions, register_guardrail
    from pytest_mtmcs.guardrails.base import GuardContext, GuardedTarget, Guardrail
    from pytest_mtmcs.reporting.report import RunReport
    from pytest_mtmcs.targets import register_target
    from pytest_mtmcs.targets.base import Target, TargetOptions

_EXPORTS: dict[str, str] = {
    "Conversation": "pytest_mtmcs.chat",
    "GenParams": "pytest_mtmcs.chat",
    "Message": "pytest_mtmcs.chat",
    "Reply": "pytest_mtmcs.chat",
    "Target": "pytest_mtmcs.targets.base",
    "TargetOptions": "pytest_mtmcs.targets.base",
    "register_target": "pytest_mtmcs.targets",
    "Guardrail": "pytest_mtmcs.guardrails.base",
    "GuardContext": "pytest_mtmcs.guardrails.base",
    "GuardedTarget": "pytest_mtmcs.guardrails.base",
    "GuardrailOptions": "pytest_mtmcs.guardrails",
    "register_guardrail": "pytest_mtmcs.guardrails",
    "Case": "pytest_mtmcs.dataset",
    "RunReport": "pytest_mtmcs.reporting.report",
}
"""Public name -> the module that defines it (imported on first access)."""

__all__ = ["Case", "Conversation", "GenParams", "GuardContext", "GuardedTarget", "Guardrail",
           "GuardrailOptions", "Message", "Reply", "RunReport", "Target", "TargetOptions",
           "__version__", "register_guardrail", "register_target"]


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_mtmcs' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
