"""Loaders and dialogue assembly (the official schema and the benchmark's pairing)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from _data import dialogue, png_bytes, row, small_dataset, write_dataset

from pytest_mtmcs.dataset import DataSelection, load_cases
from pytest_mtmcs.errors import DataError


def _by_id(cases):  # type: ignore[no-untyped-def]
    return {c.id: c for c in cases}


def test_assembly_follows_the_protocol(dataset: Path) -> None:
    cases = _by_id(load_cases(DataSelection(data=str(dataset))))
    assert len(cases) == 16
    assert cases["type_a-0000-multimodal-unsafe"].turns == ("MM0 r1 turn", "MM0 r2 turn", "MM0 unsafe_r3 turn")
    assert cases["type_a-0000-multimodal-safe"].turns == ("MM0 r1 turn", "MM0 r2 turn", "MM0 safe_r3 turn")
    assert cases["type_b-0001-unimodal-unsafe"].turns == ("UM1 unsafe_r1 turn", "UM1 r2 turn", "UM1 r3 turn")
    assert cases["type_b-0001-unimodal-safe"].turns == ("UM1 safe_r1 turn", "UM1 r2 turn", "UM1 r3 turn")


def test_images_only_on_multimodal_and_lazy(dataset: Path) -> None:
    cases = load_cases(DataSelection(data=str(dataset)))
    for c in cases:
        if c.modality == "multimodal":
            assert c.image is not None and c.image.data is None  # a reference, not bytes
            assert c.image.load_bytes() == png_bytes(c.row_id)
        else:
            assert c.image is None


def test_questions_go_to_the_right_transcript(dataset: Path) -> None:
    cases = _by_id(load_cases(DataSelection(data=str(dataset))))
    safe = cases["type_a-0000-unimodal-safe"].questions
    unsafe = cases["type_a-0000-unimodal-unsafe"].questions
    assert [(q.kind, q.index, q.answer) for q in safe] == [("mcq", 0, "A")]
    assert [(q.kind, q.index, q.answer) for q in unsafe] == [
        ("mcq", 1, "B"), ("tf", 0, "true"), ("tf", 1, "false")]


def test_captions_beside_the_data(dataset: Path) -> None:
    cases = load_cases(DataSelection(data=str(dataset)))
    assert {c.caption for c in cases if c.row_id == 1} == {"A plain test picture number 1."}


def test_selection_splits_modalities_limit(dataset: Path) -> None:
    cases = load_cases(DataSelection(data=str(dataset), splits=("type_b",), modalities=("unimodal",),
                                     limit=1))
    assert [c.id for c in cases] == ["type_b-0000-unimodal-safe", "type_b-0000-unimodal-unsafe"]


def test_empty_turn_is_an_error_unless_fallback(tmp_path: Path) -> None:
    d = dialogue("UM4") | {"safe_r1": ""}
    data = write_dataset(tmp_path / "ds", {"type_a": [row(0)], "type_b": [row(4, unimodal_dialogue=d)]})
    with pytest.raises(DataError) as err:
        load_cases(DataSelection(data=str(data)))
    assert err.value.row == 4 and err.value.field == "unimodal_dialogue.safe_r1"
    cases = _by_id(load_cases(DataSelection(data=str(data), fallback=True)))
    assert cases["type_b-0004-unimodal-safe"].turns[0] == "UM4 r1 turn"


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    bad1, bad2 = row(1), row(2)
    bad1["multimodal_tf"][0]["ground_truth"] = None
    del bad2["unsafe_intent"]
    bad2["unsafe_intent"] = None
    data = write_dataset(tmp_path / "ds", {"type_a": [bad1, bad2], "type_b": [row(1)]})
    with pytest.raises(DataError) as err:
        load_cases(DataSelection(data=str(data)))
    text = str(err.value)
    assert "2 problems" in text
    assert "row id 1, field 'multimodal_tf.0.ground_truth'" in text
    assert "row id 2, field 'unsafe_intent'" in text


def test_jsonl_loader(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(png_bytes(3))
    lines = []
    for split in ("type_a", "type_b"):
        r = row(7)
        r.pop("variant_images")
        r |= {"split": split, "image": "img/a.png", "caption": "A red square."}
        lines.append(json.dumps(r))
    path = tmp_path / "bench.jsonl"
    path.write_text("\n".join(lines) + "\n")
    cases = _by_id(load_cases(DataSelection(data=str(path))))
    assert len(cases) == 8
    c = cases["type_b-0007-multimodal-unsafe"]
    assert c.image is not None and c.image.load_bytes() == png_bytes(3)
    assert c.caption == "A red square."


def test_jsonl_errors_name_line_and_field(tmp_path: Path) -> None:
    r = row(1)
    r.pop("variant_images")
    r |= {"split": "type_a", "image": "missing.png"}
    path = tmp_path / "bench.jsonl"
    path.write_text(json.dumps(r) + "\n{not json\n")
    with pytest.raises(DataError) as err:
        load_cases(DataSelection(data=str(path)))
    text = str(err.value)
    assert f"{path}:1, row id 1, field 'image': image file" in text
    assert f"{path}:2: not valid JSON" in text


def test_datasets_loader_reads_a_local_dataset(tmp_path: Path) -> None:
    pytest.importorskip("datasets", reason='the datasets loader needs pip install "pytest-mtmcs[hf]"')
    data = small_dataset(tmp_path / "ds", 2)
    cases = _by_id(load_cases(DataSelection(data=f"datasets:{data}", captions=str(data / "captions.json"))))
    assert len(cases) == 16
    c = cases["type_a-0001-multimodal-unsafe"]
    assert c.image is not None and c.image.data is None
    assert c.image.load_bytes() == png_bytes(1)
    assert c.turns[2] == "MM1 unsafe_r3 turn"


def test_unknown_folder_layout(tmp_path: Path, dataset: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no parquet files for split 'type_a'"):
        load_cases(DataSelection(data=str(empty)))
    only_a = tmp_path / "only_a"
    shutil.copytree(dataset, only_a)
    (only_a / "data" / "type_b-00000-of-00001.parquet").unlink()
    assert len(load_cases(DataSelection(data=str(only_a), splits=("type_a",)))) == 8


def test_dataset_id_without_datasets_cache_is_a_clear_error() -> None:
    pytest.importorskip("datasets")
    with pytest.raises(DataError, match=r"ND-25/MCS-bench.*could not load split"):
        load_cases(DataSelection(data="ND-25/MCS-bench"))
