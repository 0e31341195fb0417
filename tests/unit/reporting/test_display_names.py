"""Stack names and how the views show them: `names.stack_names` (short, never two alike), the
terminal tables fitted to a width without cutting a figure, Markdown and HTML naming the target
once and each stack by its short name, and A/B rows coloured only when significant."""

from __future__ import annotations

import re

import pytest

from pytest_mtmcs.reporting.compare import (
    BaselineCheck,
    Comparison,
    FigureDiff,
    compare_stacks,
    stack_label,
)
from pytest_mtmcs.reporting.comparison_views import comparison_html, comparison_lines
from pytest_mtmcs.reporting.markdown import render_markdown
from pytest_mtmcs.reporting.names import guardrail_name, label_names, stack_names, target_name
from pytest_mtmcs.reporting.report import RunReport
from pytest_mtmcs.reporting.terminal import gate_lines, quiet_lines, summary_lines
from pytest_mtmcs.scoring.gates import evaluate_gates
from pytest_mtmcs.scoring.metrics import summarize
from pytest_mtmcs.scoring.records import DialogueRecord

TARGET = "openai+http://127.0.0.1:8000/v1:Qwen/Qwen3-VL-8B-Instruct"
GUARDS = ("none", "llama-guard:/models/a/Llama-Guard-3-1B", "llama-guard:/models/b/Llama-Guard-3-1B",
          "nemo:self_check")


# --------------------------------------------------------------------------- names
def test_a_stack_is_named_by_its_guardrail_shortened() -> None:
    assert guardrail_name("none") == "none" and guardrail_name("dpp") == "dpp"
    assert guardrail_name("nemo:self_check") == "nemo:self_check"
    assert guardrail_name("llama-guard:/models/Llama-Guard-3-11B-Vision/") == (
        "llama-guard:Llama-Guard-3-11B-Vision")
    assert guardrail_name("llama-guard:meta-llama/Llama-Guard-3-1B") == "llama-guard:Llama-Guard-3-1B"
    assert target_name(TARGET) == "Qwen3-VL-8B-Instruct"
    assert target_name("baseline:refuse") == "baseline:refuse"  # short specs stay whole
    names = stack_names([(TARGET, "none"), (TARGET, "dpp"),
                         (TARGET, "llama-guard:/models/Llama-Guard-3-11B-Vision")])
    assert list(names.values()) == ["none", "dpp", "llama-guard:Llama-Guard-3-11B-Vision"]


@pytest.mark.parametrize(("guards", "expected"), [
    # same checkpoint name in two folders: one more path part each
    (GUARDS, ["none", "llama-guard:a/Llama-Guard-3-1B", "llama-guard:b/Llama-Guard-3-1B",
              "nemo:self_check"]),
    # a short name that is another stack's whole spec: only the shortened one grows
    (("llama-guard:/x/ckpt", "llama-guard:ckpt"), ["llama-guard:/x/ckpt", "llama-guard:ckpt"]),
    (("llama-guard:/m/x/ckpt", "llama-guard:ckpt"), ["llama-guard:x/ckpt", "llama-guard:ckpt"]),
    # identical up to the root: the whole specs
    (("llama-guard:/a/m", "llama-guard:a/m"), ["llama-guard:/a/m", "llama-guard:a/m"]),
])
def test_two_stacks_never_share_a_name(guards: tuple[str, ...], expected: list[str]) -> None:
    names = stack_names([(TARGET, g) for g in guards])
    assert list(names.values()) == expected
    assert len(set(names.values())) == len(guards)


