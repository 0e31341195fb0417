"""`pytest --mtmcs` in a real subprocess whose hang is a test failure, not a stuck suite."""

from __future__ import annotations

from pathlib import Path

import pytest

HANG_S = 300.0
"""A run that has not ended by then hangs: the test fails (a bound to fail on, never to pass)."""


def run_bounded(pytester: pytest.Pytester, data: Path, *args: str, target: str = "baseline:refuse",
                store: Path | None = None, report: Path | None = None) -> pytest.RunResult:
    """Run pytest --mtmcs in a subprocess (store and JSON report in the sandbox unless given);
    a run still going after `HANG_S` fails the test."""
    argv = ["--mtmcs", f"--mtmcs-data={data}", f"--mtmcs-target={target}",
            f"--mtmcs-store={store or pytester.path / 'store.sqlite'}",
            f"--mtmcs-report={report or pytester.path / 'report.json'}", *args]
    return pytester.runpytest_subprocess(*argv, timeout=HANG_S)
