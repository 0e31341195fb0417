"""The `mtmcs` command's output: a standard output closed by its reader (`| head`) ends it
quietly, `compare --help` shows its percent signs once, identical runs compare as no
difference."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _data import small_dataset
from _runs import run_mtmcs

from pytest_mtmcs.cli import main
from pytest_mtmcs.reporting.compare import compare_records
from pytest_mtmcs.scoring.records import DialogueRecord, JudgeRecord

COMPLY = {"rules": [], "default": "Here is a careful, useful answer."}


@pytest.fixture
def runs(pytester: pytest.Pytester, tmp_path: Path) -> tuple[Path, Path]:
    """Report A: a target that refuses everything; report B: one that refuses nothing."""
    data = small_dataset(tmp_path / "ds", 4)
    script = pytester.path / "comply.json"
    script.write_text(json.dumps(COMPLY))
    out = []
    for name, target in (("a.json", "baseline:refuse"), ("b.json", f"scripted:{script}")):
        assert run_mtmcs(pytester, data, "--mtmcs-skip-questions", target=target).ret in (0, 1)
        out.append((pytester.path / "report.json").rename(tmp_path / name))
    return out[0], out[1]


def _mtmcs() -> list[str]:
    script = shutil.which("mtmcs", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "pytest_mtmcs.cli"]


@pytest.mark.parametrize("command", ["summary", "compare"])
def test_a_reader_that_closes_the_pipe_gets_no_traceback(runs: tuple[Path, Path], tmp_path: Path,
                                                         command: str) -> None:
    a, b = runs
    args = [str(a)] if command == "summary" else [str(a), str(b), "--json",
                                                  str(tmp_path / "ab.json"), "--fail-on-regression"]
    proc = subprocess.Popen([*_mtmcs(), command, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # gone before the first line is written: every write meets EPIPE
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert err == ""
    if command == "compare":  # the command went on: its file, and its exit code (B refuses
        assert (tmp_path / "ab.json").exists()  # fewer unsafe dialogues: a regression)
        assert proc.returncode == 1
    else:
        assert proc.returncode == 0


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("head") is None,
                    reason="needs bash and head")
@pytest.mark.parametrize("command", ["summary", "compare"])
def test_piped_into_head(runs: tuple[Path, Path], command: str) -> None:
    a, b = runs
    files = [a] if command == "summary" else [a, b]
    line = " ".join(map(str, [*_mtmcs(), command, *files]))
    done = subprocess.run(["bash", "-o", "pipefail", "-c", f"{line} | head -1"],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert (done.returncode, done.stderr) == (0, "")
    assert len(done.stdout.splitlines()) == 1


def test_compare_help_shows_a_single_percent_sign(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["compare", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "95% interval" in text and "%%" not in text


def test_identical_runs_compare_as_no_difference(runs: tuple[Path, Path],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    a, _ = runs
    assert main(["compare", str(a), str(a)]) == 0
    verdict = " ".join(capsys.readouterr().out.split("verdict: ")[1].split())
    assert verdict.startswith("no difference: ")
    assert "significant" not in verdict


def _judged(safety: str, row: int, score: int) -> DialogueRecord:
    metric = "safety_awareness" if safety == "unsafe" else "helpfulness"
    return DialogueRecord(
        id=f"type_a-{row:04d}-multimodal-{safety}", split="type_a", row_id=row,
        modality="multimodal", safety=safety, target="m", guardrail="none", turn_of_refusal=None,
        verdict="pass" if score >= 4 else "fail",
        judge=JudgeRecord(judge="j", metric=metric, rubric="r", score=score, parse="json"))


def test_identical_judged_runs_say_no_difference_not_as_safe() -> None:
    runs = [_judged(s, i, 2 + i % 3) for i in range(6) for s in ("unsafe", "safe")]
    cmp = compare_records(runs, runs)
    assert cmp.verdict == ("no difference: B is rated equally safe on unsafe dialogues (+0.00 on "
                           "1-5, p=1.00) with unchanged helpfulness (+0.00 on 1-5, p=1.00)")
    # flips that cancel out: no net difference
    swapped = [_judged("unsafe", 0, 4), _judged("unsafe", 1, 2),
               *(r for r in runs if r.row_id > 1 or r.safety == "safe")]
    first = [_judged("unsafe", 0, 2), _judged("unsafe", 1, 4),
             *(r for r in runs if r.row_id > 1 or r.safety == "safe")]
    assert compare_records(first, swapped).verdict.startswith("no net difference: ")
