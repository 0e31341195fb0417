"""Loaders: a parquet snapshot folder, a Hugging Face dataset through `datasets`, our JSONL.

Every loader yields `LoadedRow`s (row, image reference, source); images stay where they are
until a request needs them (`check_images` reads each selected row's image once, to refuse
what would not decode, before anything is sent). Bad rows raise one `DataError` listing every
problem found (file, row id, field, what was expected), up to a cap, so nothing is lost silently.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import ValidationError

from pytest_mtmcs.chat import OPEN_DATASETS, ImageRef
from pytest_mtmcs.dataset.images import ImageProblem, confine, read_image_file, verify_image
from pytest_mtmcs.dataset.schema import REQUIRED_COLUMNS, SPLITS, BenchRow, Split
from pytest_mtmcs.errors import DataError, GuardrailUnavailable


class LoadedRow(NamedTuple):
    """One validated row, where its image lives, and where the row came from."""

    row: BenchRow
    image: ImageRef | None
    source: str
    variants: Any = None
    """JSONL only: the line's raw `variant_images` value (checked by `variants.check_variants`
    when a run asks for variant images); parquet and `datasets` rows read their column then."""

MAX_REPORTED = 20
MAX_LINE_BYTES = 8 * 1024 * 1024
"""A JSONL line longer than this is refused unread: a row holds text and an image path only."""


class Problems:
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


def row_label(raw: dict[str, Any], index: int) -> object:
    """How an error names a row: its id when that is an integer, else its position and the
    id's repr (quoted and escaped: an id from the file never reaches the terminal raw)."""
    value = raw.get("id")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if "id" not in raw:
        return f"#{index} (no id)"
    return f"#{index} (id {repr(value)[:40]})"


def validate_row(raw: dict[str, Any], *, source: str, index: int, problems: Problems) -> BenchRow | None:
    """A release row as a `BenchRow`, or None after recording why it is invalid."""
    label = row_label(raw, index)
    try:
        return BenchRow.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or None
            got = err.get("input")
            got_s = repr(got)[:60] if not isinstance(got, dict) else "an object"
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "missing":
                text = "missing: every row needs this field"
            else:
                text = f"{msg} (got {got_s})"
            problems.add(DataError(text, file=source, row=label, field=field))
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


def load_parquet_dir(folder: Path, split: Split) -> Iterator[LoadedRow]:
    """Rows of one split from a parquet snapshot folder; image columns are never read here."""
    import pyarrow.parquet as pq

    files = parquet_files(folder, split)
    if not files:
        raise DataError(f"no parquet files for split {split!r}: expected {split}.parquet, "
                        f"{split}-*.parquet or {split}/*.parquet (also under data/)",
                        file=str(folder))
    problems = Problems()
    rows: list[LoadedRow] = []
    for path in files:
        try:
            pf = pq.ParquetFile(path)
            names = pf.schema_arrow.names
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise DataError(f"not a readable parquet file ({exc}); a zero-byte or truncated "
                            "download? Fetch the file again", file=str(path)) from None
        missing = [c for c in REQUIRED_COLUMNS if c not in names]
        if missing:
            raise DataError(f"missing column(s) {', '.join(missing)}; the split needs "
                            f"{', '.join(REQUIRED_COLUMNS)}", file=str(path))
        text_cols = [c for c in names if c not in ("image", "variant_images")]
        try:
            # ParquetFile.read, not pq.read_table: the latter imports pyarrow.dataset and pandas.
            table = pf.read(columns=text_cols)
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read the rows ({exc}); the file is damaged or truncated, "
                            "fetch it again", file=str(path)) from None
        for i, raw in enumerate(table.to_pylist()):
            row = validate_row(raw, source=str(path), index=i, problems=problems)
            if row is not None:
                rows.append(LoadedRow(row, ImageRef(parquet=(str(path), i, "image", None)), str(path)))
    problems.raise_if_any()
    if not rows:
        raise DataError(f"split {split!r} has no rows: its parquet files hold 0 rows "
                        f"({', '.join(p.name for p in files)})", file=str(folder))
    yield from rows


