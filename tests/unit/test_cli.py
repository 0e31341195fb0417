"""The `mtmcs` console script, run as a real subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from _runs import run_mtmcs


def _mtmcs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest_mtmcs.cli", *args], capture_output=True,
                          text=True)


def test_summary_of_a_stored_run(pytester: pytest.Pytester, dataset: Path) -> None:
    run_mtmcs(pytester, dataset, "--mtmcs-skip-questions", target="baseline:refuse")
    out = _mtmcs("summary", str(pytester.path / "report.json"))
    assert out.returncode == 0, out.stderr
    assert "target baseline:refuse" in out.stdout
    lines = out.stdout.splitlines()
    # The table may be split to fit the width: its parts, read in order, are the whole table.
    heads = [w for line in lines if line.startswith("   ") for w in line.split()]
    assert heads == ["type_a", "mm", "type_a", "uni", "type_b", "mm", "type_b", "uni", "all"]
    cells = [w for line in lines if line.startswith("refusal rate, unsafe") for w in line.split()[3:]]
    assert cells == ["1.00", ".34-1.00"] * 4 + ["1.00", ".68-1.00"]
    assert max(map(len, lines[1:])) <= 80  # the default width (the first line holds the path)


def test_summary_of_a_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text('{"version": 1}')
    out = _mtmcs("summary", str(bad))
    assert out.returncode == 4
    assert "not a pytest-mtmcs JSON report" in out.stderr
    assert _mtmcs("summary", str(tmp_path / "missing.json")).returncode == 4


@pytest.mark.parametrize("argv, message", [
    (["compare", "a.json"], "the following arguments are required: b"),
    (["score", ".", "--pass-score", "9"], "--pass-score"),
    (["score", ".", "--timeout", "nan"], "'nan': expected a number from 0 (exclusive) to 86400"),
    (["compare", "a.json", "b.json", "--fail-on-regression", "2"], "'2': expected a number from 0 (exclusive) to 0.5"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_a_bad_command_line_exits_4(argv: list[str], message: str) -> None:
    out = _mtmcs(*argv)
    assert out.returncode == 4, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr
