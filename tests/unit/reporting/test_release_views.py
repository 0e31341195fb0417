"""The release's figures beside ours in the terminal, Markdown and HTML, with the divergence
account; model text in it stays inert."""

from __future__ import annotations

import pytest

from pytest_mtmcs.reporting.markdown import render_markdown
from pytest_mtmcs.reporting.report import RunReport
from pytest_mtmcs.reporting.terminal import divergence_lines, summary_lines
from pytest_mtmcs.scoring.metrics import summarize
from pytest_mtmcs.scoring.records import DialogueRecord, QuestionRecord, ReleaseReading

HOSTILE = "The answer is B <script>x</script> [link](http://e.example) \x1b[31m"


def _question(i: int, parsed: str | None, release: ReleaseReading | None) -> QuestionRecord:
    return QuestionRecord(id=f"q{i}", dialogue_id=f"d{i}", split="type_a", row_id=i,
                          modality="multimodal", safety="unsafe", target="m", kind="mcq",
                          expected="B", parsed=parsed, correct=parsed == "B",
                          verdict="pass" if parsed == "B" else "fail", release=release)


def _report() -> RunReport:
    dialogues = [DialogueRecord(id="d0", split="type_a", row_id=0, modality="multimodal",
                                safety="unsafe", target="m")]
    questions = [
        _question(0, "B", ReleaseReading(value="A", shape="The answer is X", example=HOSTILE)),
        _question(1, "B", ReleaseReading(value="B")),
        _question(2, None, ReleaseReading(value="A", shape="two letters", example="A or C")),
    ]
    summary = summarize(dialogues, questions)
    return RunReport(target="m", data="d", settings={}, summary=tuple(summary),
                     dialogues=tuple(dialogues), questions=tuple(questions))


def test_release_figures_follow_the_release_formulas() -> None:
    group = _report().summary[0]
    assert group.release is not None
    release = group.release.unsafe_mcq_accuracy
    assert (release.k, release.n) == (1, 3)       # right / read by the release
    assert (group.unsafe_mcq_accuracy.k, group.unsafe_mcq_accuracy.n) == (2, 2)  # ours
    assert [(d.shape, d.count) for d in group.release.divergence] == [
        ("The answer is X", 1), ("two letters", 1)]
    assert set(group.release.differs(group)) == {"unsafe_mcq_accuracy"}


def test_old_records_have_no_release_figures() -> None:
    summary = summarize([], [_question(0, "B", None)])
    assert summary[0].release is None


def test_the_terminal_shows_the_release_figure_where_it_differs() -> None:
    report = _report()
    lines = summary_lines(report.summary)
    assert any(line.startswith("release: unsafe MCQ") and "0.33 1/3" in line for line in lines)
    assert not any(line.startswith("release: safe MCQ") for line in lines)
    account = "\n".join(divergence_lines(report.summary))
    assert "\x1b" not in account and "The answer is X" in account and "two letters" in account


def test_markdown_and_html_show_both_readings_inertly() -> None:
    report = _report()
    md = render_markdown(report)
    assert "release: unsafe MCQ" in md and "two letters" in md
    assert "<script>" not in md and "](http" not in md and "\x1b" not in md
    pytest.importorskip("matplotlib")
    from pytest_mtmcs.reporting.html import render_html

    page = render_html(report)
    assert "release: unsafe_mcq_accuracy" in page and "two letters" in page
    assert "<script>x" not in page and "\x1b" not in page
