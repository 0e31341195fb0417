"""Builders of small datasets in the official MTMCS-Bench schema, written by the tests."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

IMAGE_STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
DIALOGUE_STRUCT = pa.struct([(k, pa.string()) for k in
                             ("r1", "r2", "r3", "safe_r1", "unsafe_r1", "safe_r3", "unsafe_r3")])
MCQ_STRUCT = pa.struct([("question", pa.string()), ("question_type", pa.string()),
                        ("options", pa.list_(pa.string())), ("ground_truth", pa.string())])
TF_STRUCT = pa.struct([("question", pa.string()), ("ground_truth", pa.bool_())])
SCHEMA = pa.schema([
    ("id", pa.int64()), ("image", IMAGE_STRUCT), ("variant_images", pa.list_(IMAGE_STRUCT)),
    ("unsafe_intent", pa.string()), ("multimodal_dialogue", DIALOGUE_STRUCT),
    ("unimodal_dialogue", DIALOGUE_STRUCT), ("multimodal_mcq", pa.list_(MCQ_STRUCT)),
    ("unimodal_mcq", pa.list_(MCQ_STRUCT)), ("multimodal_tf", pa.list_(TF_STRUCT)),
    ("unimodal_tf", pa.list_(TF_STRUCT)),
])


def _scene(seed: int, size: int) -> Image.Image:
    """A small picture, different per seed: a plain colour with a contrasting square in its
    top-left corner (so that a mirror image or a crop of it is a different picture)."""
    colour = ((seed * 40) % 256, (seed * 90) % 256, (seed * 20) % 256)
    img = Image.new("RGB", (size, size), colour)
    img.paste(tuple(255 - c for c in colour), (0, 0, max(1, size // 4), max(1, size // 4)))
    return img


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def png_bytes(seed: int = 0, size: int = 16) -> bytes:
    """A small PNG, different per seed."""
    return _png(_scene(seed, size))


VARIANT_EDITS = ("mirror", "crop", "colour shift")
"""The edits `variant_png_bytes` makes, in order (the benchmark's variants are edited photos)."""


def variant_png_bytes(seed: int, index: int, size: int = 16) -> bytes:
    """Variant `index` (0-2) of `png_bytes(seed)`: mirrored, cropped off-centre and scaled back
    up, or with its colours shifted; each a different picture of the same scene."""
    from PIL import ImageOps

    base = _scene(seed, size)
    if index == 0:
        return _png(ImageOps.mirror(base))
    if index == 1:
        cut = max(1, size // 8)
        return _png(base.crop((cut, cut, size, size)).resize((size, size), Image.Resampling.NEAREST))
    if index == 2:
        return _png(base.point(lambda v: (v + 96) % 256))
    raise ValueError(f"variant index {index}: expected 0, 1 or 2 ({', '.join(VARIANT_EDITS)})")


def dialogue(tag: str) -> dict[str, str]:
    """A dialogue family whose every turn names its family, row and field ("MM3 r2 turn"), so
    tests can see what was sent and no two rows share a request."""
    return {k: f"{tag} {k} turn" for k in
            ("r1", "r2", "r3", "safe_r1", "unsafe_r1", "safe_r3", "unsafe_r3")}


def row(row_id: int, *, image: bytes | None = None, **overrides: Any) -> dict[str, Any]:
    """One release row: two MCQs (one safe, one unsafe) and two TF items per modality."""
    img = image if image is not None else png_bytes(row_id)
    r: dict[str, Any] = {
        "id": row_id,
        "image": {"bytes": img, "path": f"{row_id}.png"},
        "variant_images": [{"bytes": variant_png_bytes(row_id, i), "path": f"{row_id}_v{i}.png"}
                           for i in range(3)],
        "unsafe_intent": f"abstract harmful goal {row_id}",
        "multimodal_dialogue": dialogue(f"MM{row_id}"),
        "unimodal_dialogue": dialogue(f"UM{row_id}"),
    }
    for mod in ("multimodal", "unimodal"):
        r[f"{mod}_mcq"] = [
            {"question": f"{mod} safe question", "question_type": "safe_intent",
             "options": ["benign goal", "harmful goal", "no goal", "other"], "ground_truth": "A"},
            {"question": f"{mod} unsafe question", "question_type": "unsafe_intent",
             "options": ["benign goal", "harmful goal", "no goal", "other"], "ground_truth": "B"},
        ]
        r[f"{mod}_tf"] = [{"question": "The user means harm.", "ground_truth": True},
                          {"question": "The user is only curious.", "ground_truth": False}]
    r.update(overrides)
    return r


def write_dataset(folder: Path, rows: dict[str, list[dict[str, Any]]], *,
                  captions: dict[str, str] | None = None, schema: pa.Schema | None = None) -> Path:
    """Write `data/{split}-00000-of-00001.parquet` per split (the hub's layout) and captions."""
    (folder / "data").mkdir(parents=True, exist_ok=True)
    for split, split_rows in rows.items():
        table = pa.Table.from_pylist(split_rows, schema=schema or SCHEMA)
        pq.write_table(table, folder / "data" / f"{split}-00000-of-00001.parquet")
    if captions is None:
        ids = {r["id"] for rs in rows.values() for r in rs}
        captions = {str(i): f"A plain test picture number {i}." for i in sorted(ids)}
    (folder / "captions.json").write_text(json.dumps(captions), encoding="utf-8")
    return folder


def small_dataset(folder: Path, n: int = 2) -> Path:
    """n rows per split, ids 0..n-1."""
    return write_dataset(folder, {s: [row(i) for i in range(n)] for s in ("type_a", "type_b")})
