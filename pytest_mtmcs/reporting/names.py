"""Short, unambiguous names of guardrail stacks, shared by every view (terminal, Markdown, HTML,
plots).

A run measures one target under one or more guardrails. The target's spec is long
(`openai+http://127.0.0.1:8000/v1:Qwen/Qwen3-VL-8B-Instruct`) and the same in every stack, so a
view prints it once, in a heading, and names each stack by its guardrail: `none`, `dpp`,
`llama-guard:Llama-Guard-3-11B-Vision` (a checkpoint path by its last part). Names are made
together, so two stacks never get the same one: `llama-guard:/a/ckpt` and `llama-guard:/b/ckpt`
become `llama-guard:a/ckpt` and `llama-guard:b/ckpt`. Only a report of several targets puts a
target in a stack's name (`Qwen3-VL-8B-Instruct + dpp`), shortened the same way.

Names are plain text: each view still makes them inert (`textsafety`) where it prints them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

from pytest_mtmcs.reporting.layout import clip_middle

__all__ = ["guardrail_name", "label_names", "stack_names", "target_name", "targets"]

_PATH_SEP = re.compile(r"[/\\]")
_SHORT_TARGET = 24
"""A target spec up to this long is its own name."""


def _parts(text: str) -> list[str]:
    return [p for p in _PATH_SEP.split(text) if p]


def guardrail_name(spec: str, parts: int = 1) -> str:
    """`name:arg` with a path-like `arg` kept to its last `parts` path parts
    (`llama-guard:/models/Llama-Guard-3-11B-Vision` -> `llama-guard:Llama-Guard-3-11B-Vision`);
    any other spec as it is (`none`, `dpp`, `nemo:self_check`)."""
    name, colon, arg = spec.partition(":")
    pieces = _parts(arg)
    if not colon or len(pieces) <= parts:
        return spec
    return f"{name}:{'/'.join(pieces[-parts:])}"


def target_name(spec: str, parts: int = 1) -> str:
    """A short target spec as it is; a long one by its last `parts` path parts
    (`openai+http://127.0.0.1:8000/v1:Qwen/Qwen3-VL-8B-Instruct` -> `Qwen3-VL-8B-Instruct`)."""
    pieces = _parts(spec)
    if len(spec) <= _SHORT_TARGET or len(pieces) <= parts:
        return spec
    return "/".join(pieces[-parts:])


def _distinct(specs: Sequence[str], shorten: Callable[[str, int], str]) -> dict[str, str]:
    """A name per distinct spec, no two alike: every spec starts at its shortest name, and the
    specs whose names collide take one more path part, until none collide (a spec at full length
    is unique, since the specs are distinct)."""
    level = dict.fromkeys(specs, 1)
    while True:
        names = {s: shorten(s, level[s]) for s in level}
        holders: dict[str, list[str]] = {}
        for s, n in names.items():
            holders.setdefault(n, []).append(s)
        grow = [s for group in holders.values() if len(group) > 1 for s in group if names[s] != s]
        if not grow:
            return names
        for s in grow:
            level[s] += 1


def targets(stacks: Iterable[tuple[str, str]]) -> list[str]:
    """The distinct targets of (target, guardrail) stacks, in order."""
    return list(dict.fromkeys(t for t, _ in stacks))


def stack_names(stacks: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """A short name per (target, guardrail) stack, unique among them.

    With one target, a stack is named by its guardrail (`none`, `dpp`, shortened paths);
    with several, by its target's short name, and ` + guardrail` when it has one."""
    order = list(dict.fromkeys(stacks))
    guards = _distinct(list(dict.fromkeys(g for _, g in order)), guardrail_name)
    several = len(targets(order)) > 1
    tnames = _distinct(targets(order), target_name) if several else {}
    out: dict[tuple[str, str], str] = {}
    for t, g in order:
        out[(t, g)] = guards[g] if not several else (
            tnames[t] if g == "none" else f"{tnames[t]} + {guards[g]}")
    # Belt and braces: a target's short name may read like another's `name + guardrail`.
    seen: dict[str, int] = {}
    for key, name in out.items():
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            out[key] = f"{name} #{seen[name]}"
    return out


COMPARE_LABEL_ROOM = 40
"""How long `compare` lets a stack's label be on an A/B or baseline record (`clip_middle`)."""


def label_names(stacks: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Every label a stored record may carry for one of `stacks` -> that stack's short name:
    the `target + guardrail` label, that label as `compare` clips it on A/B and baseline
    records, and the bare guardrail (the labels of a run's own A/B tables) where only one
    target has it. A view looks a record's label up here and shows it as it is when absent."""
    names = stack_names(stacks)
    out: dict[str, str] = {}
    owners: dict[str, set[str]] = {}
    for (t, g), name in names.items():
        label = t if g == "none" else f"{t} + {g}"
        out[clip_middle(label, COMPARE_LABEL_ROOM)] = name
        out[label] = name
        owners.setdefault(g, set()).add(t)
    for (_, g), name in names.items():
        if len(owners[g]) == 1:
            out.setdefault(g, name)
    return out
