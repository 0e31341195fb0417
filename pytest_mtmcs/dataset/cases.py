"""Dialogue assembly as MTMCS-Bench defines it: four dialogues per row, paired by row id.

Type A (escalation):   unsafe = r1, r2, unsafe_r3    safe = r1, r2, safe_r3
Type B (front-loaded): unsafe = unsafe_r1, r2, r3    safe = safe_r1, r2, r3

An empty turn is a data error unless a fallback is asked for (the official code silently
falls back to r1/r3; we never do so silently).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pytest_mtmcs.chat import ImageRef
from pytest_mtmcs.dataset.schema import (
    MODALITIES,
    SAFETIES,
    BenchRow,
    DialogueFields,
    Modality,
    Safety,
    Split,
)
from pytest_mtmcs.errors import DataError

# (split, safety) -> the three field names, and the field an empty one falls back to.
_TURN_FIELDS: dict[tuple[str, str], tuple[str, str, str]] = {
    ("type_a", "unsafe"): ("r1", "r2", "unsafe_r3"),
    ("type_a", "safe"): ("r1", "r2", "safe_r3"),
    ("type_b", "unsafe"): ("unsafe_r1", "r2", "r3"),
    ("type_b", "safe"): ("safe_r1", "r2", "r3"),
}
_FALLBACK = {"safe_r1": "r1", "unsafe_r1": "r1", "safe_r3": "r3", "unsafe_r3": "r3"}


class Question(BaseModel):
    """One contextual-intent question attached to the dialogue whose transcript it is asked on."""

    model_config = ConfigDict(frozen=True)
    kind: Literal["mcq", "tf"] = Field(description="Multiple choice or true/false.")
    index: int = Field(description="Position in the row's mcq or tf list.")
    question: str = Field(description="The question text.")
    options: tuple[str, ...] = Field(default=(), description="MCQ options, lettered A, B, ...")
    answer: str = Field(description="Expected answer: a letter for MCQ, 'true'/'false' for TF.")
    question_type: str | None = Field(default=None, description="The release's MCQ question_type.")

    @property
    def suffix(self) -> str:
        """Id suffix, e.g. `mcq0` or `tf1`."""
        return f"{self.kind}{self.index}"


class Case(BaseModel):
    """One dialogue to roll out: three user turns, maybe an image, and its questions."""

    model_config = ConfigDict(frozen=True)
    version: int = 1
    id: str = Field(description="Stable id, e.g. `type_a-0007-multimodal-unsafe`.")
    split: Split
    row_id: int
    modality: Modality
    safety: Safety
    turns: tuple[str, str, str] = Field(description="The three user turns, in order.")
    image: ImageRef | None = Field(default=None, description="Image of multimodal dialogues.")
    variant: int = Field(default=0, description="0: the row's own image; n >= 1: its variant "
                         "image n (`variant_images[n-1]`), with `-vn` at the end of the id.")
    intent: str = Field(description="The row's abstract unsafe intent.")
    caption: str | None = Field(default=None, description="Neutral caption of the row's image.")
    questions: tuple[Question, ...] = Field(default=(), description="Questions asked on this transcript.")
    source: str = Field(description="Where the row came from (file or dataset id).")

    @property
    def pair_key(self) -> tuple[str, int, str]:
        """Safe and unsafe dialogues of one row and modality share this key."""
        return (self.split, self.row_id, self.modality)


def case_id(split: str, row_id: int, modality: str, safety: str, variant: int = 0) -> str:
    """The stable dialogue id used in item names, reports and snapshots; a dialogue rolled out
    with the row's variant image n ends in `-vn`."""
    return f"{split}-{row_id:04d}-{modality}-{safety}" + (f"-v{variant}" if variant else "")


def _turns(fields: DialogueFields, split: str, safety: str, *, fallback: bool, where: str,
           row: int, family: str) -> tuple[str, str, str]:
    out = []
    for name in _TURN_FIELDS[(split, safety)]:
        text = getattr(fields, name)
        if not text.strip():
            fb = _FALLBACK.get(name)
            if fallback and fb and getattr(fields, fb).strip():
                text = getattr(fields, fb)
            else:
                hint = (f" (or pass --mtmcs-allow-fallback to use {fb!r} as the official code does)"
                        if fb else "")
                raise DataError(f"expected a non-empty user turn, got an empty string{hint}",
                                file=where, row=row, field=f"{family}.{name}")
        out.append(text)
    return (out[0], out[1], out[2])


def assemble(row: BenchRow, split: Split, *, image: ImageRef | None, caption: str | None,
             source: str, fallback: bool = False,
             modalities: tuple[Modality, ...] = MODALITIES,
             variants: tuple[ImageRef, ...] = ()) -> list[Case]:
    """The row's dialogues: for each modality, the safe one then the unsafe one; the
    multimodal pair again with each of `variants` (the row's variant images to run), as
    variant 1, 2, ... with the same turns, caption and questions."""
    cases: list[Case] = []
    for modality in modalities:
        family = f"{modality}_dialogue"
        fields: DialogueFields = getattr(row, family)
        mcqs = getattr(row, f"{modality}_mcq")
        tfs = getattr(row, f"{modality}_tf")
        for safety in SAFETIES:
            # model_construct: the row is validated already; 30,000 items load faster.
            questions = [
                Question.model_construct(kind="mcq", index=i, question=q.question, options=q.options,
                         answer=q.ground_truth, question_type=q.question_type)
                for i, q in enumerate(mcqs) if q.on == safety
            ]
            if safety == "unsafe":
                questions += [
                    Question.model_construct(kind="tf", options=(), question_type=None, index=i,
                                             question=q.question,
                             answer="true" if q.ground_truth else "false")
                    for i, q in enumerate(tfs)
                ]
            cases.append(Case.model_construct(
                version=1, id=case_id(split, row.id, modality, safety), split=split, row_id=row.id,
                variant=0,
                modality=modality, safety=safety,
                turns=_turns(fields, split, safety, fallback=fallback, where=source, row=row.id,
                             family=family),
                image=image if modality == "multimodal" else None,
                intent=row.unsafe_intent, caption=caption, questions=tuple(questions),
                source=source,
            ))
        if modality == "multimodal":
            pair = cases[-2:]
            cases += [c.model_copy(update={"id": f"{c.id}-v{n}", "image": ref, "variant": n})
                      for n, ref in enumerate(variants, 1) for c in pair]
    return cases
