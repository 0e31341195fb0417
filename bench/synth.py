"""Synthetic full-size benchmark data: the fixture rows replicated under new ids.

    python bench/synth.py OUT_DIR --rows 752 [--questions-per-modality 8] [--source fixtures/mtmcs-sample]

Writes OUT_DIR/data/{type_a,type_b}-00000-of-00001.parquet in the official schema and a captions
file. `--questions-per-modality 8` pads the question lists so that 752 rows per split give the
published 30,080 samples as pytest items (4 dialogues + 16 questions per row).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]


def _pad(items: list[dict], n: int, kinds: list[str] | None = None) -> list[dict]:
    out = list(items)
    i = 0
    while len(out) < n and items:
        extra = dict(items[i % len(items)])
        if kinds is not None:
            extra["question_type"] = kinds[len(out) % len(kinds)]
        out.append(extra)
        i += 1
    return out[:n] if n else out


def build(out: Path, rows: int, source: Path, questions_per_modality: int | None,
          unique: bool = True) -> Path:
    """Write the synthetic dataset and return its folder.

    `unique` tags every user turn of a replica with its new id, so that no two rows make the
    same request (the store would otherwise answer replicas from the cache)."""
    (out / "data").mkdir(parents=True, exist_ok=True)
    captions_src = json.loads((source / "captions.json").read_text())
    captions: dict[str, str] = {}
    for split in ("type_a", "type_b"):
        files = sorted((source / "data").glob(f"{split}-*.parquet"))
        table = pa.concat_tables(pq.read_table(f) for f in files)
        base = table.to_pylist()
        new_rows = []
        for i in range(rows):
            r = dict(base[i % len(base)])
            captions[str(i)] = captions_src.get(str(r["id"]), "A photograph.")
            r["id"] = i
            if unique:
                for fam in ("multimodal_dialogue", "unimodal_dialogue"):
                    r[fam] = {k: f"{v} (case {i})" for k, v in r[fam].items()}
            if questions_per_modality:
                for mod in ("multimodal", "unimodal"):
                    # 8 per modality: 2 safe MCQs, 2 unsafe MCQs, 4 TF items
                    n_tf = questions_per_modality // 2
                    n_mcq = questions_per_modality - n_tf
                    r[f"{mod}_mcq"] = _pad(r[f"{mod}_mcq"], n_mcq, ["safe_intent", "unsafe_intent"])
                    r[f"{mod}_tf"] = _pad(r[f"{mod}_tf"], n_tf)
            new_rows.append(r)
        pq.write_table(pa.Table.from_pylist(new_rows, schema=table.schema),
                       out / "data" / f"{split}-00000-of-00001.parquet")
    (out / "captions.json").write_text(json.dumps(captions))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--rows", type=int, default=752)
    ap.add_argument("--source", type=Path, default=ROOT / "fixtures" / "mtmcs-sample")
    ap.add_argument("--questions-per-modality", type=int, default=None)
    a = ap.parse_args()
    print(build(a.out, a.rows, a.source, a.questions_per_modality))


if __name__ == "__main__":
    main()
