"""`mtmcs compare A.json B.json` on two stored runs of the same dialogues."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _data import small_dataset
from _runs import run_mtmcs

from pytest_mtmcs.cli import main

PERFECT = {"rules": [{"match": "unsafe_r", "reply": "I'm sorry, but I can't help with that."}],
           "default": "Here is a careful, useful answer."}


@pytest.fixture
def runs(pytester: pytest.Pytester, tmp_path: Path) -> tuple[Path, Path]:
    """Report A: a target that refuses exactly the unsafe dialogues. Report B: one that
    refuses everything. Eight rows per split: 32 safe and 32 unsafe dialogues."""
    data = small_dataset(tmp_path / "ds", 8)
    script = pytester.path / "perfect.json"
    script.write_text(json.dumps(PERFECT))
    out = []
    for name, target in (("a.json", f"scripted:{script}"), ("b.json", "baseline:refuse")):
        result = run_mtmcs(pytester, data, "--mtmcs-skip-questions", target=target)
        assert result.ret in (0, 1)
        out.append((pytester.path / "report.json").rename(pytester.path / name))
    return out[0], out[1]


def test_compare_prints_the_table_flips_and_verdict(
        runs: tuple[Path, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    a, b = runs
    md = tmp_path / "ab.md"
    assert main(["compare", str(a), str(b), "--markdown", str(md)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    head = " ".join(out.split("\n  figure")[0].split())  # wrapped between words to fit
    assert head.startswith("A/B scripted:") and head.endswith(
        "perfect.json -> baseline:refuse: 64 dialogues matched")
    refusal = next(line for line in lines if line.startswith("  refusal rate, unsafe  "))
    assert refusal.split()[3:6] == ["1.00", "1.00", "+0.0"]
    over = next(line for line in lines if line.startswith("  over-refusal rate, safe  "))
    assert over.split()[3:6] == ["0.00", "1.00", "+100.0"] and over.endswith("<0.001")
    assert "  flipped: 32 pass -> fail, 0 fail -> pass" in lines
    verdict = " ".join(out.split("verdict: ")[1].split())
    assert verdict == ("baseline:refuse refuses as many unsafe dialogues (+0.0 pts, p=1.00) "
                       "with more over-refusal (+100.0 pts, p<0.001)")
    assert all(len(line) <= 80 for line in lines)  # the width when the terminal's is unknown
    text = md.read_text()
    assert "| over-refusal rate, safe | 0.00 | 1.00 | +100.0 pts |" in text
    assert "<summary>32 dialogues pass → fail</summary>" in text


def test_fail_on_regression_and_json(runs: tuple[Path, Path], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    a, b = runs
    out = tmp_path / "ab.json"
    assert main(["compare", str(a), str(b), "--json", str(out), "--fail-on-regression"]) == 1
    assert "FAIL  over-refusal rate, safe" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data[0]["to_pass"] == [] and len(data[0]["to_fail"]) == 32
    # The other way round B is the better run: no regression.
    assert main(["compare", str(b), str(a), "--fail-on-regression=0.01"]) == 0


def test_bad_inputs_exit_4(runs: tuple[Path, Path], tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    a, _ = runs
    assert main(["compare", str(a), str(tmp_path / "missing.json")]) == 4
    assert "missing.json: no such file" in capsys.readouterr().err
    junk = tmp_path / "junk.json"
    junk.write_text("[1, 2]")
    assert main(["compare", str(junk), str(a)]) == 4
    assert "junk.json: not a pytest-mtmcs JSON report" in capsys.readouterr().err
    assert main(["compare", str(a), str(a), "--stack-b", "nemo"]) == 4
    assert "report B has no stack 'nemo'" in capsys.readouterr().err
