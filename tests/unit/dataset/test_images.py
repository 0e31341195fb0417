"""The data's images, checked at load time: confined paths, bytes that decode, selected rows only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _data import png_bytes, row, write_dataset

from pytest_mtmcs.dataset import DataSelection, load_cases
from pytest_mtmcs.dataset.images import ImageProblem, confine, verify_image
from pytest_mtmcs.errors import DataError

GARBAGE_PNG = b"\x89PNG\r\n\x1a\n" + b"garbage!" * 40


def test_confine_accepts_files_inside_through_symlinks(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(png_bytes(1))
    (tmp_path / "alias.png").symlink_to("img/a.png")
    assert confine("alias.png", tmp_path) == (tmp_path / "img" / "a.png").resolve()
    assert confine(str(tmp_path / "img" / "a.png"), tmp_path) == (tmp_path / "img" / "a.png").resolve()
    assert confine("img/../img/a.png", tmp_path).name == "a.png"


@pytest.mark.parametrize("text, why", [
    ("../a.png", "leads outside"),
    ("/etc/hostname", "leads outside"),
    ("img", "is a directory"),
    ("img/none.png", "does not exist"),
    ("img/a.png\x00", "NUL byte"),
])
def test_confine_refuses(tmp_path: Path, text: str, why: str) -> None:
    (tmp_path / "ds" / "img").mkdir(parents=True)
    (tmp_path / "a.png").write_bytes(png_bytes(1))
    with pytest.raises(ImageProblem, match=why):
        confine(text, tmp_path / "ds")


def test_verify_image_reads_structure_not_just_the_magic() -> None:
    assert verify_image(png_bytes(2)) == "image/png"
    whole = png_bytes(3, size=64)
    for bad, why in ((GARBAGE_PNG, "is not one"), (whole[: len(whole) // 2], "does not decode"),
                     (b"GIF89a", "GIF"), (b"hello", "not a PNG, JPEG, GIF or WebP")):
        with pytest.raises(ImageProblem, match=why):
            verify_image(bad)


def test_only_the_selected_rows_images_are_read(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "ds", {"type_a": [row(0), row(1, image=GARBAGE_PNG)]})
    assert len(load_cases(DataSelection(data=str(data), splits=("type_a",), limit=1))) == 4
    assert len(load_cases(DataSelection(data=str(data), splits=("type_a",),
                                        modalities=("unimodal",)))) == 4
    with pytest.raises(DataError, match=r"row id 1, field 'image'"):
        load_cases(DataSelection(data=str(data), splits=("type_a",)))


def test_a_parquet_cell_with_a_path_inside_the_folder_is_that_file(tmp_path: Path) -> None:
    (tmp_path / "ds" / "images").mkdir(parents=True)
    (tmp_path / "ds" / "images" / "0.png").write_bytes(png_bytes(5))
    r = row(0)
    r["image"] = {"bytes": None, "path": "../images/0.png"}  # relative to the parquet's folder
    data = write_dataset(tmp_path / "ds", {"type_a": [r]})
    case = load_cases(DataSelection(data=str(data), splits=("type_a",)))[0]
    assert case.image is not None
    assert case.image.path == str((tmp_path / "ds" / "images" / "0.png").resolve())
    assert case.image.load_bytes() == png_bytes(5)


def test_a_jsonl_split_without_rows_is_named(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(png_bytes(0))
    r = row(0)
    r.pop("variant_images")
    r |= {"image": "a.png"}
    path = tmp_path / "bench.jsonl"
    path.write_text(json.dumps(r) + "\n")
    assert len(load_cases(DataSelection(data=str(path), splits=("type_a",)))) == 4
    with pytest.raises(DataError, match=r"no rows of split 'type_b'.*--mtmcs-split"):
        load_cases(DataSelection(data=str(path)))
