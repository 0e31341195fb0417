"""Variant images (`--mtmcs-variants`): read from parquet, `datasets` and JSONL, confined to the
dataset's folder, checked before anything is sent, and assembled into their own dialogues."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _data import png_bytes, row, variant_png_bytes, write_dataset

from pytest_mtmcs.dataset import Case, DataSelection, load_cases
from pytest_mtmcs.errors import DataError


def _ids(cases: list[Case]) -> list[str]:
    return [c.id for c in cases]


def _multimodal(cases: list[Case]) -> dict[str, Case]:
    return {c.id: c for c in cases if c.modality == "multimodal"}


def test_none_is_todays_run(dataset: Path) -> None:
    assert [c.variant for c in load_cases(DataSelection(data=str(dataset)))] == [0] * 16
    assert load_cases(DataSelection(data=str(dataset), variants=0)) == load_cases(
        DataSelection(data=str(dataset)))


def test_all_variants_from_parquet(dataset: Path) -> None:
    cases = load_cases(DataSelection(data=str(dataset), variants=None))
    # 2 rows x 2 splits: 4 unimodal + 4 multimodal dialogues per row, multimodal x (1 + 3)
    assert len(cases) == 4 * (2 + 2 * 4)
    mm = _multimodal(cases)
    for split in ("type_a", "type_b"):
        for r in (0, 1):
            base = mm[f"{split}-{r:04d}-multimodal-unsafe"]
            assert base.variant == 0 and base.image is not None
            assert base.image.load_bytes() == png_bytes(r)
            for n in (1, 2, 3):
                v = mm[f"{split}-{r:04d}-multimodal-unsafe-v{n}"]
                assert v.variant == n and v.image is not None
                assert v.image.load_bytes() == variant_png_bytes(r, n - 1)
                # the same dialogue, questions and caption: only the picture changes
                assert (v.turns, v.questions, v.caption, v.intent) == (
                    base.turns, base.questions, base.caption, base.intent)
    assert not any(c.id.endswith(("-v1", "-v2", "-v3")) for c in cases if c.modality == "unimodal")
    # order: the base pair, then each variant's pair, then the unimodal dialogues
    assert _ids(cases)[:10] == [
        "type_a-0000-multimodal-safe", "type_a-0000-multimodal-unsafe",
        "type_a-0000-multimodal-safe-v1", "type_a-0000-multimodal-unsafe-v1",
        "type_a-0000-multimodal-safe-v2", "type_a-0000-multimodal-unsafe-v2",
        "type_a-0000-multimodal-safe-v3", "type_a-0000-multimodal-unsafe-v3",
        "type_a-0000-unimodal-safe", "type_a-0000-unimodal-unsafe"]


def test_first_n_variants(dataset: Path) -> None:
    cases = load_cases(DataSelection(data=str(dataset), variants=1))
    assert sorted({c.variant for c in cases}) == [0, 1]
    assert sum(c.variant == 1 for c in cases) == 2 * 2 * 2


def test_rows_without_variants_simply_have_none(tmp_path: Path) -> None:
    plain = row(0)
    plain["variant_images"] = []
    nulled = row(1)
    nulled["variant_images"] = None
    two = row(2)
    two["variant_images"] = two["variant_images"][:2]
    data = write_dataset(tmp_path / "ds", {"type_a": [plain, nulled, two, row(3)]})
    cases = load_cases(DataSelection(data=str(data), splits=("type_a",), variants=None))
    by_row: dict[int, set[int]] = {}
    for c in cases:
        if c.modality == "multimodal":
            by_row.setdefault(c.row_id, set()).add(c.variant)
    assert by_row == {0: {0}, 1: {0}, 2: {0, 1, 2}, 3: {0, 1, 2, 3}}


def test_a_split_without_the_column_has_no_variants(tmp_path: Path) -> None:
    rows = [row(i) for i in range(2)]
    for r in rows:
        del r["variant_images"]
    schema = pa.schema([f for f in pa.schema(_schema_fields()) if f.name != "variant_images"])
    data = write_dataset(tmp_path / "ds", {"type_a": rows}, schema=schema)
    cases = load_cases(DataSelection(data=str(data), splits=("type_a",), variants=None))
    assert {c.variant for c in cases} == {0}


def _schema_fields() -> list[pa.Field]:
    from _data import SCHEMA

    return list(SCHEMA)


def _corrupt(folder: Path, split: str, row_index: int, variant: int, cell: dict[str, Any] | None) -> None:
    path = folder / "data" / f"{split}-00000-of-00001.parquet"
    table = pq.read_table(path).to_pylist()
    table[row_index]["variant_images"][variant] = cell
    from _data import SCHEMA

    pq.write_table(pa.Table.from_pylist(table, schema=SCHEMA), path)


def test_a_corrupt_variant_names_the_row_and_the_variant(dataset: Path) -> None:
    _corrupt(dataset, "type_b", 1, 1, {"bytes": b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "path": "x.png"})
    # a run that does not ask for variants does not read them
    assert len(load_cases(DataSelection(data=str(dataset)))) == 16
    with pytest.raises(DataError) as info:
        load_cases(DataSelection(data=str(dataset), variants=None))
    text = str(info.value)
    assert "type_b-00000-of-00001.parquet" in text and "row id 1" in text
    assert "field 'variant_images[1]'" in text and "variant image 2:" in text
    assert "does not decode" in text or "not one" in text
    # asking only for the first variant does not touch the second
    assert len(load_cases(DataSelection(data=str(dataset), variants=1))) == 24


def test_an_empty_variant_cell_is_an_error(dataset: Path) -> None:
    _corrupt(dataset, "type_a", 0, 2, None)
    with pytest.raises(DataError, match=r"row id 0, field 'variant_images\[2\]': variant image 3: "
                                        "the image cell is empty"):
        load_cases(DataSelection(data=str(dataset), variants=None))


def test_a_variant_path_outside_the_dataset_is_refused(tmp_path: Path, dataset: Path) -> None:
    outside = tmp_path / "secret.png"
    outside.write_bytes(png_bytes(7))
    _corrupt(dataset, "type_a", 1, 0, {"bytes": None, "path": str(outside)})
    with pytest.raises(DataError, match=r"row id 1, field 'variant_images\[0\]'.*outside the "
                                        "dataset's folder"):
        load_cases(DataSelection(data=str(dataset), variants=None))
    # a path cell is read relative to the parquet file's folder, inside the dataset's folder
    inside = dataset / "data" / "images" / "v.png"
    inside.parent.mkdir()
    inside.write_bytes(variant_png_bytes(1, 0))
    _corrupt(dataset, "type_a", 1, 0, {"bytes": None, "path": "images/v.png"})
    cases = {c.id: c for c in load_cases(DataSelection(data=str(dataset), variants=1))}
    ref = cases["type_a-0001-multimodal-safe-v1"].image
    assert ref is not None and ref.path is not None and ref.load_bytes() == variant_png_bytes(1, 0)


def _jsonl(folder: Path, variants: object, *, row_id: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "img.png").write_bytes(png_bytes(row_id))
    for i in range(3):
        (folder / f"v{i}.png").write_bytes(variant_png_bytes(row_id, i))
    r = row(row_id)
    r.update(split="type_a", image="img.png", variant_images=variants)
    path = folder / "data.jsonl"
    path.write_text(json.dumps(r) + "\n", encoding="utf-8")
    return path


def test_jsonl_variants_are_paths_beside_the_file(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "j", ["v0.png", "v1.png", "v2.png"])
    cases = load_cases(DataSelection(data=str(path), splits=("type_a",), variants=None))
    mm = _multimodal(cases)
    assert len(mm) == 8
    for n in (1, 2, 3):
        ref = mm[f"type_a-0000-multimodal-safe-v{n}"].image
        assert ref is not None and ref.load_bytes() == variant_png_bytes(0, n - 1)


@pytest.mark.parametrize(("variants", "field", "why"), [
    (["v0.png", "missing.png"], "variant_images[1]", "does not exist"),
    (["v0.png", "../../etc/passwd"], "variant_images[1]", "outside the dataset's folder"),
    (["v0.png", 7], "variant_images[1]", "expected a path to an image file"),
    ("v0.png", "variant_images", "expected a list of paths to image files, got a JSON str"),
    (["data.jsonl"], "variant_images[0]", "cannot read the image"),
])
def test_jsonl_variant_problems_name_line_row_and_variant(tmp_path: Path, variants: object,
                                                          field: str, why: str) -> None:
    path = _jsonl(tmp_path / "j", variants)
    assert len(load_cases(DataSelection(data=str(path), splits=("type_a",)))) == 4
    with pytest.raises(DataError) as info:
        load_cases(DataSelection(data=str(path), splits=("type_a",), variants=None))
    text = str(info.value)
    assert f"file {path}:1, row id 0, field '{field}'" in text and why in text


def test_datasets_loader_reads_variants(tmp_path: Path) -> None:
    pytest.importorskip("datasets", reason='the datasets loader needs pip install "pytest-mtmcs[hf]"')
    from _data import small_dataset

    data = small_dataset(tmp_path / "ds", 2)
    cases = _multimodal(load_cases(DataSelection(
        data=f"datasets:{data}", captions=str(data / "captions.json"), variants=2)))
    assert len(cases) == 2 * 2 * 2 * 3
    for n in (1, 2):
        ref = cases[f"type_b-0001-multimodal-unsafe-v{n}"].image
        assert ref is not None and ref.dataset is not None and ref.data is None
        assert ref.load_bytes() == variant_png_bytes(1, n - 1)


def test_datasets_loader_names_a_corrupt_variant(tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    from _data import small_dataset

    data = small_dataset(tmp_path / "ds", 2)
    _corrupt(data, "type_a", 0, 0, {"bytes": b"GIF89a broken", "path": "x.gif"})
    with pytest.raises(DataError, match=r"row id 0, field 'variant_images\[0\]': variant image 1"):
        load_cases(DataSelection(data=f"datasets:{data}", captions=str(data / "captions.json"),
                                 variants=None))


def test_the_sample_carries_three_real_variants_per_row() -> None:
    sample = Path(__file__).resolve().parents[3] / "fixtures" / "mtmcs-sample"
    cases = load_cases(DataSelection(data=str(sample), variants=None))
    pictures: dict[tuple[str, int], dict[int, bytes]] = {}
    for c in cases:
        if c.modality == "multimodal" and c.safety == "unsafe":
            assert c.image is not None
            pictures.setdefault((c.split, c.row_id), {})[c.variant] = c.image.load_bytes()
    assert pictures and all(sorted(p) == [0, 1, 2, 3] for p in pictures.values())
    # each variant is an edit of the photograph, not a copy of it or of another variant
    assert all(len(set(p.values())) == 4 for p in pictures.values())
