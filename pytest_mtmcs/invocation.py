"""Our options' values must not choose pytest's rootdir and config file.

pytest picks the rootdir and the config file (`pyproject.toml`, `pytest.ini`, ...) from the
command line's test paths before any plugin is loaded, when it does not yet know that
`--mtmcs-data` takes a value. Written with a space (`--mtmcs-data /abs/dataset`), the value is
then read as a test path: the rootdir moves to the dataset's folder, another project's config
(or none) is read, and with `mtmcs = true` gone from the config the benchmark silently does
not run. The `=` spelling (`--mtmcs-data=/abs/dataset`) is one word and never read as a path.

So, before the session starts, `rerun_args` finds every `--mtmcs-X VALUE` whose VALUE pytest
took for a test path (a separate word naming an existing file or folder, as pytest's own rule
has it) and, when there is one, the run is made again in this process with each such pair
joined into `--mtmcs-X=VALUE`. The second run reads the user's config; its result is the
run's result. `PYTEST_ADDOPTS` is read and rewritten the same way. Import-light: imported by
the plugin at start-up.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_mtmcs.settings import OPTIONS

__all__ = ["VALUE_FLAGS", "Rerun", "join_values", "rerun_args", "run_again"]

VALUE_FLAGS: frozenset[str] = frozenset(f"--mtmcs-{o.name}" for o in OPTIONS if o.kind != "bool")
"""Our options that take a value (flags without one are never followed by a stray path)."""


def _read_as_path(word: str, base: Path) -> bool:
    """pytest's rule for a command-line word that may move the rootdir: not an option, and its
    file part (before `::`) names an existing file or folder."""
    if word.startswith("-"):
        return False
    try:
        return (base / word.split("::")[0]).exists()
    except (OSError, ValueError):  # a name too long, a NUL byte: not a path pytest can use
        return False


def join_values(args: Sequence[str], base: Path) -> list[str] | None:
    """`args` with every `--mtmcs-X VALUE` joined into `--mtmcs-X=VALUE`, or None when no VALUE
    would be read as a test path (then nothing needs to change). Words after `--` are
    positional arguments and stay as they are."""
    out: list[str] = []
    misread = False
    i = 0
    while i < len(args):
        word = args[i]
        if word == "--":
            out.extend(args[i:])
            break
        if word in VALUE_FLAGS and i + 1 < len(args) and not args[i + 1].startswith("-"):
            value = args[i + 1]
            misread = misread or _read_as_path(value, base)
            out.append(f"{word}={value}")
            i += 2
            continue
        out.append(word)
        i += 1
    return out if misread else None


@dataclass(frozen=True)
class Rerun:
    """How to run again: the command line, and `PYTEST_ADDOPTS` (None: leave it as it is)."""

    args: list[str]
    addopts: str | None


def rerun_args(config: pytest.Config) -> Rerun | None:
    """The run to make instead of this one, or None when our options' values did not steer
    pytest's choice of rootdir. xdist workers, `--help` and `--version` are never run again."""
    if hasattr(config, "workerinput") or config.getoption("help") or config.getoption("version"):
        return None
    base = Path(config.invocation_params.dir)
    args = list(config.invocation_params.args)
    joined = join_values(args, base)
    env = os.environ.get("PYTEST_ADDOPTS", "")
    try:
        env_words = shlex.split(env)
    except ValueError:  # pytest itself rejects an unbalanced quote before we are loaded
        env_words = []
    env_joined = join_values(env_words, base) if env_words else None
    if joined is None and env_joined is None:
        return None
    return Rerun(args=joined if joined is not None else args,
                 addopts=shlex.join(env_joined) if env_joined is not None else None)


@contextmanager
def _addopts(value: str | None) -> Iterator[None]:
    if value is None:
        yield
        return
    old = os.environ.get("PYTEST_ADDOPTS")
    os.environ["PYTEST_ADDOPTS"] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PYTEST_ADDOPTS", None)
        else:
            os.environ["PYTEST_ADDOPTS"] = old


_QUIET_REIMPORT = ("-W", "ignore:Module already imported so cannot be rewritten; pytest_mtmcs"
                         ":pytest.PytestAssertRewriteWarning")
"""The second run finds this plugin imported by the first, which pytest would warn about."""


def run_again(config: pytest.Config, rerun: Rerun) -> int:
    """Run pytest again in this process with the joined command line; its exit code."""
    with _addopts(rerun.addopts):
        return int(pytest.main([*_QUIET_REIMPORT, *rerun.args],
                               plugins=list(config.invocation_params.plugins or ())))
