"""Hostile input from files and options, as an attacker or a tired user writes it: builders of
the cases of `tests/hostile/test_files_and_options.py` (a dataset, a captions file, a baseline,
an output path, an option value), and helpers any hostile-input test may share: a store from an
earlier run, a digest of everything beside it, and the no-traceback check.

A builder takes a fresh folder and returns a `Case`: the extra `pytest --mtmcs` arguments (or
the whole `mtmcs` argv) and the fragments the error message must contain.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
from _data import SCHEMA, png_bytes, row, small_dataset, write_dataset


@dataclass
class Case:
    """What a builder returns: the extra command-line arguments (or the whole CLI argv), the
    fragments the error message must contain, extra environment variables and an ini file."""

    args: list[str]
    expect: list[str]
    env: dict[str, str] | None = None
    ini: str | None = None


Builder = Callable[[Path], Case]

GARBAGE_PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"garbage!" * 40


@dataclass
class Case:
    """What a builder returns: the extra command-line arguments (or the whole CLI argv), the
    fragments the error message must contain, and extra environment variables."""

    args: list[str]
    expect: list[str]
    env: dict[str, str] | None = None
    ini: str | None = None


Builder = Callable[[Path], Case]


# ------------------------------------------------------------------------------ data builders
def jsonl_row(row_id: int, split: str = "type_a", image: str = "img/0.png", **over: Any) -> dict[str, Any]:
    r = row(row_id)
    r.pop("variant_images")
    r |= {"split": split, "image": image}
    r.update(over)
    return r


def jsonl_dataset(folder: Path, rows: list[dict[str, Any]] | None = None, *, raw: bytes | None = None,
           image: bytes | None = None) -> Path:
    """A JSONL dataset in `folder` with its image `img/0.png`; by default one good row per split."""
    (folder / "img").mkdir(parents=True, exist_ok=True)
    (folder / "img" / "0.png").write_bytes(image if image is not None else png_bytes(0))
    path = folder / "bench.jsonl"
    if raw is None:
        rows = rows if rows is not None else [jsonl_row(0), jsonl_row(0, "type_b")]
        raw = "".join(json.dumps(r) + "\n" for r in rows).encode()
    path.write_bytes(raw)
    return path


def data_args(path: Path, *more: str) -> list[str]:
    return [f"--mtmcs-data={path}", *more]


def good_dataset(tmp: Path) -> Path:
    return small_dataset(tmp / "ds", 1)


def image_outside(tmp: Path) -> Case:
    (tmp / "outside").mkdir()
    (tmp / "outside" / "secret.png").write_bytes(png_bytes(9))
    p = jsonl_dataset(tmp / "ds", [jsonl_row(0, image="../outside/secret.png")])
    return Case(data_args(p, "--mtmcs-split=type_a"), ["bench.jsonl:1", "row id 0", "field 'image'", "outside the dataset's folder"])


def image_absolute(tmp: Path) -> Case:
    (tmp / "secret.png").write_bytes(png_bytes(9))
    p = jsonl_dataset(tmp / "ds", [jsonl_row(0, image=str(tmp / "secret.png"))])
    return Case(data_args(p, "--mtmcs-split=type_a"), ["bench.jsonl:1", "row id 0", "field 'image'", "outside the dataset's folder"])


def image_symlink_escape(tmp: Path) -> Case:
    (tmp / "secret.png").write_bytes(png_bytes(9))
    p = jsonl_dataset(tmp / "ds", [jsonl_row(0, image="img/link.png")])
    (tmp / "ds" / "img" / "link.png").symlink_to(tmp / "secret.png")
    return Case(data_args(p, "--mtmcs-split=type_a"), ["bench.jsonl:1", "row id 0", "field 'image'", "outside the dataset's folder"])


def image_directory(tmp: Path) -> Case:
    p = jsonl_dataset(tmp / "ds", [jsonl_row(0, image="img")])
    return Case(data_args(p, "--mtmcs-split=type_a"), ["bench.jsonl:1", "row id 0", "field 'image'", "is a directory"])


def image_nul(tmp: Path) -> Case:
    p = jsonl_dataset(tmp / "ds", [jsonl_row(0, image="img/0.png\x00.txt")])
    return Case(data_args(p, "--mtmcs-split=type_a"), ["bench.jsonl:1", "row id 0", "field 'image'", "NUL byte"])


def image_missing(tmp: Path) -> Case:
    p = jsonl_dataset(tmp / "ds", [jsonl_row(0, image="img/nope.png")])
    return Case(data_args(p, "--mtmcs-split=type_a"), ["bench.jsonl:1", "row id 0", "field 'image'", "does not exist"])


def image_png_garbage_jsonl(tmp: Path) -> Case:
    p = jsonl_dataset(tmp / "ds", [jsonl_row(0)], image=GARBAGE_PNG)
    return Case(data_args(p, "--mtmcs-split=type_a"), ["bench.jsonl:1", "row id 0", "field 'image'", "starts like a PNG file but is not one"])


def image_png_truncated(tmp: Path) -> Case:
    whole = png_bytes(0, size=64)
    p = jsonl_dataset(tmp / "ds", [jsonl_row(0)], image=whole[: len(whole) // 2])
    return Case(data_args(p, "--mtmcs-split=type_a"), ["bench.jsonl:1", "row id 0", "field 'image'", "does not decode"])


def jsonl_latin1(tmp: Path) -> Case:
    good = json.dumps(jsonl_row(0)) + "\n"
    bad = json.dumps(jsonl_row(1)).replace("abstract", "caf\u00e9") + "\n"
    p = jsonl_dataset(tmp / "ds", raw=good.encode() + bad.encode("latin-1"))
    return Case(data_args(p, "--mtmcs-split=type_a"), ["bench.jsonl:2", "not UTF-8", "0xe9"])


def jsonl_utf16(tmp: Path) -> Case:
    text = json.dumps(jsonl_row(0)) + "\n"
    p = jsonl_dataset(tmp / "ds", raw=text.encode("utf-16"))
    return Case(data_args(p, "--mtmcs-split=type_a"), ["bench.jsonl:1", "not UTF-8"])


def jsonl_huge_line(tmp: Path) -> Case:
    huge = jsonl_row(1, unsafe_intent="x" * (9 * 1024 * 1024))
    p = jsonl_dataset(tmp / "ds", [jsonl_row(0), huge])
    return Case(data_args(p, "--mtmcs-split=type_a"), ["bench.jsonl:2", "line longer than 8 MiB"])


def jsonl_deep_nesting(tmp: Path) -> Case:
    p = jsonl_dataset(tmp / "ds", raw=b"[" * 200_000 + b"]" * 200_000 + b"\n")
    return Case(data_args(p, "--mtmcs-split=type_a"), ["bench.jsonl:1", "not valid JSON"])


def jsonl_not_json(tmp: Path) -> Case:
    p = jsonl_dataset(tmp / "ds", raw=json.dumps(jsonl_row(0)).encode() + b"\n{'id': 1,\n")
    return Case(data_args(p, "--mtmcs-split=type_a"), ["bench.jsonl:2", "not valid JSON"])


def jsonl_list_line(tmp: Path) -> Case:
    p = jsonl_dataset(tmp / "ds", raw=b"[1, 2, 3]\n")
    return Case(data_args(p, "--mtmcs-split=type_a"), ["bench.jsonl:1", "expected a JSON object per line"])


def jsonl_empty(tmp: Path) -> Case:
    p = jsonl_dataset(tmp / "ds", raw=b"\n\n")
    return Case(data_args(p, "--mtmcs-split=type_a"), ["bench.jsonl", "no rows of split 'type_a'"])


def jsonl_bad_split(tmp: Path) -> Case:
    p = jsonl_dataset(tmp / "ds", [jsonl_row(0, split="type c")])
    return Case(data_args(p), ["bench.jsonl:1", "row id 0", "field 'split'", "'type c'"])


def tf(truth: object) -> Builder:
    def build(tmp: Path) -> Case:
        r = jsonl_row(3)
        r["multimodal_tf"][0]["ground_truth"] = truth
        p = jsonl_dataset(tmp / "ds", [r])
        return Case(data_args(p, "--mtmcs-split=type_a"),
                    ["bench.jsonl:1", "row id 3", "field 'multimodal_tf.0.ground_truth'", "expected a boolean"])
    return build


def row_id(value: object, label: str) -> Builder:
    def build(tmp: Path) -> Case:
        p = jsonl_dataset(tmp / "ds", [jsonl_row(0, id=value)])
        return Case(data_args(p, "--mtmcs-split=type_a"),
                    ["bench.jsonl:1", f"row id {label}", "field 'id'", "expected a non-negative integer"])
    return build


def duplicate_ids(tmp: Path) -> Case:
    p = jsonl_dataset(tmp / "ds", [jsonl_row(4), jsonl_row(4)])
    return Case(data_args(p, "--mtmcs-split=type_a"), ["bench.jsonl:2", "row id 4", "field 'id'", "duplicate row id"])


def missing_field(tmp: Path) -> Case:
    r = jsonl_row(2)
    r.pop("unsafe_intent")
    p = jsonl_dataset(tmp / "ds", [r])
    return Case(data_args(p, "--mtmcs-split=type_a"), ["bench.jsonl:1", "row id 2", "field 'unsafe_intent'", "missing"])


def wrong_type(tmp: Path) -> Case:
    p = jsonl_dataset(tmp / "ds", [jsonl_row(2, multimodal_mcq="A")])
    return Case(data_args(p, "--mtmcs-split=type_a"), ["bench.jsonl:1", "row id 2", "field 'multimodal_mcq'"])


def parquet_zero_bytes(tmp: Path) -> Case:
    ds = good_dataset(tmp)
    (ds / "data" / "type_a-00000-of-00001.parquet").write_bytes(b"")
    return Case(data_args(ds), ["type_a-00000-of-00001.parquet", "not a readable parquet file"])


def parquet_truncated(tmp: Path) -> Case:
    ds = good_dataset(tmp)
    f = ds / "data" / "type_b-00000-of-00001.parquet"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    return Case(data_args(ds), ["type_b-00000-of-00001.parquet", "not a readable parquet file"])


def parquet_no_rows(tmp: Path) -> Case:
    ds = write_dataset(tmp / "ds", {"type_a": [], "type_b": [row(0)]})
    return Case(data_args(ds), ["ds", "split 'type_a' has no rows"])


def parquet_png_garbage(tmp: Path) -> Case:
    ds = write_dataset(tmp / "ds", {"type_a": [row(0), row(1, image=GARBAGE_PNG)], "type_b": [row(0)]})
    return Case(data_args(ds), ["type_a-00000-of-00001.parquet", "row id 1", "field 'image'", "starts like a PNG file but is not one"])


def parquet_path_outside(tmp: Path) -> Case:
    (tmp / "secret.png").write_bytes(png_bytes(9))
    r = row(0)
    r["image"] = {"bytes": None, "path": str(tmp / "secret.png")}
    ds = write_dataset(tmp / "ds", {"type_a": [r], "type_b": [row(0)]})
    return Case(data_args(ds), ["type_a-00000-of-00001.parquet", "row id 0", "field 'image'", "outside the dataset's folder"])


def parquet_tf_string(tmp: Path) -> Case:
    tf = pa.struct([("question", pa.string()), ("ground_truth", pa.string())])
    schema = pa.schema([pa.field(f.name, pa.list_(tf)) if f.name.endswith("_tf") else f for f in SCHEMA])
    rows = [row(5)]
    for mod in ("multimodal", "unimodal"):
        rows[0][f"{mod}_tf"] = [{"question": "The user means harm.", "ground_truth": "yes"}]
    ds = write_dataset(tmp / "ds", {"type_a": rows, "type_b": rows}, schema=schema)
    return Case(data_args(ds), ["type_a-00000-of-00001.parquet", "row id 5", "field 'multimodal_tf.0.ground_truth'", "expected a boolean"])


def data_nul(tmp: Path) -> Case:
    return Case(["--mtmcs-data=fix\x00tures"], ["NUL byte"])


def jsonl_prefix_on_folder(tmp: Path) -> Case:
    ds = good_dataset(tmp)
    return Case([f"--mtmcs-data=jsonl:{ds}"], [str(ds), "is not a file"])


# ------------------------------------------------------------------------------ captions
def file_or_folder(path: Path, content: bytes | None) -> Path:
    """`path` as a file holding `content`, or as a folder when `content` is None."""
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    return path


def captions(content: bytes | None) -> Builder:
    def build(tmp: Path) -> Case:
        ds = good_dataset(tmp)
        cap = file_or_folder(tmp / "caps.json", content)
        why = {None: "is a directory", b"[\"a picture\"]": "got a JSON list",
               b'{"0": 7}': "expected a caption string"}.get(content, "not UTF-8")
        return Case(data_args(ds, f"--mtmcs-captions={cap}"), ["caps.json", why])
    return build


# ------------------------------------------------------------------------------ baselines
def baseline(content: bytes | None, why: str) -> Builder:
    def build(tmp: Path) -> Case:
        ds = good_dataset(tmp)
        base = file_or_folder(tmp / "base.json", content)
        return Case(data_args(ds, f"--mtmcs-baseline={base}"), ["--mtmcs-baseline", "base.json", why])
    return build


# ------------------------------------------------------------------------------ output paths
def output(option: str, where: Callable[[Path], str], why: str, *extra: str,
            env: Callable[[Path], dict[str, str]] | None = None) -> Builder:
    def build(tmp: Path) -> Case:
        ds = good_dataset(tmp)
        path = where(tmp)
        return Case(data_args(ds, f"{option}={path}", *extra), [option, why],
                    env=env(tmp) if env else None)
    return build


def a_folder(tmp: Path) -> str:
    (tmp / "out").mkdir()
    return str(tmp / "out")


def a_file(tmp: Path) -> str:
    (tmp / "notes.txt").write_text("x")
    return str(tmp / "notes.txt")


def under_a_file(tmp: Path) -> str:
    (tmp / "notes.txt").write_text("x")
    return str(tmp / "notes.txt" / "run.json")


def summary_dir(tmp: Path) -> dict[str, str]:
    (tmp / "summary").mkdir()
    return {"GITHUB_STEP_SUMMARY": str(tmp / "summary")}


# ------------------------------------------------------------------------------ options
def option(*args: str, expect: str) -> Builder:
    def build(tmp: Path) -> Case:
        return Case(data_args(good_dataset(tmp), *args), [expect])
    return build


def ini(line: str, expect: str) -> Builder:
    def build(tmp: Path) -> Case:
        return Case(data_args(good_dataset(tmp)), [expect], ini=f"[pytest]\n{line}\n")
    return build


def store_path(tmp: Path) -> str:
    return str(tmp / "store" / "store.sqlite")


def report_is_the_data(tmp: Path) -> Case:
    path = jsonl_dataset(tmp / "ds")
    return Case(data_args(path, f"--mtmcs-report={path}"), ["--mtmcs-report", "this is the file --mtmcs-data reads"])


def store_is_the_captions(tmp: Path) -> Case:
    ds = good_dataset(tmp)
    return Case(data_args(ds, f"--mtmcs-captions={ds / 'captions.json'}", f"--mtmcs-store={ds / 'captions.json'}"),
                ["--mtmcs-store", "this is the file --mtmcs-captions reads"])


def html_same_as_report(tmp: Path) -> Case:
    out = tmp / "run.out"
    return Case(data_args(good_dataset(tmp), f"--mtmcs-report={out}", f"--mtmcs-html={out}"),
                ["--mtmcs-html", "--mtmcs-report writes the same file"])


def digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder` (the store and whatever sits beside it)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def existing_store(folder: Path) -> Path:
    """A store from an earlier run: a sqlite file with a row in it."""
    folder.mkdir()
    path = folder / "store.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE calls (key TEXT PRIMARY KEY, reply TEXT NOT NULL)")
    con.execute("INSERT INTO calls VALUES ('k', '{\"text\": \"an earlier reply\"}')")
    con.commit()
    con.close()
    return path


def assert_no_traceback(text: str) -> None:
    assert "Traceback" not in text and "INTERNALERROR" not in text, text
