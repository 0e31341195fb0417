"""Collection, selection and pytest integration of MTMCS items (black box, pytester)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from _runs import load_report, rates, run_mtmcs

# 2 rows x 2 splits x 4 dialogues = 16 dialogues; per row and modality 4 questions: 32.
N_DIALOGUES, N_QUESTIONS = 16, 32


def test_without_mtmcs_nothing_is_collected(pytester: pytest.Pytester, dataset: Path) -> None:
    pytester.makepyfile("def test_plain(): pass")
    result = pytester.runpytest("--collect-only", "-q")
    result.stdout.fnmatch_lines(["*::test_plain", "1 test collected*"])
    result.stdout.no_fnmatch_line("*mtmcs[[]*")


def test_our_options_without_mtmcs_are_a_usage_error(pytester: pytest.Pytester, dataset: Path) -> None:
    """`--mtmcs-data` without `--mtmcs` would otherwise run the other tests and pass, the
    benchmark silently left out."""
    pytester.makepyfile("def test_plain(): pass")
    result = pytester.runpytest(f"--mtmcs-data={dataset}", "--mtmcs-limit=1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--mtmcs-data, --mtmcs-limit given but the benchmark is off: add --mtmcs*"])


def test_collects_one_item_per_dialogue_and_question(pytester: pytest.Pytester, dataset: Path) -> None:
    result = run_mtmcs(pytester, dataset, "--collect-only", "-q")
    result.stdout.fnmatch_lines([
        "*::mtmcs[[]type_a-0000-multimodal-safe[]]",
        "*::mtmcs[[]type_a-0000-multimodal-safe-mcq0[]]",
        "*::mtmcs[[]type_a-0000-multimodal-unsafe[]]",
        "*::mtmcs[[]type_a-0000-multimodal-unsafe-mcq1[]]",
        "*::mtmcs[[]type_a-0000-multimodal-unsafe-tf0[]]",
        "*::mtmcs[[]type_a-0000-multimodal-unsafe-tf1[]]",
        f"{N_DIALOGUES + N_QUESTIONS} tests collected*",
    ])


def test_refuse_baseline_rates(pytester: pytest.Pytester, dataset: Path, xdist_args: list[str]) -> None:
    result = run_mtmcs(pytester, dataset, *xdist_args, target="baseline:refuse")
    # unsafe dialogues pass (refused), safe ones fail (over-refused); every answer is a refusal,
    # so no question can be parsed and all fail.
    result.assert_outcomes(passed=8, failed=8 + N_QUESTIONS)
    got = rates(load_report(pytester))
    assert got == {(s, m): (1.0, 1.0) for s in ("type_a", "type_b")
                   for m in ("multimodal", "unimodal")}


def test_comply_baseline_rates(pytester: pytest.Pytester, dataset: Path, xdist_args: list[str]) -> None:
    result = run_mtmcs(pytester, dataset, *xdist_args, "-m", "not mcq and not tf",
                       target="baseline:comply")
    outcomes = result.parseoutcomes()
    assert (outcomes.get("passed"), outcomes.get("failed")) == (8, 8)
    got = rates(load_report(pytester))
    assert got == {(s, m): (0.0, 0.0) for s in ("type_a", "type_b")
                   for m in ("multimodal", "unimodal")}


def test_keyword_and_marker_selection(pytester: pytest.Pytester, dataset: Path) -> None:
    result = run_mtmcs(pytester, dataset, "-k", "type_b and unsafe and not mcq and not tf",
                       "--collect-only", "-q")
    result.stdout.fnmatch_lines(["*4/48 tests collected (44 deselected)*"])
    result = run_mtmcs(pytester, dataset, "-m", "type_a and unimodal and safe and mcq",
                       "--collect-only", "-q")
    result.stdout.fnmatch_lines(["*::mtmcs[[]type_a-0000-unimodal-safe-mcq0[]]",
                                 "*::mtmcs[[]type_a-0001-unimodal-safe-mcq0[]]",
                                 "*2/48 tests collected (46 deselected)*"])


def test_last_failed_reruns_only_failures(pytester: pytest.Pytester, dataset: Path) -> None:
    first = run_mtmcs(pytester, dataset, "-m", "not mcq and not tf", target="baseline:comply")
    first.assert_outcomes(passed=8, failed=8, deselected=N_QUESTIONS)
    again = run_mtmcs(pytester, dataset, "--lf", "-m", "not mcq and not tf", target="baseline:comply")
    again.assert_outcomes(failed=8, deselected=N_QUESTIONS + 8)
    again.stdout.fnmatch_lines(["*run-last-failure: rerun previous 8 failures*"])


def test_exitfirst_stops_at_first_failure(pytester: pytest.Pytester, dataset: Path) -> None:
    result = run_mtmcs(pytester, dataset, "-x", target="baseline:comply")
    result.assert_outcomes(passed=1, failed=1)  # the safe dialogue passes, its MCQ fails
    assert result.ret == 1


def test_junitxml_has_items_and_records(pytester: pytest.Pytester, dataset: Path) -> None:
    xml = pytester.path / "junit.xml"
    run_mtmcs(pytester, dataset, f"--junitxml={xml}", "-m", "unsafe and not mcq and not tf",
              target="baseline:comply")
    root = ET.parse(xml).getroot()
    cases = root.findall(".//testcase")
    assert sorted(c.get("name") for c in cases) == sorted(
        f"mtmcs[{s}-{i:04d}-{m}-unsafe]" for s in ("type_a", "type_b") for i in (0, 1)
        for m in ("multimodal", "unimodal"))
    assert all(c.find("failure") is not None for c in cases)
    props = cases[0].findall("properties/property")
    assert [p.get("name") for p in props] == ["mtmcs_dialogue"]
    assert '"turn_of_refusal":null' in props[0].get("value")


def test_ini_options_are_read(pytester: pytest.Pytester, dataset: Path) -> None:
    pytester.makeini(f"""
        [pytest]
        mtmcs = true
        mtmcs_data = {dataset}
        mtmcs_target = baseline:comply
        mtmcs_split = type_b
        mtmcs_modality = unimodal
        mtmcs_limit = 1
        mtmcs_store = {pytester.path / 'store.sqlite'}
    """)
    result = pytester.runpytest("--collect-only", "-q")
    result.stdout.fnmatch_lines(["*::mtmcs[[]type_b-0000-unimodal-safe[]]", "6 tests collected*"])
    result = pytester.runpytest("-q", "-m", "not mcq and not tf")
    result.assert_outcomes(passed=1, failed=1, deselected=4)


def test_sample_is_seeded_and_keeps_pairs(pytester: pytest.Pytester, tmp_path: Path) -> None:
    import _data

    data = _data.small_dataset(tmp_path / "big", 10)
    picks = []
    for _ in range(2):
        result = run_mtmcs(pytester, data, "--mtmcs-sample=3", "--mtmcs-seed=7",
                           "--mtmcs-split=type_a", "--mtmcs-modality=unimodal",
                           "-m", "not mcq and not tf", "--collect-only", "-q")
        picks.append(sorted(line.split("::")[1] for line in result.outlines if "::mtmcs[" in line))
    assert picks[0] == picks[1] and len(picks[0]) == 6
    rows = {line.split("-")[1] for line in picks[0]}
    assert len(rows) == 3
    assert all(f"mtmcs[type_a-{r}-unimodal-{s}]" in picks[0] for r in rows for s in ("safe", "unsafe"))


def test_skip_questions_collects_dialogues_only(pytester: pytest.Pytester, dataset: Path) -> None:
    result = run_mtmcs(pytester, dataset, "--mtmcs-skip-questions", "--collect-only", "-q")
    result.stdout.fnmatch_lines([f"{N_DIALOGUES} tests collected*"])
    result.stdout.no_fnmatch_line("*-mcq*")
