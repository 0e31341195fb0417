"""Which of pytest's own options left part of the selected benchmark unrun.

`-k`, `-m`, `--lf`, `--deselect` and `--sw` select part of the collected tests; `-x` and
`--maxfail` stop early. The run's coverage (`reporting.coverage.RunCoverage`) names the ones in
force, so that a partial run says why it is partial.
"""

from __future__ import annotations

import pytest

__all__ = ["selection_reasons"]

_SELECTING = (("keyword", "-k"), ("markexpr", "-m"), ("lf", "--lf"), ("deselect", "--deselect"),
              ("stepwise", "--sw"))
"""pytest options (dest, flag) that select part of the collected tests."""


def selection_reasons(config: pytest.Config) -> tuple[str, ...]:
    """The pytest options in force that can leave benchmark items unrun, as written."""
    out = []
    for dest, flag in _SELECTING:
        value = config.getoption(dest, None)
        if value:
            out.append(f"{flag} {value!r}" if isinstance(value, str) else flag)
    maxfail = config.getoption("maxfail", 0)
    if maxfail:
        out.append("-x" if maxfail == 1 else f"--maxfail {maxfail}")
    return tuple(out)
