"""Benchmark data: the official schema, loaders, and dialogue assembly.

`load_cases(DataSelection(...))` is the one entry point the plugin uses.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from pytest_mtmcs.chat import ImageRef
from pytest_mtmcs.dataset.cases import Case, Question, assemble, case_id
from pytest_mtmcs.dataset.loaders import (
    LoadedRow,
    check_images,
    jsonl_captions,
    load_hf_dataset,
    load_jsonl,
    load_parquet_dir,
)
from pytest_mtmcs.dataset.schema import MODALITIES, SPLITS, BenchRow, Modality, Split
from pytest_mtmcs.dataset.variants import check_variants
from pytest_mtmcs.errors import DataError

__all__ = ["BenchRow", "Case", "DataSelection", "Question", "case_id", "load_captions", "load_cases",
           "read_captions"]


class DataSelection(BaseModel):
    """Which data to load and which part of it to run."""

    model_config = ConfigDict(frozen=True)
    data: str
    """A parquet snapshot folder, a JSONL file, or a Hugging Face dataset id.
    Prefix with `parquet:`, `jsonl:` or `datasets:` to force a loader."""
    splits: tuple[Split, ...] = SPLITS
    modalities: tuple[Modality, ...] = MODALITIES
    limit: int | None = None
    """Keep the first N rows of each split (pairs stay together)."""
    sample: int | None = None
    """Keep a random N rows of each split, drawn with `seed` (pairs stay together)."""
    seed: int = 0
    captions: str | None = None
    """Captions JSON (row id -> caption); default: `captions.json` beside the data."""
    variants: int | None = 0
    """Variant images per multimodal dialogue: 0 none, N the first N, None all of them."""
    fallback: bool = False
    """Fill an empty safe_/unsafe_ turn from r1/r3 as the official code does."""
    rootdir: str = "."
    """Relative paths are resolved against this directory."""


def _resolve(sel: DataSelection) -> tuple[str, Path | str]:
    if "\x00" in sel.data:
        raise DataError("the data path contains a NUL byte", file=repr(sel.data))
    kind, _, rest = sel.data.partition(":")
    if kind in ("parquet", "jsonl", "datasets") and rest:
        value = rest
    else:
        kind, value = "", sel.data
    path = Path(value) if Path(value).is_absolute() else Path(sel.rootdir) / value
    if kind == "datasets":
        return kind, str(path) if path.exists() else value
    if kind in ("parquet", "jsonl"):
        if not path.exists():
            raise DataError("does not exist", file=str(path))
        if kind == "jsonl" and not path.is_file():
            raise DataError("is not a file; `jsonl:` names one .jsonl file", file=str(path))
        if kind == "parquet" and not path.is_dir():
            raise DataError("is not a folder; `parquet:` names a snapshot folder", file=str(path))
        return kind, path
    if path.is_dir():
        return "parquet", path
    if path.is_file() and path.suffix in (".jsonl", ".ndjson"):
        return "jsonl", path
    if path.exists():
        raise DataError("expected a folder of parquet files, a .jsonl file, or a Hugging Face "
                        "dataset id such as ND-25/MCS-bench", file=str(path))
    if value.count("/") == 1 and not value.startswith((".", "/")):
        return "datasets", value
    raise DataError("does not exist; expected a folder of parquet files, a .jsonl file, or a "
                    "Hugging Face dataset id such as ND-25/MCS-bench", file=str(path))


def _rows(kind: str, where: Path | str, split: Split) -> Iterator[LoadedRow]:
    if kind == "parquet":
        return load_parquet_dir(Path(where), split)
    if kind == "jsonl":
        return load_jsonl(Path(where), split)
    return load_hf_dataset(str(where), split)


def load_captions(sel: DataSelection, kind: str, where: Path | str) -> dict[str, str]:
    """Row id (as a string) -> caption. An explicitly named captions file must exist."""
    if sel.captions:
        if "\x00" in sel.captions:
            raise DataError("the captions path contains a NUL byte", file=repr(sel.captions))
        path = Path(sel.captions)
        path = path if path.is_absolute() else Path(sel.rootdir) / path
        if path.is_dir():
            raise DataError("is a directory; expected a captions JSON file", file=str(path))
        if path.exists() and not path.is_file():
            raise DataError("not a regular file (a device or a pipe?); expected a captions "
                            "JSON file", file=str(path))
        if not path.is_file():
            raise DataError("captions file does not exist", file=str(path))
    else:
        base = Path(where) if kind != "jsonl" else Path(where).parent
        path = base / "captions.json"  # a local `datasets:` folder may carry one too
        if not path.is_file():
            return jsonl_captions(Path(where)) if kind == "jsonl" else {}
    return read_captions(path)


def read_captions(path: Path) -> dict[str, str]:
    """A captions JSON file: an object mapping row ids to caption strings. Anything else (not
    UTF-8, not JSON, a list, a caption that is not a string) is a `DataError` naming the file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read the captions file ({exc.strerror or exc})",
                        file=str(path)) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                        "expected a JSON object of captions saved as UTF-8", file=str(path)) from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"not valid JSON ({exc.msg}, line {exc.lineno})", file=str(path)) from None
    except RecursionError:
        raise DataError("not valid JSON (nested too deeply)", file=str(path)) from None
    if not isinstance(raw, dict):
        raise DataError(f"expected a JSON object mapping row ids to caption strings, got a JSON "
                        f"{type(raw).__name__}", file=str(path))
    bad = next((k for k, v in raw.items() if not isinstance(v, str)), None)
    if bad is not None:
        raise DataError(f"expected a caption string for row id {bad!r:.40}, got a JSON "
                        f"{type(raw[bad]).__name__}", file=str(path))
    return {str(k): v for k, v in raw.items()}


