"""The rows' variant images (`variant_images`), read and checked only when a run asks for them
(`--mtmcs-variants`).

Every release row carries three edited versions of its photograph. In a parquet snapshot or a
`datasets` dataset they are a list column of image cells; in our JSONL they are a list of file
paths relative to the JSONL file's folder (confined to it, like `image`). A row without the
column, or with an empty list, simply has no variants. A variant that is named but cannot be
used (missing, outside the dataset's folder, not an image, an empty cell) is a data error
naming the file, the row and the variant (`variant_images[1]`), before anything is sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_mtmcs.chat import OPEN_DATASETS, ImageRef
from pytest_mtmcs.dataset.images import ImageProblem, confine, read_image_file, verify_image
from pytest_mtmcs.dataset.loaders import LoadedRow, Problems, checked_cell, parquet_cells
from pytest_mtmcs.errors import DataError

COLUMN = "variant_images"


def _wanted(cells: Sequence[Any], count: int | None) -> list[tuple[int, Any]]:
    """(index, cell) of the variants a run uses: the first `count`, or all (None)."""
    return list(enumerate(cells))[: count if count is not None else len(cells)]


def _parquet_lists(rows: list[LoadedRow]) -> dict[tuple[str, int], list[Any] | ImageProblem]:
    """The variant lists of the given parquet rows (`loaders.parquet_cells`); a cell that is
    no list (null) is an empty list, a file without the column gives no entry."""
    by_file: dict[str, set[int]] = {}
    for r in rows:
        if r.image is not None and r.image.parquet is not None:
            by_file.setdefault(r.image.parquet[0], set()).add(r.image.parquet[1])
    return {key: cell if isinstance(cell, (list, ImageProblem)) else []
            for key, cell in parquet_cells(by_file, COLUMN).items()}


def _row_variants(r: LoadedRow, count: int | None, roots: tuple[Path, ...],
                  lists: dict[tuple[str, int], list[Any] | ImageProblem],
                  problems: Problems) -> tuple[ImageRef, ...]:
    """The checked variant references of one row (problems recorded, never raised)."""
    ref = r.image
    out: list[ImageRef] = []

    def bad(index: int | None, why: str) -> None:
        field = COLUMN if index is None else f"{COLUMN}[{index}]"
        which = "" if index is None else f"variant image {index + 1}: "
        problems.add(DataError(which + why, file=r.source, row=r.row.id, field=field))

    if ref is not None and ref.parquet is not None:
        file, i, _, _ = ref.parquet
        found = lists.get((file, i), [])
        if isinstance(found, ImageProblem):
            bad(None, str(found))
            return ()
        for j, cell in _wanted(found, count):
            try:
                out.append(checked_cell(cell, ImageRef(parquet=(file, i, COLUMN, j)),
                                     Path(file).parent, roots))
            except ImageProblem as exc:
                bad(j, str(exc))
    elif ref is not None and ref.dataset is not None:
        key, i, _, _ = ref.dataset
        ds = OPEN_DATASETS[key]
        cells = ds[i][COLUMN] if COLUMN in ds.column_names else None
        for j, cell in _wanted(cells or [], count):
            try:
                out.append(checked_cell(cell, ImageRef(dataset=(key, i, COLUMN, j)),
                                     roots[0] if roots else Path(), roots))
            except ImageProblem as exc:
                bad(j, str(exc))
    elif ref is not None and ref.path is not None:
        raw = r.variants
        if raw is None:
            return ()
        if not isinstance(raw, list):
            bad(None, f"expected a list of paths to image files, got a JSON {type(raw).__name__}")
            return ()
        base = Path(r.source.rsplit(":", 1)[0]).parent
        for j, text in _wanted(raw, count):
            if not isinstance(text, str) or not text:
                bad(j, "expected a path to an image file")
                continue
            try:
                path = confine(text, base)
                verify_image(read_image_file(path))
            except ImageProblem as exc:
                bad(j, str(exc))
                continue
            out.append(ImageRef(path=str(path)))
    return tuple(out)


def check_variants(rows: list[LoadedRow], roots: tuple[Path, ...],
                   count: int | None) -> dict[int, tuple[ImageRef, ...]]:
    """Row id -> the row's first `count` (None: all) variant images, each read and checked
    once; one `DataError` listing every variant that cannot be used (file, row id, field
    `variant_images[i]`)."""
    problems = Problems()
    lists = _parquet_lists(rows)
    out = {r.row.id: _row_variants(r, count, roots, lists, problems) for r in rows}
    problems.raise_if_any()
    return out


__all__ = ["COLUMN", "check_variants"]