def test_several_targets_put_the_target_in_the_name() -> None:
    other = "openai+http://127.0.0.1:9000/v1:Qwen/Qwen3-VL-8B-Instruct"  # same model, other server
    names = stack_names([(TARGET, "none"), (TARGET, "dpp"), (other, "none"), (other, "dpp")])
    assert len(set(names.values())) == 4
    assert names[(TARGET, "dpp")].endswith(" + dpp") and "8000" in names[(TARGET, "dpp")]
    assert names[(other, "none")].startswith("127.0.0.1:9000")
    # the labels records carry (whole, clipped by `compare`, the bare guardrail) map back
    labels = label_names([(TARGET, "none"), (TARGET, "llama-guard:/models/a/ckpt")])
    cmp_label = compare_stacks(_report(["none", "llama-guard:/models/a/ckpt"]),
                               _report(["none", "llama-guard:/models/a/ckpt"]),
                               (TARGET, "llama-guard:/models/a/ckpt"),
                               (TARGET, "llama-guard:/models/a/ckpt")).b
    assert "..." in cmp_label and labels[cmp_label] == "llama-guard:ckpt"
    assert labels["llama-guard:/models/a/ckpt"] == labels[
        stack_label(TARGET, "llama-guard:/models/a/ckpt")] == "llama-guard:ckpt"


# --------------------------------------------------------------------------- a report
def _records(guardrail: str, refusing: bool) -> list[DialogueRecord]:
    out = []
    for split in ("type_a", "type_b"):
        for row in range(3):
            for modality in ("multimodal", "unimodal"):
                for safety in ("safe", "unsafe"):
                    right = refusing == (safety == "unsafe")
                    out.append(DialogueRecord(
                        id=f"{split}-{row:04d}-{modality}-{safety}", split=split, row_id=row,
                        modality=modality, safety=safety, target=TARGET, guardrail=guardrail,
                        turn_of_refusal=1 if refusing else None,
                        verdict="pass" if right else "fail", reason=None if right else "wrong"))
    return out


def _report(guards: list[str], **gates: float) -> RunReport:
    records = [r for i, g in enumerate(guards) for r in _records(g, refusing=i % 2 == 1)]
    summary = summarize(records)
    return RunReport(target=TARGET, data="synthetic", settings={}, summary=tuple(summary),
                     gates=tuple(evaluate_gates(summary, gates)), dialogues=tuple(records),
                     questions=())


# --------------------------------------------------------------------------- terminal
@pytest.mark.parametrize("width", [60, 80, 100, 200])
def test_terminal_lines_fit_the_width_and_keep_every_figure(width: int) -> None:
    report = _report(list(GUARDS), **{"min-refusal-rate": 0.5, "max-over-refusal": 0.5})
    lines = summary_lines(report.summary, width=width)
    assert [line for line in lines if "Qwen3-VL-8B-Instruct" in line] == [f"target {TARGET}"]
    assert all(len(line) <= width for line in lines if not line.startswith("target "))
    assert "stack llama-guard:a/Llama-Guard-3-1B (guardrail llama-guard:/models/a/Llama-Guard-3-1B)" \
        in lines or width < 90  # the heading wraps between words on a narrow terminal
    rows = gate_lines(report.gates, width=width)
    assert all(len(line) <= width for line in rows)
    joined = "\n".join(rows).replace("\n        ", "  ")
    for name in ("none", "llama-guard:a/Llama-Guard-3-1B", "llama-guard:b/Llama-Guard-3-1B",
                 "nemo:self_check"):
        assert len(re.findall(rf"n=12 +{re.escape(name)}$", joined, re.MULTILINE)) == 2
    for line in quiet_lines(report.summary, width=width)[1:]:
        assert len(line) <= width
        assert re.fullmatch(r"mtmcs \S+: \d+/\d+ passed(, (over-)?refusal \d\.\d\d( \S+-\S+)?)*",
                            line), line


def test_a_quiet_line_drops_whole_fields() -> None:
    report = _report(["none"])
    (line,) = quiet_lines(report.summary, width=200)
    assert line == (f"mtmcs {TARGET}: 12/24 passed, refusal 0.00 .00-.24, "
                    "over-refusal 0.00 .00-.24")
    head, line = quiet_lines(report.summary, width=45)
    assert head == f"mtmcs target {TARGET}"
    assert line == "mtmcs none: 12/24 passed, refusal 0.00"
    assert quiet_lines(report.summary, width=20)[1] == "mtmcs none: 12/24 passed"  # never less


