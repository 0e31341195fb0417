"""Image-variant robustness in the terminal, Markdown, HTML, the snapshot and `mtmcs summary`:
the figures and their intervals appear, lines fit the width, hostile stack names and ids stay
inert, and a run without variant images reads exactly as before."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pytest_mtmcs.cli import main
from pytest_mtmcs.reporting.html import render_html
from pytest_mtmcs.reporting.markdown import render_markdown
from pytest_mtmcs.reporting.outcomes import compare_tables, dumps, outcome_table, robustness_snapshot
from pytest_mtmcs.reporting.report import RunReport, write_json
from pytest_mtmcs.reporting.robustness_views import (
    FLIPPED_SHOWN,
    flipped_lines,
    robustness_html,
    robustness_lines,
    robustness_markdown,
    robustness_quiet_lines,
)
from pytest_mtmcs.reporting.snapshot import check_snapshots, snapshot_name
from pytest_mtmcs.reporting.terminal import fmt_rate
from pytest_mtmcs.scoring.metrics import Mean, Rate, summarize
from pytest_mtmcs.scoring.records import DialogueRecord, JudgeRecord, TurnRecord
from pytest_mtmcs.scoring.robustness import RobustnessSummary, robustness

TARGET = "openai+http://127.0.0.1:8000/v1:Qwen/Qwen3-VL-8B-Instruct"
HOSTILE = "evil\x1b[31m<script>alert(1)</script>|pipe\nnewline"
SETTINGS: dict[str, object] = {"data": "x", "split": ("type_a", "type_b"),
                               "modality": ("multimodal",), "limit": None, "sample": None,
                               "seed": 0}


@pytest.fixture(autouse=True)
def _not_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)


def _dialogue(row: int, safety: str, refused: bool, *, variant: int = 0, split: str = "type_a",
              guardrail: str = "none", score: int | None = None) -> DialogueRecord:
    base = f"{split}-{row:04d}-multimodal-{safety}"
    tor = 1 if refused else None
    judge = None if score is None else JudgeRecord(
        judge="j", metric="helpfulness" if safety == "safe" else "safety_awareness",
        rubric="r", score=score, parse="json")
    right = refused == (safety == "unsafe")
    return DialogueRecord(
        id=base + (f"-v{variant}" if variant else ""), split=split, row_id=row,
        modality="multimodal", safety=safety, variant=variant, target=TARGET,
        guardrail=guardrail, turns=tuple(TurnRecord(refused=refused and i >= 1)
                                         for i in (1, 2, 3)),
        turn_of_refusal=tor, verdict="pass" if right else "fail", judge=judge)


def _records(guardrail: str = "none", *, judged: bool = False,
             rows: int = 6) -> list[DialogueRecord]:
    """Per split, `rows` unsafe and `rows` safe scenes on a base image and two variants; every
    third unsafe scene is answered on its second variant, every second safe scene refused on
    its first variant."""
    out = []
    for split in ("type_a", "type_b"):
        for row in range(rows):
            for v in (0, 1, 2):
                score = (3 + (v == 2 and row % 3 == 0)) if judged else None
                out.append(_dialogue(row, "unsafe", not (v == 2 and row % 3 == 0), variant=v,
                                     split=split, guardrail=guardrail, score=score))
                out.append(_dialogue(row, "safe", v == 1 and row % 2 == 0, variant=v,
                                     split=split, guardrail=guardrail,
                                     score=4 if judged else None))
    return out


def _report(dialogues: list[DialogueRecord], *, with_robustness: bool = True) -> RunReport:
    base = [d for d in dialogues if d.variant == 0]
    return RunReport(target=TARGET, data="x", settings=SETTINGS,
                     summary=tuple(summarize(base)), dialogues=tuple(dialogues), questions=(),
                     robustness=tuple(robustness(dialogues)) if with_robustness else ())


def _two_stacks(judged: bool = False) -> RunReport:
    return _report(_records(judged=judged) + _records("llama-guard:/models/LG-3-11B",
                                                      judged=judged))


def _summary(guardrail: str, *, flipped: int = 0, target: str = TARGET) -> RobustnessSummary:
    """A hand-made overall summary (split `all`)."""
    r = Rate(k=3, n=4)
    return RobustnessSummary(
        target=target, guardrail=guardrail, split="all", groups=4, images=12, incomplete=1,
        variant_consistency=r, variant_flip_rate=Rate(k=1, n=8), refusal_rate_unsafe=r,
        worst_case_refusal_unsafe=Rate(k=1, n=2), best_case_over_refusal_safe=Rate(k=0, n=2),
        worst_case_over_refusal_safe=Rate(k=1, n=2),
        score_spread=Mean(n=3, value=0.5, ci=(0.0, 1.0)), score_consistency=Rate(k=2, n=3),
        flipped=tuple(f"{guardrail}-d{i:02d}" for i in range(flipped)))


# ----------------------------------------------------------------------------- terminal
@pytest.mark.parametrize("width", [80, 120])
def test_terminal_table_fits_and_shows_every_figure(width: int) -> None:
    report = _two_stacks(judged=True)
    lines = robustness_lines(report.robustness, width=width)
    assert lines and all(len(line) <= width for line in lines), lines
    text = "\n".join(lines)
    overall = [r for r in report.robustness if r.overall]
    assert len(overall) == 2
    for r in overall:
        for rate in (r.variant_consistency, r.variant_flip_rate, r.refusal_rate_unsafe,
                     r.worst_case_refusal_unsafe, r.best_case_over_refusal_safe,
                     r.worst_case_over_refusal_safe):
            assert fmt_rate(rate) in text  # the value and its interval
    for label in ("variant consistency", "variant flip rate", "worst-case refusal, unsafe",
                  "over-refusal, safe, best", "over-refusal, safe, worst", "judge score spread",
                  "judge score consistency", "groups/images"):
        assert label in text
    assert "stack llama-guard:LG-3-11B (guardrail llama-guard:/models/LG-3-11B)" in text
    assert re.search(r"^\s+type_a\s+type_b\s+all$", text, re.MULTILINE)
    assert "12/36" in text and "24/72" in text  # 12 groups of 3 images per split
    assert "incomplete" not in text  # none left out: no row for it
    assert "flipped with the image (" in text and "type_a-0000-multimodal-unsafe" in text


def test_terminal_without_a_judge_has_no_judge_rows_and_the_incomplete_row_when_some() -> None:
    records = _records(rows=3)
    records = [d.model_copy(update={"verdict": "error"}) if d.id.endswith("0001-multimodal-safe-v1")
               else d for d in records]
    text = "\n".join(robustness_lines(_report(records).robustness))
    assert "judge" not in text
    assert re.search(r"^incomplete groups\s+1\s+1\s+2$", text, re.MULTILINE)


def test_terminal_lists_at_most_ten_flipped_ids() -> None:
    ids = [f"type_a-{i:04d}-multimodal-unsafe" for i in range(FLIPPED_SHOWN + 5)]
    text = " ".join(flipped_lines(ids, 80))
    assert text.strip().startswith(f"flipped with the image ({len(ids)}):")
    assert ids[FLIPPED_SHOWN - 1] in text and ids[FLIPPED_SHOWN] not in text
    assert text.endswith("and 5 more")
    assert flipped_lines([], 80) == []


def test_a_stack_on_one_split_shows_that_split_only() -> None:
    records = [d for d in _records() if d.split == "type_b"]
    lines = robustness_lines(_report(records).robustness)
    assert any(line.strip() == "type_b" for line in lines)
    assert not any(line.rstrip().endswith("all") for line in lines)


@pytest.mark.parametrize("width", [60, 80, 120])
def test_quiet_lines_fit_one_per_stack(width: int) -> None:
    report = _two_stacks()
    lines = robustness_quiet_lines(report.robustness, width=width)
    assert len(lines) == 2 and all(len(line) <= width for line in lines)
    assert lines[1].startswith("mtmcs image variants, none: 24 groups")
    alone = robustness_quiet_lines(_report(_records()).robustness, width=120)
    assert len(alone) == 1 and alone[0].startswith("mtmcs image variants: 24 groups, consistent")


def test_names_follow_the_callers() -> None:
    rows = [_summary("dpp")]
    lines = robustness_lines(rows, names={(TARGET, "dpp"): "my-dpp"})
    assert any(line.startswith("stack my-dpp") for line in lines)


# ----------------------------------------------------------------------------- hostile text
def test_hostile_stack_names_and_ids_stay_inert_everywhere() -> None:
    rows = [_summary("none", flipped=2), _summary(HOSTILE, flipped=3),
            _summary("none", flipped=1, target=HOSTILE)]
    rows = [r.model_copy(update={"flipped": (*r.flipped, HOSTILE)}) for r in rows]
    assert "\\x1b[31m" in "\n".join(robustness_lines(rows, width=80))  # shown, not acted on
    for lines in (robustness_lines(rows, width=80), robustness_quiet_lines(rows, width=80)):
        text = "\n".join(lines)
        assert "\x1b" not in text
        assert all(len(line) <= 80 for line in lines), lines
        assert "newline" in text and not any(line.startswith("newline") for line in lines)
    md = robustness_markdown(rows)
    text = "\n".join(md)
    assert "\x1b" not in text and "<script>" not in text and "&lt;script&gt;" in text
    table = [line for line in md if line.startswith("| ")]
    width = len(re.findall(r"(?<!\\)\|", table[0]))
    assert len(table) == 2 + len(rows)
    assert all(len(re.findall(r"(?<!\\)\|", line)) == width for line in table)
    assert not any(line.startswith("newline") for line in md)
    page = robustness_html(rows)
    assert "\x1b" not in page and "<script>" not in page and "&lt;script&gt;" in page


# ----------------------------------------------------------------------------- Markdown, HTML
def test_markdown_section_has_a_row_per_stack_and_split() -> None:
    report = _two_stacks(judged=True)
    text = render_markdown(report)
    assert "### Image-variant robustness" in text
    rows = [line for line in text.splitlines() if line.startswith("| llama-guard:LG-3-11B | ")]
    assert [row.split(" | ")[1] for row in rows] == ["type_a", "type_b", "all"]
    overall = next(r for r in report.robustness if r.overall)
    c = overall.variant_consistency
    assert c.ci is not None
    assert f"{c.value:.2f} [{c.ci[0]:.2f}, {c.ci[1]:.2f}] ({c.k}/{c.n})" in text
    assert "judge score spread" in text
    assert "dialogues flipped with the image</summary>" in text


def test_no_robustness_no_section() -> None:
    records = _records()
    plain = _report(records, with_robustness=False)
    assert robustness_lines(()) == [] and robustness_quiet_lines(()) == []
    assert robustness_markdown(()) == [] and robustness_html(()) == ""
    assert robustness_snapshot((), TARGET, "none") == {}
    md = render_markdown(plain)
    assert "robustness" not in md.lower() and "variant" not in md.lower()
    page = render_html(plain)
    assert "robustness" not in page and "image variants" not in page
    # With variants, the Markdown only gains its section.
    with_section = render_markdown(_report(records)).splitlines()
    section = robustness_markdown(_report(records).robustness)
    start = with_section.index(section[0])
    assert with_section[:start] + with_section[start + len(section):] == md.splitlines()


def test_html_section_has_one_chart_with_a_point_per_stack() -> None:
    report = _report(_records() + _records("dpp") + _records("llama-guard:/m/LG"))
    page = render_html(report)
    assert '<a href="#robustness">image variants</a><a href="#cost">' in page
    section = page[page.index('<section id="robustness">'):]
    section = section[:section.index("</section>")]
    assert section.count("<svg") == 1
    assert len(set(re.findall(r'id="robustness-point-(\d+)"', section))) == 3
    assert "<th>consistency</th>" in section and "Image-variant robustness" in section
    assert section.count("<tr><td>dpp</td>") == 3  # type_a, type_b, all
    assert page.count('id="robustness-point-') == 3  # no other chart reuses the ids


# ----------------------------------------------------------------------------- snapshot
def test_snapshot_holds_the_robustness_block_and_is_stable(tmp_path: Path) -> None:
    report = _two_stacks()
    first = check_snapshots(report, tmp_path, update=False)
    assert [c.status for c in first] == ["written", "written"]
    path = tmp_path / snapshot_name(report, TARGET, "none")
    text = path.read_text()
    stored = json.loads(text)
    block = stored["robustness"]
    assert list(block) == ["all", "type_a", "type_b"]
    assert block["all"]["variant_consistency"] == "14/24"  # 5 of 12 flip per split
    assert block["all"]["flipped"] == sorted(block["all"]["flipped"])
    assert "type_a-0000-multimodal-unsafe" in block["all"]["flipped"]
    assert sum(line.startswith('    "type_') for line in text.splitlines()) >= 2  # line per split
    again = check_snapshots(report, tmp_path, update=False)
    assert [c.status for c in again] == ["matched", "matched"]
    # Figures that change show as changed robustness groups.
    fewer = _report([d for d in _records() if not (d.row_id == 0 and d.variant == 2)]
                    + _records("llama-guard:/models/LG-3-11B"))
    changed = {c.guardrail: c for c in check_snapshots(fewer, tmp_path, update=False)}
    assert changed["llama-guard:/models/LG-3-11B"].status == "matched"
    none = changed["none"]
    assert none.status == "changed" and "robustness/all" in none.metrics_changed


def test_snapshot_without_robustness_is_the_outcome_table(tmp_path: Path) -> None:
    report = _report(_records(), with_robustness=False)
    check_snapshots(report, tmp_path, update=False)
    text = (tmp_path / snapshot_name(report, TARGET, "none")).read_text()
    assert text == dumps(outcome_table(report, TARGET, "none"))
    assert "robustness" not in text


def test_changed_robustness_groups_are_named() -> None:
    new = '{"dialogues": {}, "robustness": {"all": {"groups": 1}, "type_a": {"groups": 1}}}'
    old = '{"dialogues": {}, "robustness": {"all": {"groups": 2}, "type_a": {"groups": 1}}}'
    assert compare_tables(old, new)[2] == ["robustness/all"]
    assert compare_tables('{"dialogues": {}}', new)[2] == ["robustness/all", "robustness/type_a"]
    assert compare_tables(new, new)[2] == []


# ----------------------------------------------------------------------------- mtmcs summary
def test_mtmcs_summary_prints_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    path = write_json(_two_stacks(), tmp_path / "run.json")
    assert main(["summary", str(path)]) == 0
    out = capsys.readouterr().out
    assert "image-variant robustness" in out and "variant consistency" in out
    assert all(len(line) <= 80 for line in out.splitlines()[1:])
    plain = write_json(_report(_records(), with_robustness=False), tmp_path / "plain.json")
    assert main(["summary", str(plain)]) == 0
    assert "robustness" not in capsys.readouterr().out
