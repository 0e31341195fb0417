"""Variant items (`--mtmcs-variants`): ids, the `variant` marker, selection with -k and -m,
the consistency gate, and bad variant data as a usage error (black box, pytester)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _data import SCHEMA
from _runs import load_report, run_mtmcs

# 2 rows x 2 splits: 8 unimodal and 8 multimodal dialogues, the multimodal ones on 3 variants
# more; 4 questions per row, modality and image.
BASE_DIALOGUES, BASE_QUESTIONS = 16, 32
VARIANT_DIALOGUES, VARIANT_QUESTIONS = 8 * 3, 16 * 3


def test_variant_items_and_marker(pytester: pytest.Pytester, dataset: Path) -> None:
    result = run_mtmcs(pytester, dataset, "--mtmcs-variants=all", "--collect-only", "-q")
    result.stdout.fnmatch_lines([
        "*::mtmcs[[]type_a-0000-multimodal-safe[]]",
        "*::mtmcs[[]type_a-0000-multimodal-safe-v1[]]",
        "*::mtmcs[[]type_a-0000-multimodal-unsafe-v2-tf1[]]",
        "*::mtmcs[[]type_b-0001-multimodal-unsafe-v3[]]",
        f"{BASE_DIALOGUES + BASE_QUESTIONS + VARIANT_DIALOGUES + VARIANT_QUESTIONS} tests "
        "collected*",
    ])
    result.stdout.no_fnmatch_line("*unimodal*-v1*")
    marked = run_mtmcs(pytester, dataset, "--mtmcs-variants=all", "--collect-only", "-q",
                       "-m", "variant")
    marked.stdout.fnmatch_lines([f"{VARIANT_DIALOGUES + VARIANT_QUESTIONS}/* tests collected*"])
    marked.stdout.no_fnmatch_line("*multimodal-safe[]]")
    none = run_mtmcs(pytester, dataset, "--mtmcs-variants=2", "--collect-only", "-q",
                     "-m", "variant and not mcq and not tf")
    none.stdout.fnmatch_lines(["*-v2[]]", f"{8 * 2}/* tests collected*"])
    none.stdout.no_fnmatch_line("*-v3*")
    markers = pytester.runpytest("--markers")
    markers.stdout.fnmatch_lines(["@pytest.mark.variant: *variant image*"])


def test_k_selects_the_second_variants(pytester: pytest.Pytester, dataset: Path,
                                       xdist_args: list[str]) -> None:
    result = run_mtmcs(pytester, dataset, *xdist_args, "--mtmcs-variants=all", "-k", "v2",
                       "--mtmcs-skip-questions", target="baseline:refuse")
    result.assert_outcomes(passed=4, failed=4)
    report = load_report(pytester)
    assert sorted(d["id"] for d in report["dialogues"]) == sorted(
        f"{s}-{r:04d}-multimodal-{safety}-v2" for s in ("type_a", "type_b") for r in (0, 1)
        for safety in ("safe", "unsafe"))
    # no base image ran: every group is incomplete, none is compared
    overall = next(r for r in report["robustness"] if r["split"] == "all")
    assert (overall["groups"], overall["incomplete"], overall["variant_consistency"]["n"]) == (0, 8, 0)
    result.stdout.fnmatch_lines(["*partial run: the figures cover 8 of 40 dialogues*"])


def test_the_consistency_gate(pytester: pytest.Pytester, dataset: Path, xdist_args: list[str]) -> None:
    ok = run_mtmcs(pytester, dataset, *xdist_args, "--mtmcs-variants=1", "--mtmcs-skip-questions",
                   "--mtmcs-min-variant-consistency=1", target="baseline:refuse")
    assert ok.ret == 0
    gate = load_report(pytester)["gates"][0]
    assert (gate["option"], gate["value"], gate["n"], gate["passed"]) == (
        "min-variant-consistency", 1.0, 8, True)
    # with the variant items left out, the gate measured nothing and fails with the reason
    left_out = run_mtmcs(pytester, dataset, *xdist_args, "--mtmcs-variants=1",
                         "--mtmcs-skip-questions", "--mtmcs-min-variant-consistency=1",
                         "--mtmcs-allow-partial", "-m", "not variant", target="baseline:refuse")
    assert left_out.ret == 1
    gate = load_report(pytester)["gates"][0]
    assert gate["value"] is None and not gate["passed"]
    assert "no dialogue was rolled out with a variant image" in gate["reason"]


@pytest.mark.parametrize(("args", "message"), [
    (["--mtmcs-variants=some"], "*--mtmcs-variants 'some': expected none, all, or a positive "
                                "number of variant images per dialogue*"),
    (["--mtmcs-variants=0"], "*--mtmcs-variants '0': expected none, all, or a positive*"),
    (["--mtmcs-min-variant-consistency=0.9"], "*--mtmcs-min-variant-consistency needs variant "
                                              "images: pass --mtmcs-variants all*"),
    (["--mtmcs-variants=all", "--mtmcs-modality=unimodal"],
     "*--mtmcs-variants all: variant images belong to multimodal dialogues*"),
    (["--mtmcs-variants=all", "--mtmcs-min-variant-consistency=1.5"],
     "*--mtmcs-min-variant-consistency '1.5': expected a number from 0 to 1*"),
])
def test_bad_variant_options(pytester: pytest.Pytester, dataset: Path, args: list[str],
                             message: str) -> None:
    result = run_mtmcs(pytester, dataset, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_a_corrupt_variant_is_exit_4_naming_row_and_variant(pytester: pytest.Pytester,
                                                            dataset: Path) -> None:
    path = dataset / "data" / "type_a-00000-of-00001.parquet"
    rows = pq.read_table(path).to_pylist()
    rows[1]["variant_images"][2] = {"bytes": b"\xff\xd8\xff\xe0 not a jpeg", "path": "v.jpg"}
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), path)
    plain = run_mtmcs(pytester, dataset, "--mtmcs-skip-questions")
    assert plain.ret == 1  # variants not asked for: not read, the run goes on
    result = run_mtmcs(pytester, dataset, "--mtmcs-variants=all")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*file {path}, row id 1, field 'variant_images[[]2[]]': "
                                 "variant image 3: the image starts like a JPEG file*"])
    assert "Traceback" not in result.stderr.str()


def test_a_missing_jsonl_variant_is_exit_4_naming_line_row_and_variant(
        pytester: pytest.Pytester, tmp_path: Path) -> None:
    import json

    from _data import png_bytes, row, variant_png_bytes

    folder = tmp_path / "j"
    folder.mkdir()
    (folder / "0.png").write_bytes(png_bytes(0))
    (folder / "0_v1.png").write_bytes(variant_png_bytes(0, 0))
    r = row(0)
    r.update(split="type_a", image="0.png", variant_images=["0_v1.png", "0_v2.png"])
    data = folder / "rows.jsonl"
    data.write_text(json.dumps(r) + "\n", encoding="utf-8")
    result = run_mtmcs(pytester, data, "--mtmcs-split=type_a", "--mtmcs-variants=all")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*file {data}:1, row id 0, field 'variant_images[[]1[]]': "
                                 f"variant image 2: image file {folder / '0_v2.png'} does not exist*"])
    assert run_mtmcs(pytester, data, "--mtmcs-split=type_a", "--mtmcs-variants=1",
                     "--mtmcs-skip-questions").ret == 1  # the first variant alone is fine


def test_junit_xml_carries_the_consistency(pytester: pytest.Pytester, dataset: Path) -> None:
    import xml.etree.ElementTree as ET

    xml = pytester.path / "junit.xml"
    run_mtmcs(pytester, dataset, "--mtmcs-variants=2", "--mtmcs-skip-questions",
              f"--junitxml={xml}", target="baseline:refuse")
    props = {p.get("name"): p.get("value") for p in ET.parse(xml).iter("property")}
    prefix = "mtmcs.baseline:refuse.none"
    assert props[f"{prefix}.variant_consistency"] == "1.0000"
    assert props[f"{prefix}.variant_consistency.n"] == "8"
    assert props[f"{prefix}.worst_case_refusal_unsafe"] == "1.0000"
