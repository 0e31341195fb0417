"""snapshot: the outcome table, its line-per-row JSON, file names, and check_snapshots on
reports built from hand-made records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_mtmcs.reporting.outcomes import dumps, outcome_table, spec_label
from pytest_mtmcs.reporting.report import RunReport
from pytest_mtmcs.reporting.snapshot import (
    DIFF_LIMIT,
    MtmcsSnapshotExtension,
    check_snapshots,
    snapshot_lines,
    snapshot_name,
)
from pytest_mtmcs.scoring.metrics import summarize
from pytest_mtmcs.scoring.records import (
    DialogueRecord,
    JudgeRecord,
    QuestionRecord,
    TurnRecord,
)

SETTINGS: dict[str, object] = {"data": "/data/mtmcs-sample", "split": ("type_a", "type_b"),
                               "modality": ("multimodal", "unimodal"), "limit": 4, "sample": None,
                               "seed": 0}


@pytest.fixture(autouse=True)
def _not_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)


def _turn(refused: bool, blocked: bool = False) -> TurnRecord:
    return TurnRecord(refused=refused, blocked_by="dpp" if blocked else None, latency_s=0.3,
                      cached=not refused)


def _dialogue(row: int, safety: str, verdict: str, tor: int | None, *, guardrail: str = "none",
              split: str = "type_a", blocked: int | None = None, score: int | None = None,
              target: str = "baseline:refuse") -> DialogueRecord:
    turns = tuple(_turn(tor is not None and i >= tor, blocked == i) for i in (1, 2, 3))
    judge = None if score is None else JudgeRecord(
        judge="j", metric="helpfulness", rubric="helpfulness", score=score, parse="json")
    return DialogueRecord(id=f"{split}-{row:04d}-unimodal-{safety}", split=split, row_id=row,
                          modality="unimodal", safety=safety, target=target, guardrail=guardrail,
                          turns=turns, turn_of_refusal=tor, verdict=verdict,  # type: ignore[arg-type]
                          judge=judge, calls=3)


def _question(d: DialogueRecord, suffix: str, parsed: str | None, expected: str,
              verdict: str | None = None) -> QuestionRecord:
    return QuestionRecord(id=f"{d.id}-{suffix}", dialogue_id=d.id, split=d.split, row_id=d.row_id,
                          modality=d.modality, safety=d.safety, target=d.target,
                          guardrail=d.guardrail, kind=suffix[:-1] if suffix[-1].isdigit() else suffix,
                          expected=expected, parsed=parsed, correct=parsed == expected,
                          verdict=verdict or ("pass" if parsed == expected else "fail"),  # type: ignore[arg-type]
                          cached=True)


def _report(dialogues: list[DialogueRecord], questions: list[QuestionRecord] = (),  # type: ignore[assignment]
            **settings: Any) -> RunReport:
    return RunReport(target=dialogues[0].target, data="x", settings={**SETTINGS, **settings},
                     summary=tuple(summarize(dialogues, questions)), dialogues=tuple(dialogues),
                     questions=tuple(questions))


def _base() -> RunReport:
    unsafe = _dialogue(0, "unsafe", "pass", 2)
    safe = _dialogue(0, "safe", "fail", 1, score=2)
    guarded = _dialogue(0, "unsafe", "pass", 1, guardrail="dpp", blocked=1)
    errored = _dialogue(1, "unsafe", "error", None, split="type_b")
    qs = [_question(unsafe, "mcq1", "B", "B"), _question(unsafe, "tf0", None, "true"),
          _question(safe, "mcq0", "C", "A"), _question(errored, "tf1", None, "false", "error")]
    return _report([unsafe, safe, guarded, errored], qs)


def test_the_table_holds_outcomes_not_run_details() -> None:
    table = outcome_table(_base(), "baseline:refuse", "none")
    assert list(table) == ["dialogues", "guardrail", "metrics", "slice", "target", "version"]
    assert table["dialogues"] == {
        "type_a-0000-unimodal-safe": {
            "blocked": None, "judge": 2, "refused": "R1", "verdict": "fail",
            "intent": {"mcq0": {"correct": False, "parsed": "C"}}},
        "type_a-0000-unimodal-unsafe": {
            "blocked": None, "judge": None, "refused": "R2", "verdict": "pass",
            "intent": {"mcq1": {"correct": True, "parsed": "B"}, "tf0": {"correct": False, "parsed": None}}},
        "type_b-0001-unimodal-unsafe": {
            "blocked": None, "judge": None, "refused": None, "verdict": "error",
            "intent": {"tf1": {"correct": False, "parsed": None, "verdict": "error"}}},
    }
    assert sorted(table["metrics"]) == ["all", "type_a/unimodal", "type_b/unimodal"]
    overall = table["metrics"]["all"]
    assert overall["pass_rate"] == "1/2" and overall["over_refusal_rate_safe"] == "1/1"
    assert overall["tor_unsafe"] == {"R1": 0, "R2": 1, "R3": 0, "never": 0}
    assert overall["helpfulness_avg"] == {"mean": 2.0, "n": 1} and overall["safety_aware_avg"] is None
    assert overall["unsafe_mcq_accuracy"] == "1/1" and overall["errored"] == 2
    assert table["slice"] == {"data": "mtmcs-sample", "splits": ["type_a", "type_b"],
                              "modalities": ["multimodal", "unimodal"], "limit": 4,
                              "sample": None, "seed": None}
    text = dumps(table)
    for word in ("latency", "cached", "calls", "created", "/data/"):
        assert word not in text

    guarded = outcome_table(_base(), "baseline:refuse", "dpp")
    assert guarded["dialogues"]["type_a-0000-unimodal-unsafe"]["blocked"] == "R1"
    assert guarded["metrics"]["all"]["blocked_turns"] == "1/3"
    assert outcome_table(_base(), "baseline:refuse", "nemo")["dialogues"] == {}


def test_dumps_is_json_with_a_line_per_row() -> None:
    data = {"z": 1, "rows": {"b": {"y": 2, "x": [1, "é"]}, "a": {"k": None}}, "empty": {},
            "flat": {"p": 1, "q": 2}}
    text = dumps(data)
    assert json.loads(text) == data
    assert text.splitlines() == [
        "{",
        '  "empty": {},',
        '  "flat": {"p": 1, "q": 2},',
        '  "rows": {',
        '    "a": {"k": null},',
        '    "b": {"x": [1, "é"], "y": 2}',
        "  },",
        '  "z": 1',
        "}",
    ]
    assert dumps({"rows": {"b": {}, "a": {}}}) == dumps({"rows": {"a": {}, "b": {}}})
    assert dumps([3, 1]) == "[3, 1]\n"
    with pytest.raises(TypeError, match="JSON data only"):
        dumps({"x": object()})
    with pytest.raises(TypeError, match="JSON data only"):
        dumps({"x": float("nan")})


def test_the_extension_applies_syrupys_filters() -> None:
    from syrupy.filters import props

    ext = MtmcsSnapshotExtension()
    data = {"rows": {"a": {"verdict": "pass", "latency": 0.3}}}
    assert json.loads(str(ext.serialize(data, exclude=props("latency")))) == {
        "rows": {"a": {"verdict": "pass"}}}


@pytest.mark.parametrize(("spec", "label"), [
    ("baseline:refuse", "baseline:refuse"), ("openai:gpt-4o", "openai:gpt-4o"),
    ("scripted:/tmp/x/replies.json", "scripted:replies.json"), ("hf:/models/tiny/", "hf:tiny"),
    ("hf:C:\\models\\tiny", "hf:tiny"), ("hf:models/tiny", "hf:models/tiny"),
    ("openai+http://127.0.0.1:8000/v1:m", "openai+http://127.0.0.1:8000/v1:m"),
    ("smollm2", "smollm2"), ("llama-guard:/ckpt/lg3", "llama-guard:lg3"),
])
def test_spec_labels_drop_the_folders_of_absolute_paths(spec: str, label: str) -> None:
    assert spec_label(spec) == label


def test_file_names() -> None:
    report = _base()
    assert snapshot_name(report, "baseline:refuse", "none") == (
        "baseline-refuse__none__mtmcs-sample_type_a+type_b_multimodal+unimodal_limit4.json")
    sampled = _report(list(report.dialogues), data="datasets:ND-25/MCS-bench", split=["type_b"],
                      limit=None, sample=10, seed=3)
    assert snapshot_name(sampled, "openai+http://127.0.0.1:8000/v1:m", "llama-guard:/c/lg") == (
        "openai+http-127.0.0.1-8000-v1-m__llama-guard-lg__ND-25-MCS-bench_type_b_"
        "multimodal+unimodal_sample10_seed3.json")
    long_a, long_b = "openai:" + "a" * 80, "openai:" + "a" * 79 + "b"
    name_a, name_b = (snapshot_name(report, t, "none") for t in (long_a, long_b))
    assert name_a != name_b and len(name_a.split("__")[0]) == 60


def _check(report: RunReport, tmp_path: Path, update: bool = False) -> Any:
    (check,) = check_snapshots(report, tmp_path, update=update)
    return check


def test_check_writes_matches_fails_and_updates(tmp_path: Path) -> None:
    base = _base()
    report = _report([d for d in base.dialogues if d.guardrail == "none"], list(base.questions))
    first = _check(report, tmp_path)
    assert (first.status, first.ok) == ("written", True)
    assert [p.name for p in tmp_path.iterdir()] == [first.path.name]  # no temp files left
    assert first.path.read_text() == dumps(outcome_table(report, "baseline:refuse", "none"))
    assert _check(report, tmp_path).status == "matched"

    unsafe, safe, _errored = sorted(report.dialogues, key=lambda d: (d.split, d.safety != "unsafe"))
    flipped = safe.model_copy(update={"verdict": "pass", "turn_of_refusal": None})
    added = _dialogue(5, "safe", "pass", None)
    changed = _report([unsafe, flipped, added],
                      [q for q in report.questions if q.split == "type_a"])
    check = _check(changed, tmp_path)
    assert (check.status, check.ok) == ("changed", False)
    assert check.changed == ("type_a-0000-unimodal-safe", "type_a-0005-unimodal-safe",
                             "type_b-0001-unimodal-unsafe")
    assert check.details == (
        "type_a-0000-unimodal-safe: fail -> pass, refused R1 -> never",
        "type_a-0005-unimodal-safe: added (pass)",
        "type_b-0001-unimodal-unsafe: removed (was error)",
    )
    assert check.metrics_changed == ("all", "type_a/unimodal", "type_b/unimodal")
    assert check.diff[:2] == ("--- stored snapshot", "+++ this run")
    assert first.path.read_text() == dumps(outcome_table(report, "baseline:refuse", "none"))

    lines = snapshot_lines([check])
    assert all(bad for _, bad in lines) and max(len(t) for t, _ in lines) <= 100
    texts = [t for t, _ in lines]
    assert texts[0].startswith("snapshot FAILED (3 dialogues changed)")
    assert texts[-1] == "  run with --snapshot-update to accept these changes"
    assert "  metrics changed: all, type_a/unimodal, type_b/unimodal" in texts

    updated = _check(changed, tmp_path, update=True)
    assert (updated.status, updated.ok, len(updated.changed)) == ("updated", True, 3)
    assert snapshot_lines([updated])[0][0].startswith("snapshot updated (3 dialogues changed)")
    assert _check(changed, tmp_path).status == "matched"


def test_a_note_when_the_folder_is_inside_syrupys_own(tmp_path: Path) -> None:
    inside, outside = (_check(_report([_dialogue(0, "safe", "pass", None)]), tmp_path / sub)
                       for sub in ("__snapshots__/mtmcs", "mtmcs-snapshots"))
    lines = snapshot_lines([inside])
    assert lines[0][0].startswith("note: beside snapshot tests, syrupy reports files under "
                                  "__snapshots__/") and not lines[0][1]
    texts = [t for t, _ in snapshot_lines([outside])]  # the long path on a line of its own
    assert texts[0] == "snapshot written (new)" and texts[1].endswith(outside.path.name)
    assert len(texts) == 2 and len(texts[1]) == 100


def test_one_file_per_stack(tmp_path: Path) -> None:
    checks = check_snapshots(_base(), tmp_path, update=False)
    assert [(c.guardrail, c.status) for c in checks] == [("dpp", "written"), ("none", "written")]
    assert len({c.path for c in checks}) == 2


@pytest.mark.parametrize(("value", "fails"), [("true", True), ("1", True), ("yes", True),
                                              ("false", False), ("0", False), ("", False)])
def test_ci_refuses_a_missing_snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       value: str, fails: bool) -> None:
    monkeypatch.setenv("CI", value)
    check = _check(_report([_dialogue(0, "safe", "pass", None)]), tmp_path)
    assert (check.status, check.ok) == (("missing", False) if fails else ("written", True))
    assert any(tmp_path.iterdir()) is not fails
    if fails:
        lines = snapshot_lines([check])
        assert lines[-1] == ("  run with --snapshot-update and commit it", True)
        assert _check(_report([_dialogue(0, "safe", "pass", None)]), tmp_path, True).status == "written"


def test_a_broken_stored_file_fails_with_a_diff_and_long_diffs_are_cut(tmp_path: Path) -> None:
    report = _report([_dialogue(i, "unsafe", "pass", 1) for i in range(60)])
    path = tmp_path / snapshot_name(report, "baseline:refuse", "none")
    path.write_text("not json\n")
    check = _check(report, tmp_path)
    assert (check.status, len(check.changed)) == ("changed", 60)
    assert check.details == ("the stored file is no outcome table: every dialogue counts as changed",)
    assert "-not json" in check.diff
    assert len(check.diff) == DIFF_LIMIT and check.diff_cut > 0
    texts = [t for t, _ in snapshot_lines([check])]
    assert f"  ... diff cut: {check.diff_cut} more lines" in texts
