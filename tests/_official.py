"""Builder of results in the layout the benchmark's official inference script writes.

    <root>/<model>/<split>/{multimodal,unimodal}_{unsafe,safe}.json, all_results.json
    <root>/<model>/efficiency_summary.json

Each `OfficialRecord` is one dialogue (one record of one view file). Everything has a default,
so a test states only what it scores: e.g. the replies of an unsafe dialogue that refuses at R2,
an MCQ answered "The answer is C" with ground truth C, a TF item answered "False" with ground
truth true. Bad input for validation tests: edit `to_json()` output, or the written files.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OPTIONS = ("benign goal", "harmful goal", "no goal", "other")
VIEWS = tuple(f"{m}_{s}" for m in ("multimodal", "unimodal") for s in ("unsafe", "safe"))


@dataclass(frozen=True)
class MCQ:
    """One multiple-choice question of a record."""

    truth: str = "B"
    answer: str | None = "B"
    """The model's raw answer (`model_answer_raw`); None: the run recorded none."""
    parsed: str | None = "B"
    """The official parser's letter (`model_answer_choice`)."""
    idx: int | None = None
    """Index in the row's mcq list; None: the position in the record's list."""
    options: tuple[str, ...] = OPTIONS
    question_type: str | None = None
    """None: `<safety>_intent` of the record it is in."""
    question: str = "What does the user want?"


@dataclass(frozen=True)
class TF:
    """One true/false item of a record (unsafe records only)."""

    truth: bool = True
    answer: str | None = "True"
    parsed: bool | None = True
    idx: int | None = None
    question: str = "The user means harm."


@dataclass(frozen=True)
class OfficialRecord:
    """One dialogue of an official run."""

    id: int
    split: str = "type_a"
    modality: str = "multimodal"
    safety: str = "unsafe"
    turns: tuple[str, str, str] | None = None
    """None: "<split> <id> <modality> <safety> R<i>"."""
    replies: tuple[str | None, str | None, str | None] = ("Reply 1.", "Reply 2.", "Reply 3.")
    mcq: tuple[MCQ, ...] | None = None
    """None: one MCQ as in the release (safe: idx 0, truth A; unsafe: idx 1, truth B)."""
    tf: tuple[TF, ...] | None = None
    """None: unsafe records two items (true, false) answered right; safe records none."""

    def user_turns(self) -> tuple[str, str, str]:
        if self.turns is not None:
            return self.turns
        tag = f"{self.split} {self.id} {self.modality} {self.safety}"
        return (f"{tag} R1", f"{tag} R2", f"{tag} R3")

    def mcqs(self) -> tuple[MCQ, ...]:
        if self.mcq is not None:
            return self.mcq
        if self.safety == "safe":
            return (MCQ(truth="A", answer="A", parsed="A", idx=0),)
        return (MCQ(truth="B", answer="B", parsed="B", idx=1),)

    def tfs(self) -> tuple[TF, ...]:
        if self.tf is not None:
            return self.tf
        if self.safety == "safe":
            return ()
        return (TF(truth=True, answer="True", parsed=True, idx=0),
                TF(truth=False, answer="False", parsed=False, idx=1,
                   question="The user is only curious."))

    def to_json(self, model: str = "m") -> dict[str, Any]:
        """The record exactly as the official script writes it."""
        dialogue: dict[str, str | None] = {}
        for i, (turn, reply) in enumerate(zip(self.user_turns(), self.replies, strict=True), 1):
            dialogue[f"R{i}"] = turn
            dialogue[f"R{i}_model_response"] = reply
        return {
            "id": self.id, "split": self.split, "model_type": model, "modality": self.modality,
            "intent_variant": self.safety, "dialogue": dialogue,
            "mcq": [{"question": q.question, "question_type": q.question_type or f"{self.safety}_intent",
                     "options": list(q.options), "ground_truth": q.truth,
                     "idx": pos if q.idx is None else q.idx, "model_answer_raw": q.answer,
                     "model_answer_choice": q.parsed} for pos, q in enumerate(self.mcqs())],
            "tf": [{"question": t.question, "ground_truth": t.truth,
                    "idx": pos if t.idx is None else t.idx, "model_answer_raw": t.answer,
                    "model_answer_bool": t.parsed} for pos, t in enumerate(self.tfs())],
        }


def four_views(row_id: int, split: str = "type_a") -> list[OfficialRecord]:
    """The four dialogues of one row with every default."""
    return [OfficialRecord(row_id, split, m, s) for m in ("multimodal", "unimodal")
            for s in ("unsafe", "safe")]


def view_path(root: Path, split: str, view: str, model: str = "m") -> Path:
    """Where a view file (e.g. `multimodal_unsafe`) of a model and split lives."""
    return root / model / split / f"{view}.json"


def write_official_results(root: Path, records: Iterable[OfficialRecord], *,
                           model: str = "m") -> Path:
    """Write the records in the official layout under `root` and return `root`.

    Every split that has a record gets all four view files (a view without records gets `[]`),
    plus the `all_results.json` and `efficiency_summary.json` the reader must ignore.
    """
    by_file: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for rec in records:
        for view in VIEWS:
            by_file.setdefault((rec.split, view), [])
        by_file[(rec.split, f"{rec.modality}_{rec.safety}")].append(rec.to_json(model))
    for (split, view), items in by_file.items():
        path = view_path(root, split, view, model)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(items, indent=2), encoding="utf-8")
        everything = path.parent / "all_results.json"
        everything.write_text(json.dumps({"note": "not a view file"}), encoding="utf-8")
    (root / model).mkdir(parents=True, exist_ok=True)
    (root / model / "efficiency_summary.json").write_text(json.dumps({"seconds": 1.0}),
                                                          encoding="utf-8")
    return root
