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
    from pytest_mtmcs.testing.transport import refusing_url

__all__ = ["FAULT_KINDS", "FaultKind", "FaultPlan", "MockOpenAIServer", "RecordedCall", "default_reply",
           "refusing_url"]


def __getattr__(name: str) -> Any:
    if name == "refusing_url":
        from pytest_mtmcs.testing import transport

        return transport.refusing_url
    if name in __all__:
        from pytest_mtmcs.testing import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
