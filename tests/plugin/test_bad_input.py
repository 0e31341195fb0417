"""Bad input gets one clear paragraph naming the file, row id and field (black box)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from _data import SCHEMA, dialogue, row, small_dataset, write_dataset
from _runs import run_mtmcs


def test_missing_column_is_a_usage_error(pytester: pytest.Pytester, tmp_path: Path) -> None:
    schema = pa.schema([f for f in SCHEMA if f.name != "unimodal_tf"])
    rows = [{k: v for k, v in row(0).items() if k != "unimodal_tf"}]
    data = write_dataset(tmp_path / "ds", {"type_a": rows, "type_b": rows}, schema=schema)
    result = run_mtmcs(pytester, data)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*type_a-00000-of-00001.parquet: missing column(s) unimodal_tf*"])


def test_empty_turn_names_row_and_field(pytester: pytest.Pytester, tmp_path: Path) -> None:
    d = dialogue("MM5") | {"unsafe_r3": "  "}
    data = write_dataset(tmp_path / "ds", {"type_a": [row(0), row(5, multimodal_dialogue=d)],
                                           "type_b": [row(0)]})
    result = run_mtmcs(pytester, data)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "*type_a-00000-of-00001.parquet, row id 5, field 'multimodal_dialogue.unsafe_r3': "
        "expected a non-empty user turn*--mtmcs-allow-fallback*"])
    ok = run_mtmcs(pytester, data, "--mtmcs-allow-fallback", "--collect-only", "-q")
    assert ok.ret == 0


def test_wrong_field_type_names_row_and_field(pytester: pytest.Pytester, tmp_path: Path) -> None:
    bad = row(3)
    bad["multimodal_mcq"][0]["ground_truth"] = "Z"
    data = write_dataset(tmp_path / "ds", {"type_a": [bad], "type_b": [row(3)]})
    result = run_mtmcs(pytester, data)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*row id 3, field 'multimodal_mcq.0.ground_truth'*expected one letter*"])


@pytest.mark.parametrize("image", [b"not an image", b"\x89PNG\r\n\x1a\n" + b"garbage" * 20],
                         ids=["no-image", "png-header-then-garbage"])
def test_undecodable_image_is_a_usage_error_before_any_call(pytester: pytest.Pytester,
                                                             tmp_path: Path, image: bytes) -> None:
    data = write_dataset(tmp_path / "ds", {"type_a": [row(0), row(1, image=image)],
                                           "type_b": [row(0)]})
    result = run_mtmcs(pytester, data, "-m", "multimodal and not mcq and not tf",
                       target="baseline:refuse")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*type_a-00000-of-00001.parquet, row id 1, field 'image': *"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert not (pytester.path / "store.sqlite").exists()  # nothing was rolled out
    # Without the multimodal dialogues the image is never sent, so it is not read either.
    ok = run_mtmcs(pytester, data, "--mtmcs-modality=unimodal", "--collect-only", "-q")
    assert ok.ret == 0


def test_unknown_split_is_a_usage_error(pytester: pytest.Pytester, dataset: Path) -> None:
    result = run_mtmcs(pytester, dataset, "--mtmcs-split=type_c")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--mtmcs-split 'type_c': expected a comma-separated list of type_a, type_b*"])


@pytest.mark.parametrize("spec, message", [
    ("nonsense", "*cannot parse target spec 'nonsense'*"),
    ("warp:drive", "*unknown target scheme 'warp'*"),
    ("openai+ftp://x:model", "*'openai+ftp://x:model'*http(s)://HOST[[]:PORT[]]/PATH*"),
    ("baseline:sometimes", "*unknown baseline 'sometimes'*"),
])
def test_bad_target_spec_is_a_usage_error(pytester: pytest.Pytester, dataset: Path, spec: str,
                                          message: str) -> None:
    result = run_mtmcs(pytester, dataset, target=spec)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_missing_data_is_a_usage_error(pytester: pytest.Pytester, tmp_path: Path) -> None:
    result = run_mtmcs(pytester, tmp_path / "nowhere")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*nowhere: does not exist*"])


def test_bad_number_is_a_usage_error(pytester: pytest.Pytester, dataset: Path) -> None:
    result = run_mtmcs(pytester, dataset, "--mtmcs-concurrency=lots")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--mtmcs-concurrency 'lots': expected a positive integer*"])


def test_duplicate_row_id(pytester: pytest.Pytester, tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "ds", {"type_a": [row(2), row(2)], "type_b": [row(2)]})
    result = run_mtmcs(pytester, data)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*row id 2, field 'id': duplicate row id*"])


def test_small_dataset_builder_roundtrip(tmp_path: Path) -> None:
    from pytest_mtmcs.dataset import DataSelection, load_cases

    data = small_dataset(tmp_path / "ds", 1)
    cases = load_cases(DataSelection(data=str(data)))
    assert [c.id for c in cases][:4] == ["type_a-0000-multimodal-safe", "type_a-0000-multimodal-unsafe",
                                         "type_a-0000-unimodal-safe", "type_a-0000-unimodal-unsafe"]

