"""Guardrails by name: `--mtmcs-guardrail none,dpp,llama-guard:/models/Llama-Guard-3-1B`.

Built in: the benchmark paper's five defenses (`dpp`, `adashield-s`, `adashield-a` (alias
`adashield`), `self-reflection`, `immune`, `cot`), `llama-guard` (through transformers) and `nemo`
(NeMo Guardrails). Your own guardrails register a factory in-process with `register_guardrail`
(e.g. from a conftest.py), and third-party packages under the entry-point group
`pytest_mtmcs.guardrails`:

    [project.entry-points."pytest_mtmcs.guardrails"]
    my-guard = "my_package.guard:from_spec"

A factory is `from_spec(arg: str | None, options: GuardrailOptions, target: Target) -> Guardrail`,
where `arg` is what follows the first `:` of the name (`llama-guard:/models/x` -> `/models/x`).
Factories are imported lazily: naming a guardrail costs nothing until it is built.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path

from pytest_mtmcs.dataset.resources import Traversable, describe, join, packaged
from pytest_mtmcs.errors import SpecError
from pytest_mtmcs.guardrails.base import GuardContext, GuardedTarget, Guardrail
from pytest_mtmcs.targets.base import Target, TargetOptions, qualified_name
from pytest_mtmcs.targets.registry import registration_conflict

__all__ = ["ENTRY_POINT_GROUP", "Factory", "GuardContext", "GuardedTarget", "Guardrail",
           "GuardrailOptions", "known_guardrails", "make_guardrail", "parse_guardrails",
           "register_guardrail", "shipped_configs"]

ENTRY_POINT_GROUP = "pytest_mtmcs.guardrails"
NONE = "none"

_BUILTIN: dict[str, str] = {
    "dpp": "pytest_mtmcs.guardrails.prompting:dpp",
    "adashield-s": "pytest_mtmcs.guardrails.prompting:adashield_static",
    "adashield-a": "pytest_mtmcs.guardrails.prompting:adashield_adaptive",
    "adashield": "pytest_mtmcs.guardrails.prompting:adashield_adaptive",
    "self-reflection": "pytest_mtmcs.guardrails.prompting:self_reflection",
    "cot": "pytest_mtmcs.guardrails.prompting:cot",
    "immune": "pytest_mtmcs.guardrails.immune:from_spec",
    "llama-guard": "pytest_mtmcs.guardrails.llama_guard:from_spec",
    "nemo": "pytest_mtmcs.guardrails.nemo:from_spec",
}


def shipped_configs() -> Traversable:
    """The configs shipped with pytest-mtmcs: the data package `pytest_mtmcs.guardrail_configs`
    (the repository's `guardrails/`; in a source checkout with an editable install, that
    folder itself). A Traversable: read it through `GuardrailOptions.config`."""
    return packaged("pytest_mtmcs.guardrail_configs", "guardrails")


def default_config_dir(rootdir: Path | None = None) -> Traversable:
    """The project's own `guardrails/` folder when it has one, else the shipped configs
    (`shipped_configs()`). `--mtmcs-guardrails-dir` comes before both (see `build_stacks`)."""
    if rootdir is not None and (rootdir / "guardrails").is_dir():
        return rootdir / "guardrails"
    return shipped_configs()


@dataclass(frozen=True)
class GuardrailOptions:
    """Settings every guardrail factory receives."""

    config_dir: Traversable = field(default_factory=default_config_dir)
    """The folder of declarative configs (prompt texts, policies, NeMo config folders): a Path,
    or the shipped configs as an `importlib.resources` Traversable (read files through it; a
    NeMo folder is made a real one with `pytest_mtmcs.dataset.resources.as_folder`)."""
    model: str | None = None
    """Spec of the helper model some guardrails call (NeMo's rails, Immune's scorer, the
    self-reflection critic); None: the target under test itself."""
    threshold: float = 0.5
    """Classifier guardrails block when P(unsafe) is at least this."""
    scope: str = "last"
    """What input rails see: `last` user message (NeMo's default) or the whole `dialogue`."""
    candidates: int = 4
    """Immune: candidates per reply."""
    device: str = "cpu"
    """Device of local models."""
    dtype: str = "auto"
    """Torch dtype of local models (auto, float32, bfloat16, float16)."""
    target_options: TargetOptions = field(default_factory=TargetOptions)
    """Options for helper models built from specs."""

    def config(self, *parts: str) -> Traversable:
        """A file or folder inside the config folder (a Path when the folder is one); a clear
        error when it is missing."""
        item = join(self.config_dir, *parts)
        if not (item.is_file() or item.is_dir()):
            raise SpecError(f"guardrail config {describe(item)} does not exist (config folder: "
                            f"{describe(self.config_dir)}; see --mtmcs-guardrails-dir)")
        return item

    def helper(self, target: Target) -> Target:
        """The helper model: `model` built from its spec, else the target itself."""
        if self.model is None:
            return target
        from pytest_mtmcs.targets import make_target

        return make_target(self.model, self.target_options)


Factory = Callable[[str | None, GuardrailOptions, Target], Guardrail]
"""`factory(arg, options, target) -> Guardrail`; `arg` is what follows `NAME:`, or None."""

_REGISTERED: dict[str, Factory] = {}
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
"""What a registered name looks like: no `,` or `:` (they separate names and arguments in
--mtmcs-guardrail), and nothing that would need quoting in an item id."""


def register_guardrail(name: str, factory: Factory) -> None:
    """Make `--mtmcs-guardrail NAME[:ARG]` build a guardrail with `factory(ARG, options,
    target)`, in this process. Call it at import time of a conftest.py that pytest loads at
    start-up (the rootdir's), or of a plugin: the names are checked when the run starts, and
    every xdist worker imports those files too.

    Registering the same factory again (a conftest imported anew) replaces it. Raises
    SpecError for a malformed name, `none`, a built-in or installed name, or one registered
    with another factory.

    Example, in a conftest.py::

        register_guardrail("blocklist", lambda arg, options, target: Blocklist())
    """
    if not isinstance(name, str) or not NAME.fullmatch(name) or name == NONE:
        raise SpecError(f"register_guardrail: invalid name {name!r}; expected letters, digits, "
                        "'_', '.' or '-' (no ',' or ':'), not 'none', e.g. 'blocklist'")
    if not callable(factory):
        raise SpecError(f"register_guardrail({name!r}, {factory!r}): the factory is not callable; "
                        "expected factory(arg, options: GuardrailOptions, target: Target) -> Guardrail")
    taken = registration_conflict(name, factory, builtin=_BUILTIN, registered=_REGISTERED,
                                  group=ENTRY_POINT_GROUP)
    if taken:
        raise SpecError(f"register_guardrail: name {name!r} is {taken}; pick another name "
                        f"(known guardrails: {', '.join(sorted(known_guardrails()))})")
    _REGISTERED[name] = factory


def parse_guardrails(value: str) -> list[tuple[str, str | None]]:
    """`none,dpp,llama-guard:/x` -> [("none", None), ("dpp", None), ("llama-guard", "/x")].
    Names must be known and appear once."""
    out: list[tuple[str, str | None]] = []
    known = known_guardrails()
    for item in (x.strip() for x in value.split(",")):
        if not item:
            continue
        name, _, arg = item.partition(":")
        name = name.strip()
        if name != NONE and name not in known:
            raise SpecError(f"unknown guardrail {name!r}; expected none or one of "
                            f"{', '.join(sorted(known))} (or a name registered with "
                            "pytest_mtmcs.register_guardrail in the rootdir's conftest.py, or "
                            f"under the entry-point group {ENTRY_POINT_GROUP!r})")
        if any(n == name for n, _ in out):
            raise SpecError(f"guardrail {name!r} is named twice")
        out.append((name, arg.strip() or None))
    if not out:
        raise SpecError("expected at least one guardrail name (or none)")
    return out


def known_guardrails() -> dict[str, str]:
    """Name -> where its factory lives ("module:factory", or "module.QualName" for one
    registered in-process) of every guardrail: built in, registered and installed."""
    names = dict(_BUILTIN)
    names.update((n, qualified_name(f)) for n, f in _REGISTERED.items())
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        names.setdefault(ep.name, ep.value)
    return names


def _factory(name: str) -> Factory:
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name in _BUILTIN:
        module, _, attr = _BUILTIN[name].partition(":")
        return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return ep.load()  # type: ignore[no-any-return]
    raise SpecError(f"unknown guardrail {name!r}; known: {', '.join(sorted(known_guardrails()))}")


def make_guardrail(name: str, arg: str | None, options: GuardrailOptions, target: Target) -> Guardrail:
    """Build a guardrail by name. Raises SpecError for an unknown name or a factory that
    returns something other than a Guardrail."""
    guardrail = _factory(name)(arg, options, target)
    if not isinstance(guardrail, Guardrail):
        raise SpecError(f"the factory of guardrail {name!r} returned {guardrail!r}, not a "
                        "pytest_mtmcs.Guardrail")
    guardrail.name = name
    return guardrail