def _image_roots(kind: str, where: Path | str) -> tuple[Path, ...]:
    """Where image files named by the data may live: the dataset's own folder (for a hub
    dataset, the Hugging Face caches it was downloaded to)."""
    if kind == "jsonl":
        return (Path(where).parent,)
    if kind == "parquet" or Path(where).is_dir():
        return (Path(where),)
    try:
        from datasets import config as ds_config
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - load_hf_dataset has failed already
        return ()
    return (Path(ds_config.HF_DATASETS_CACHE), Path(constants.HF_HUB_CACHE))


def load_cases(sel: DataSelection) -> list[Case]:
    """Every selected dialogue, in a stable order: split, row, modality, safe then unsafe."""
    kind, where = _resolve(sel)
    captions = load_captions(sel, kind, where)
    cases: list[Case] = []
    for split in sel.splits:
        triples = list(_rows(kind, where, split))
        seen: dict[int, str] = {}
        for row, _img, src, _ in triples:
            if row.id in seen:
                raise DataError(f"duplicate row id (also in {seen[row.id]})", file=src, row=row.id,
                                field="id")
            seen[row.id] = src
        if sel.sample is not None and sel.sample < len(triples):
            picked = sorted(random.Random(sel.seed).sample(range(len(triples)), sel.sample))
            triples = [triples[i] for i in picked]
        if sel.limit is not None:
            triples = triples[: sel.limit]
        variants: dict[int, tuple[ImageRef, ...]] = {}
        if "multimodal" in sel.modalities:
            roots = _image_roots(kind, where)
            triples = check_images(triples, roots)
            if sel.variants != 0:
                variants = check_variants(triples, roots, sel.variants)
        for row, image, src, _ in triples:
            cases += assemble(row, split, image=image, caption=captions.get(str(row.id)), source=src,
                              fallback=sel.fallback, modalities=sel.modalities,
                              variants=variants.get(row.id, ()))
    if not cases:
        raise DataError(f"no rows in split(s) {', '.join(sel.splits)}: nothing to run",
                        file=str(where))
    return cases
