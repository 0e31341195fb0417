"""Targets by spec: `openai:MODEL`, `openai+URL:MODEL`, `hf:PATH`, `smollm2`, `baseline:refuse`,
`baseline:comply`, `scripted:FILE`, any scheme registered in-process with `register_target`
(e.g. from a conftest.py), and any registered under the entry-point group `pytest_mtmcs.targets`:

    [project.entry-points."pytest_mtmcs.targets"]
    inhouse = "my_package.target:from_spec"

A factory is `from_spec(rest: str, options: TargetOptions) -> Target`, where `rest` is what
follows `SCHEME:` (a Target subclass whose `__init__` takes those two arguments is a factory).
Factories are imported lazily, so naming a spec costs nothing until the target is built.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from importlib.metadata import entry_points

from pytest_mtmcs.errors import SpecError
from pytest_mtmcs.targets.base import Target, TargetOptions
from pytest_mtmcs.targets.registry import registration_conflict

__all__ = ["ENTRY_POINT_GROUP", "Factory", "Target", "TargetOptions", "known_schemes",
           "make_target", "parse_spec", "register_target"]

Factory = Callable[[str, TargetOptions], Target]

_BUILTIN: dict[str, str] = {
    "openai": "pytest_mtmcs.targets.openai_compat:from_spec",
    "hf": "pytest_mtmcs.targets.hf_spec:from_spec",
    "smollm2": "pytest_mtmcs.targets.smollm2:from_spec",
    "baseline": "pytest_mtmcs.targets.baseline:from_spec",
    "scripted": "pytest_mtmcs.targets.scripted:from_spec",
}
_REGISTERED: dict[str, Factory] = {}
ENTRY_POINT_GROUP = "pytest_mtmcs.targets"
SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")
"""What a registered scheme looks like: no `:` or `+` (they end the scheme in a spec)."""


def register_target(scheme: str, factory: Factory) -> None:
    """Make `--mtmcs-target SCHEME:REST` build a target with `factory(REST, options)`, in this
    process. Call it at import time of a conftest.py that pytest loads at start-up (the
    rootdir's), or of a plugin; every xdist worker imports those too.

    Registering the same factory again (a conftest imported anew) replaces it. Raises
    SpecError for a malformed scheme, a built-in or installed one, or one registered with
    another factory.

    Example, in a conftest.py::

        register_target("inhouse", InHouseTarget)  # --mtmcs-target inhouse:MODEL
    """
    if not isinstance(scheme, str) or not SCHEME.fullmatch(scheme):
        raise SpecError(f"register_target: invalid scheme {scheme!r}; expected a letter, then "
                        "letters, digits, '_', '.' or '-' (no ':' or '+'), e.g. 'inhouse'")
    if not callable(factory):
        raise SpecError(f"register_target({scheme!r}, {factory!r}): the factory is not callable; "
                        "expected factory(rest: str, options: TargetOptions) -> Target")
    taken = registration_conflict(scheme, factory, builtin=_BUILTIN, registered=_REGISTERED,
                                  group=ENTRY_POINT_GROUP)
    if taken:
        raise SpecError(f"register_target: scheme {scheme!r} is {taken}; pick another name "
                        f"(known schemes: {', '.join(known_schemes())})")
    _REGISTERED[scheme] = factory


def parse_spec(spec: str) -> tuple[str, str]:
    """Split a spec into (scheme, rest). `openai+URL:MODEL` has scheme `openai`, rest `+URL:MODEL`.

    Raises SpecError naming the allowed forms.
    """
    spec = spec.strip()
    if spec == "smollm2":
        return "smollm2", ""
    for i, ch in enumerate(spec):
        if ch == ":":
            scheme, rest = spec[:i], spec[i + 1:]
            break
        if ch == "+":
            scheme, rest = spec[:i], spec[i:]
            break
    else:
        scheme, rest = spec, ""
    if not scheme or not rest:
        raise SpecError(
            f"cannot parse target spec {spec!r}: expected SCHEME:VALUE, e.g. openai:gpt-4o, "
            "openai+http://127.0.0.1:8000/v1:MODEL, hf:/path/to/model, smollm2, baseline:refuse, "
            f"baseline:comply, scripted:replies.json (known schemes: {', '.join(known_schemes())})"
        )
    return scheme, rest


def known_schemes() -> list[str]:
    """Every scheme a spec may start with."""
    names = set(_BUILTIN) | set(_REGISTERED)
    names |= {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return sorted(names)


def _factory(scheme: str) -> Factory:
    if scheme in _REGISTERED:
        return _REGISTERED[scheme]
    if scheme in _BUILTIN:
        module, _, attr = _BUILTIN[scheme].partition(":")
        return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == scheme:
            return ep.load()  # type: ignore[no-any-return]
    raise SpecError(f"unknown target scheme {scheme!r}; known: {', '.join(known_schemes())}")


def make_target(spec: str, options: TargetOptions | None = None) -> Target:
    """Build the target a spec names. Raises SpecError for bad specs and for a factory that
    returns something other than a Target."""
    scheme, rest = parse_spec(spec)
    target = _factory(scheme)(rest, options or TargetOptions())
    if not isinstance(target, Target):
        raise SpecError(f"the factory of target scheme {scheme!r} returned {target!r}, not a "
                        "pytest_mtmcs.Target")
    target.spec = spec.strip()
    return target
