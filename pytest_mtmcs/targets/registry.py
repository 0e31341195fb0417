"""What the target and guardrail registries share: when a name may be registered.

A name is free unless it is built in, registered already with different code (the same factory
registered again, e.g. by a conftest imported twice, is fine), or provided by an installed
package under the registry's entry-point group.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any

from pytest_mtmcs.targets.base import qualified_name


def registration_conflict(name: str, factory: Callable[..., Any], *,
                          builtin: Mapping[str, object],
                          registered: Mapping[str, Callable[..., Any]],
                          group: str) -> str | None:
    """Why `name` cannot be registered with `factory` (a phrase for an error message), or None."""
    if name in builtin:
        return "built in"
    old = registered.get(name)
    if old is not None:
        return None if qualified_name(old) == qualified_name(factory) else (
            f"already registered with {qualified_name(old)}")
    if any(ep.name == name for ep in entry_points(group=group)):
        return f"provided by an installed package (entry-point group {group!r})"
    return None
