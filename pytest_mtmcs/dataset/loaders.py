"""Loaders: a parquet snapshot folder, a Hugging Face dataset through `datasets`, our JSONL.

Every loader yields `(BenchRow, ImageRef | None, source)` triples; images stay where they are
until a request needs them. Bad rows raise one `DataError` listing every problem found
(file, row id, field, what was expected), up to a cap, so nothing is lost silently.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pytest_mtmcs.chat import OPEN_DATASETS, ImageRef
from pytest_mtmcs.dataset.schema import REQUIRED_COLUMNS, SPLITS, BenchRow, Split
from pytest_mtmcs.errors import DataError, GuardrailUnavailable

RowTriple = tuple[BenchRow, ImageRef | None, str]
MAX_REPORTED = 20


class _Problems:
    """Collects data problems so one error reports them all."""

    def __init__(self) -> None:
        self.items: list[DataError] = []

    def add(self, err: DataError) -> None:
        self.items.append(err)

    def raise_if_any(self) -> None:
        if not self.items:
            return
        if len(self.items) == 1:
            raise self.items[0]
        shown = "\n  ".join(str(e) for e in self.items[:MAX_REPORTED])
        more = len(self.items) - MAX_REPORTED
        tail = f"\n  ... and {more} more" if more > 0 else ""
        raise DataError(f"{len(self.items)} problems in the benchmark data:\n  {shown}{tail}")


def validate_row(raw: dict[str, Any], *, source: str, index: int, problems: _Problems) -> BenchRow | None:
    """A release row as a `BenchRow`, or None after recording why it is invalid."""
    row_label: object = raw.get("id", f"#{index} (no id)")
    try:
        return BenchRow.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or None
            got = err.get("input")
            got_s = repr(got)[:60] if not isinstance(got, dict) else "an object"
            problems.add(DataError(f"{err['msg']} (got {got_s})", file=source, row=row_label,
                                   field=field))
        return None


# ---------------------------------------------------------------------------------- parquet
def parquet_files(folder: Path, split: str) -> list[Path]:
    """The parquet files of one split in a snapshot folder, in a stable order.

    Accepted layouts: `{split}.parquet`, `{split}-*.parquet`, `{split}/*.parquet`, and the same
    under `data/` (the hub's layout, e.g. `data/type_a-00000-of-00001.parquet`).
    """
    found: list[Path] = []
    for base in (folder, folder / "data"):
        found += sorted(base.glob(f"{split}.parquet"))
        found += sorted(base.glob(f"{split}-*.parquet"))
        found += sorted((base / split).glob("*.parquet"))
    return found


def load_parquet_dir(folder: Path, split: Split) -> Iterator[RowTriple]:
    """Rows of one split from a parquet snapshot folder; image columns are never read here."""
    import pyarrow.parquet as pq

    files = parquet_files(folder, split)
    if not files:
        raise DataError(f"no parquet files for split {split!r}: expected {split}.parquet, "
                        f"{split}-*.parquet or {split}/*.parquet (also under data/)",
                        file=str(folder))
    problems = _Problems()
    rows: list[RowTriple] = []
    for path in files:
        pf = pq.ParquetFile(path)
        names = pf.schema_arrow.names
        missing = [c for c in REQUIRED_COLUMNS if c not in names]
        if missing:
            raise DataError(f"missing column(s) {', '.join(missing)}; the split needs "
                            f"{', '.join(REQUIRED_COLUMNS)}", file=str(path))
        text_cols = [c for c in names if c not in ("image", "variant_images")]
        # ParquetFile.read, not pq.read_table: the latter imports pyarrow.dataset and pandas.
        table = pf.read(columns=text_cols)
        for i, raw in enumerate(table.to_pylist()):
            row = validate_row(raw, source=str(path), index=i, problems=problems)
            if row is not None:
                rows.append((row, ImageRef(parquet=(str(path), i, "image", None)), str(path)))
    problems.raise_if_any()
    yield from rows


# ---------------------------------------------------------------------------------- datasets
def load_hf_dataset(name: str, split: Split) -> Iterator[RowTriple]:
    """Rows of one split through `datasets.load_dataset(name)` (hub id or local dataset dir).

    Images are cast to undecoded `{bytes, path}` cells and copied out row by row, so a row's
    image lives in memory only while it is being sent (the Arrow cache is memory-mapped).
    """
    try:
        import datasets
    except ImportError as exc:
        raise GuardrailUnavailable(f"loading {name!r} from the Hugging Face hub", "hf",
                                   "datasets") from exc
    try:
        ds = datasets.load_dataset(name, split=split)
    except Exception as exc:  # datasets raises many kinds; all mean "cannot load"
        raise DataError(f"could not load split {split!r} through datasets: {exc}. If the machine "
                        "is offline, the dataset must already be in the Hugging Face cache "
                        "(set HF_DATASETS_OFFLINE=1), or pass a local parquet folder",
                        file=name) from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in ds.column_names]
    if missing:
        raise DataError(f"missing column(s) {', '.join(missing)}", file=f"{name}:{split}")
    ds = ds.cast_column("image", datasets.Image(decode=False))
    key = f"{name}::{split}"
    OPEN_DATASETS[key] = ds
    text = ds.remove_columns([c for c in ("image", "variant_images") if c in ds.column_names])
    problems = _Problems()
    rows: list[RowTriple] = []
    for i, raw in enumerate(text):
        row = validate_row(raw, source=key, index=i, problems=problems)
        if row is not None:
            rows.append((row, ImageRef(dataset=(key, i, "image", None)), key))
    problems.raise_if_any()
    yield from rows


# ---------------------------------------------------------------------------------- jsonl
def load_jsonl(path: Path, split: Split) -> Iterator[RowTriple]:
    """Rows of our JSONL format: the release's fields, plus `split` and `image` as a file path.

    `image` (and each `variant_images` entry) is a path relative to the JSONL file. A line may
    carry `caption`; otherwise captions come from the captions file.
    """
    problems = _Problems()
    rows: list[RowTriple] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.add(DataError(f"not valid JSON ({exc.msg} at column {exc.colno})", file=where))
                continue
            if not isinstance(raw, dict):
                problems.add(DataError("expected a JSON object per line", file=where))
                continue
            if raw.get("split", "type_a") not in SPLITS:
                problems.add(DataError(f"expected one of {', '.join(SPLITS)}, got {raw.get('split')!r}",
                                       file=where, row=raw.get("id"), field="split"))
                continue
            if raw.get("split", "type_a") != split:
                continue
            row = validate_row(raw, source=where, index=lineno, problems=problems)
            image = raw.get("image")
            if row is None:
                continue
            if not isinstance(image, str) or not image:
                problems.add(DataError("expected a path to the image file", file=where, row=row.id,
                                       field="image"))
                continue
            img_path = (path.parent / image).resolve()
            if not img_path.is_file():
                problems.add(DataError(f"image file {img_path} does not exist", file=where,
                                       row=row.id, field="image"))
                continue
            rows.append((row, ImageRef(path=str(img_path)), where))
    problems.raise_if_any()
    yield from rows


def jsonl_captions(path: Path) -> dict[str, str]:
    """Captions given inline in a JSONL dataset (`caption` field), keyed by row id."""
    out: dict[str, str] = {}
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                try:
                    raw = json.loads(line)
                except json.JSONDecodeError:
                    continue  # reported by load_jsonl
                if isinstance(raw, dict) and isinstance(raw.get("caption"), str):
                    out[str(raw.get("id"))] = raw["caption"]
    return out