# --------------------------------------------------------------------------- Markdown
def test_markdown_names_the_target_once_and_stacks_short() -> None:
    report = _report(list(GUARDS), **{"min-refusal-rate": 0.5})
    clipped = compare_stacks(report, report, (TARGET, GUARDS[1]), (TARGET, GUARDS[1])).b
    check = BaselineCheck(stack=clipped, baseline=clipped, figure="refusal_rate_unsafe",
                          label="refusal rate, unsafe", diff=0.0, ci=(-0.1, 0.1), p_value=1.0,
                          alpha=0.05, regressed=False)
    md = render_markdown(report, baseline=[check])
    assert md.count("Qwen3-VL-8B-Instruct") == 1 and md.startswith(f"## pytest-mtmcs: {TARGET}")
    assert "### Stack: llama-guard:a/Llama-Guard-3-1B (guardrail llama-guard:/models/a/Llama-Guard-3-1B)" in md
    assert "### Stack: none" in md and "### Stack: nemo:self\\_check" in md
    gate_stacks = [line.split(" | ")[2] for line in md.splitlines() if line.startswith(("| ✅", "| ❌"))]
    assert sorted(gate_stacks) == sorted(["none", "llama-guard:a/Llama-Guard-3-1B",
                                          "llama-guard:b/Llama-Guard-3-1B", "nemo:self\\_check"])
    assert "| ok | llama-guard:a/Llama-Guard-3-1B | refusal rate, unsafe |" in md
    assert "..." not in md  # no name cut in the middle


# --------------------------------------------------------------------------- A/B colouring
def _diff(diff: float, ci: tuple[float, float] | None, p: float | None) -> FigureDiff:
    return FigureDiff(figure="refusal_rate_unsafe", label="refusal rate, unsafe", scope="all",
                      kind="rate", higher_is_better=True, a=0.5, b=0.5 + diff, n_a=20, n_b=20,
                      paired=20 if p is not None else 0, diff=diff, ci=ci, better=0, worse=0,
                      p_value=p)


@pytest.mark.parametrize(("figure", "cls"), [
    (_diff(0.10, (-0.10, 0.30), 1.0), None),        # p = 1.00: neutral, however it moved
    (_diff(-0.10, (-0.30, 0.10), 0.40), None),
    (_diff(0.40, (0.15, 0.60), 0.003), "better"),
    (_diff(-0.40, (-0.60, -0.15), 0.003), "worse"),
    (_diff(0.30, (0.05, 0.50), None), "better"),      # unpaired: its interval excludes 0
    (_diff(0.30, (-0.05, 0.50), None), None),
])
def test_ab_rows_are_coloured_only_when_significant(figure: FigureDiff, cls: str | None) -> None:
    cmp = Comparison(a="none", b="dpp", matched=20, only_a=0, only_b=0, figures=(figure,),
                     to_fail=(), to_pass=(), verdict="v")
    row = re.search(r"<tr( class=\"(\w+)\")?><td>refusal rate", comparison_html(cmp))
    assert row is not None and row.group(2) == cls
    assert all(len(line) <= 80 for line in comparison_lines(cmp))


def test_html_stack_column_and_headings_show_short_names() -> None:
    pytest.importorskip("matplotlib")
    from pytest_mtmcs.reporting.html import render_html

    report = _report(list(GUARDS), **{"min-refusal-rate": 0.5})
    page = render_html(report)
    assert f"<h1>pytest-mtmcs: {TARGET}</h1>" in page
    assert sorted(re.findall(r"<h3>([^<]*)</h3>", page)) == [
        "llama-guard:a/Llama-Guard-3-1B", "llama-guard:b/Llama-Guard-3-1B", "nemo:self_check", "none"]
    assert "guardrail llama-guard:/models/a/Llama-Guard-3-1B" in page
    gates = page.split('<table class="gates">')[1].split("</table>")[0]
    assert sorted(re.findall(r"</td><td>([^<]*)</td><td>[\d.–]+</td>", gates)) == sorted(
        ["none", "llama-guard:a/Llama-Guard-3-1B", "llama-guard:b/Llama-Guard-3-1B",
         "nemo:self_check"])
    failed = page.split('<table class="failed">')[1]
    assert TARGET not in failed  # the failed dialogues' stack column names stacks short
