"""Test helpers for pytest-mtmcs and its users: a real OpenAI-compatible mock server.

    from pytest_mtmcs.testing import FaultPlan, MockOpenAIServer

Names load lazily (PEP 562), so importing this package costs nothing until one is used and
`python -m pytest_mtmcs.testing.server` runs without a double import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_mtmcs.testing.server import (
        FAULT_KINDS,
        FaultKind,
        FaultPlan,
        MockOpenAIServer,
        RecordedCall,
        default_reply,
    )

__all__ = ["FAULT_KINDS", "FaultKind", "FaultPlan", "MockOpenAIServer", "RecordedCall", "default_reply"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from pytest_mtmcs.testing import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