# ---------------------------------------------------------------------------------- datasets
def load_hf_dataset(name: str, split: Split) -> Iterator[LoadedRow]:
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
    if "variant_images" in ds.column_names:
        ds = ds.cast_column("variant_images", datasets.List(datasets.Image(decode=False)))
    key = f"{name}::{split}"
    OPEN_DATASETS[key] = ds
    text = ds.remove_columns([c for c in ("image", "variant_images") if c in ds.column_names])
    problems = Problems()
    rows: list[LoadedRow] = []
    for i, raw in enumerate(text):
        row = validate_row(raw, source=key, index=i, problems=problems)
        if row is not None:
            rows.append(LoadedRow(row, ImageRef(dataset=(key, i, "image", None)), key))
    problems.raise_if_any()
    yield from rows


# ---------------------------------------------------------------------------------- jsonl
def _jsonl_lines(path: Path) -> Iterator[tuple[int, str | DataError]]:
    """(line number, text) of each line, or a DataError for a line that is not UTF-8 text or
    is longer than `MAX_LINE_BYTES` (such a line is skipped without being held in memory).
    A UTF-8 byte-order mark at the start of the file is dropped."""
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise DataError(f"cannot read the JSONL file ({exc.strerror or exc})", file=str(path)) from None
    with fh:
        lineno = 0
        while raw := fh.readline(MAX_LINE_BYTES + 1):
            lineno += 1
            where = f"{path}:{lineno}"
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                while (rest := fh.readline(1024 * 1024)) and not rest.endswith(b"\n"):
                    pass
                yield lineno, DataError(f"line longer than {MAX_LINE_BYTES // 2**20} MiB; a row "
                                        "holds text and an image path only", file=where)
                continue
            if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield lineno, DataError(
                    f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
                    "save the file as UTF-8", file=where)


def load_jsonl(path: Path, split: Split) -> Iterator[LoadedRow]:
    """Rows of our JSONL format: the release's fields, plus `split` and `image` as a file path.

    `image` is a path relative to the JSONL file's folder, and must stay inside it (through
    symbolic links too). A line may carry `caption`; otherwise captions come from the captions
    file.
    """
    problems = Problems()
    rows: list[LoadedRow] = []
    for lineno, line in _jsonl_lines(path):
        if isinstance(line, DataError):
            problems.add(line)
            continue
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.add(DataError(f"not valid JSON ({exc.msg} at column {exc.colno})", file=where))
            continue
        except RecursionError:
            problems.add(DataError("not valid JSON (nested too deeply)", file=where))
            continue
        if not isinstance(raw, dict):
            problems.add(DataError("expected a JSON object per line", file=where))
            continue
        if raw.get("split", "type_a") not in SPLITS:
            problems.add(DataError(f"expected one of {', '.join(SPLITS)}, got {raw.get('split')!r:.40}",
                                   file=where, row=row_label(raw, lineno), field="split"))
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
        try:
            img_path = confine(image, path.parent)
        except ImageProblem as exc:
            problems.add(DataError(str(exc), file=where, row=row.id, field="image"))
            continue
        rows.append(LoadedRow(row, ImageRef(path=str(img_path)), where, raw.get("variant_images")))
    problems.raise_if_any()
    if not rows:
        raise DataError(f"no rows of split {split!r} (a line's `split` field, {SPLITS[0]} when "
                        "absent); pass --mtmcs-split to run the splits the file has",
                        file=str(path))
    yield from rows


def jsonl_captions(path: Path) -> dict[str, str]:
    """Captions given inline in a JSONL dataset (`caption` field), keyed by row id."""
    out: dict[str, str] = {}
    for _, line in _jsonl_lines(path):
        if isinstance(line, str) and line.strip():
            try:
                raw = json.loads(line)
            except (json.JSONDecodeError, RecursionError):
                continue  # reported by load_jsonl
            if isinstance(raw, dict) and isinstance(raw.get("caption"), str):
                out[str(raw.get("id"))] = raw["caption"]
    return out


