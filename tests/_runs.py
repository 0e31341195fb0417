"""Running `pytest --mtmcs` in a pytester sandbox, and reading what it wrote."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest


def run_mtmcs(pytester: pytest.Pytester, data: Path, *args: str, target: str = "baseline:refuse",
              subprocess: bool = False) -> pytest.RunResult:
    """Run pytest --mtmcs on a dataset, with the store and the JSON report in the sandbox.

    Runs with xdist (`-n...`) or `subprocess=True` go through a real subprocess.
    """
    argv = ["--mtmcs", f"--mtmcs-data={data}", f"--mtmcs-target={target}",
            f"--mtmcs-store={pytester.path / 'store.sqlite'}",
            f"--mtmcs-report={pytester.path / 'report.json'}", *args]
    # Only runs on the built-in baselines stay in-process. An in-process pytester run restores
    # sys.modules afterwards, dropping what the run imported lazily: torch cannot be imported
    # twice, and the HTTP client's half-dropped modules stop mapping its own exceptions.
    local = ("baseline:", "scripted:")
    judges = [a.split("=", 1)[1] for a in args if a.startswith("--mtmcs-judge=")]
    in_process = target.startswith(local) and all(j.startswith(local) for j in judges)
    if subprocess or not in_process or any(a.startswith("-n") for a in args):
        return pytester.runpytest_subprocess(*argv)
    return pytester.runpytest(*argv)


def load_report(pytester: pytest.Pytester) -> dict[str, Any]:
    """The JSON report the last run wrote."""
    return json.loads((pytester.path / "report.json").read_text())


def rates(report: dict[str, Any]) -> dict[tuple[str, str], tuple[float | None, float | None]]:
    """(split, modality) -> (refusal rate on unsafe, over-refusal rate on safe), without the
    overall group."""
    out = {}
    for g in report["summary"]:
        if g["split"] == "all":
            continue
        r, o = g["refusal_rate_unsafe"], g["over_refusal_rate_safe"]
        out[(g["split"], g["modality"])] = (r["k"] / r["n"] if r["n"] else None,
                                            o["k"] / o["n"] if o["n"] else None)
    return out


def pytest_command() -> list[str]:
    """The `pytest` console script of this environment (as a user runs it), else `python -m pytest`."""
    script = shutil.which("pytest", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "pytest"]