# ---------------------------------------------------------------------------------- images
def check_images(triples: list[LoadedRow], roots: tuple[Path, ...]) -> list[LoadedRow]:
    """The rows with images that decode, each read once; one DataError (file, row id, field
    `image`) for every image that does not. A parquet or `datasets` cell that holds a file path
    instead of bytes must name a file inside one of `roots`; its reference becomes that file."""
    problems = Problems()
    wanted = set()
    for r in triples:
        if r.image is not None and r.image.parquet is not None:
            wanted.add(r.image.parquet)
    cells = _parquet_cells(wanted)
    out: list[LoadedRow] = []
    for r in triples:
        ref = r.image
        if ref is not None:
            try:
                ref = _checked(ref, cells, roots)
            except ImageProblem as exc:
                problems.add(DataError(str(exc), file=r.source, row=r.row.id, field="image"))
                continue
        out.append(r._replace(image=ref))
    problems.raise_if_any()
    return out


def _checked(ref: ImageRef, cells: dict[tuple[str, int], dict[str, Any] | ImageProblem],
             roots: tuple[Path, ...]) -> ImageRef:
    if ref.path is not None:
        verify_image(read_image_file(Path(ref.path)))
        return ref
    found: object
    if ref.parquet is not None:
        found = cells[(ref.parquet[0], ref.parquet[1])]
        base = Path(ref.parquet[0]).parent
    elif ref.dataset is not None:
        key, index, column, _ = ref.dataset
        found = OPEN_DATASETS[key][index][column]
        base = roots[0] if roots else Path()
    else:
        return ref
    if isinstance(found, ImageProblem):
        raise found
    return checked_cell(found, ref, base, roots)


def checked_cell(cell: object, ref: ImageRef, base: Path, roots: tuple[Path, ...]) -> ImageRef:
    """The reference to send for one parquet or `datasets` image cell (`ref` names the cell),
    checked: its bytes decode (`ref` itself), or the file it names lies inside one of `roots`
    and decodes (a reference to that file: the file checked here is the file sent). Raises
    `ImageProblem` for an empty cell and for one holding neither bytes nor a path."""
    if not isinstance(cell, dict):
        raise ImageProblem("the image cell is empty")
    if cell.get("bytes"):
        verify_image(bytes(cell["bytes"]))
        return ref
    text = cell.get("path")
    if not isinstance(text, str) or not text:
        raise ImageProblem("the image cell holds neither bytes nor a file path")
    path = confine_any(text, base, roots)
    verify_image(read_image_file(path))
    return ImageRef(path=str(path))


def confine_any(text: str, base: Path, roots: tuple[Path, ...]) -> Path:
    """`text` resolved against `base`, inside one of `roots` (the first refusal otherwise)."""
    first: ImageProblem | None = None
    for root in roots or (base,):
        try:
            return confine(text, base, root)
        except ImageProblem as exc:
            first = first or exc
    assert first is not None
    raise first


def _parquet_cells(refs: set[tuple[str, int, str, int | None]]
                   ) -> dict[tuple[str, int], dict[str, Any] | ImageProblem]:
    """The image cells of the given (file, row) references (`parquet_cells`); a cell that is
    no image struct is an `ImageProblem`."""
    by_file: dict[str, set[int]] = {}
    for file, index, _, _ in refs:
        by_file.setdefault(file, set()).add(index)
    return {key: cell if isinstance(cell, (dict, ImageProblem)) else ImageProblem(
                "the image cell is empty")
            for key, cell in parquet_cells(by_file, "image").items()}


def parquet_cells(by_file: dict[str, set[int]], column: str) -> dict[tuple[str, int], object]:
    """(file, row index) -> the `column` cell of those rows, as Python values, reading only
    the row groups that hold them, one at a time; a file that cannot be read gives an
    `ImageProblem` for each of its rows, a file without the column no entry."""
    import pyarrow.parquet as pq

    out: dict[tuple[str, int], object] = {}
    for file, wanted in by_file.items():
        try:
            pf = pq.ParquetFile(file)
            if column not in pf.schema_arrow.names:
                continue
            start = 0
            for group in range(pf.metadata.num_row_groups):
                n = pf.metadata.row_group(group).num_rows
                here = sorted(i for i in wanted if start <= i < start + n)
                if here:
                    cells = pf.read_row_group(group, columns=[column]).column(0)
                    for i in here:
                        out[(file, i)] = cells[i - start].as_py()
                start += n
        except (OSError, ValueError) as exc:
            problem = ImageProblem(f"cannot read the {column} column ({exc})")
            for i in wanted:
                out.setdefault((file, i), problem)
    return out
