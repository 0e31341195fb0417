"""The official MTMCS-Bench row schema as frozen pydantic models (one per release row).

Field names are the release's own, so a row validated here is a row of the release.
Images are not fields here: the loaders attach `ImageRef`s so the bytes stay on disk.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Split = Literal["type_a", "type_b"]
SPLITS: tuple[Split, ...] = ("type_a", "type_b")
Modality = Literal["multimodal", "unimodal"]
MODALITIES: tuple[Modality, ...] = ("multimodal", "unimodal")
Safety = Literal["safe", "unsafe"]
SAFETIES: tuple[Safety, ...] = ("safe", "unsafe")
LETTERS = "ABCDEFG"


def _json_type(v: Any) -> str:
    """How a value reads in the data file: 'string', 'number', 'boolean', ..."""
    names = {bool: "boolean", int: "number", float: "number", str: "string", list: "list",
             dict: "object", type(None): "null"}
    return names.get(type(v), type(v).__name__)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class DialogueFields(_Frozen):
    """The user turns of one dialogue family. Every field is a USER turn."""

    r1: str = Field(description="Shared first turn (Type A).")
    r2: str = Field(description="Shared second turn (both types).")
    r3: str = Field(description="Shared third turn (Type B).")
    safe_r1: str = Field(description="Benign first turn (Type B, safe dialogue).")
    unsafe_r1: str = Field(description="First turn stating the harmful intent (Type B, unsafe dialogue).")
    safe_r3: str = Field(description="Benign third turn (Type A, safe dialogue).")
    unsafe_r3: str = Field(description="Third turn revealing the harm (Type A, unsafe dialogue).")


class MCQItem(_Frozen):
    """A multiple-choice intent question."""

    question: str = Field(description="The question text.")
    question_type: str = Field(description="Starts with 'safe' or 'unsafe': which transcript it is asked on.")
    options: tuple[str, ...] = Field(description="Answer options, lettered A, B, C, ... in order.")
    ground_truth: str = Field(description="The correct letter, 'A'..'F'.")

    @field_validator("question_type")
    @classmethod
    def _type_prefix(cls, v: str) -> str:
        if not v.lower().startswith(("safe", "unsafe")):
            raise ValueError(f"must start with 'safe' or 'unsafe', got {v!r}")
        return v

    @field_validator("options")
    @classmethod
    def _two_or_more(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not 2 <= len(v) <= len(LETTERS):
            raise ValueError(f"expected 2 to {len(LETTERS)} options, got {len(v)}")
        return v

    @field_validator("ground_truth")
    @classmethod
    def _letter(cls, v: str) -> str:
        v = v.strip().upper()
        if len(v) != 1 or v not in LETTERS:
            raise ValueError(f"expected one letter A-{LETTERS[-1]}, got {v!r}")
        return v

    @model_validator(mode="after")
    def _truth_is_an_option(self) -> MCQItem:
        if LETTERS.index(self.ground_truth) >= len(self.options):
            raise ValueError(f"ground_truth {self.ground_truth!r} names no option: there are "
                             f"{len(self.options)} options (A-{LETTERS[len(self.options) - 1]})")
        return self

    @property
    def on(self) -> Safety:
        """Which transcript the question is asked on."""
        return "unsafe" if self.question_type.lower().startswith("unsafe") else "safe"


class TFItem(_Frozen):
    """A true/false intent question (asked on the unsafe transcript)."""

    question: str = Field(description="The statement to judge true or false.")
    ground_truth: bool = Field(description="Whether the statement is true.")

    @field_validator("ground_truth", mode="before")
    @classmethod
    def _a_real_boolean(cls, v: Any) -> Any:
        # The release stores a boolean. pydantic's lax mode would read "yes", "true", "0" or 1
        # as a boolean: a string in this field is a broken export, never silently a verdict.
        if not isinstance(v, bool):
            raise ValueError(f"expected a boolean (true or false), not a {_json_type(v)}")
        return v


class BenchRow(_Frozen):
    """One row of a split (without its images, which the loader references lazily)."""

    id: int = Field(description="Row id; also the key of the image caption file.")

    @field_validator("id", mode="before")
    @classmethod
    def _a_row_number(cls, v: Any) -> Any:
        # The release's ids are 0..751. A string, float or boolean id is a broken export (lax
        # pydantic would read "7", 7.0 and True alike), and a negative one would make item ids
        # such as `type_a--005`.
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"expected a non-negative integer, not a {_json_type(v)}")
        if v < 0:
            raise ValueError("expected a non-negative integer (ids are 0, 1, 2, ...)")
        return v
    unsafe_intent: str = Field(description="Abstract statement of the harmful goal.")
    multimodal_dialogue: DialogueFields
    unimodal_dialogue: DialogueFields
    multimodal_mcq: tuple[MCQItem, ...]
    unimodal_mcq: tuple[MCQItem, ...]
    multimodal_tf: tuple[TFItem, ...]
    unimodal_tf: tuple[TFItem, ...]


REQUIRED_COLUMNS: tuple[str, ...] = (
    "id", "image", "unsafe_intent", "multimodal_dialogue", "unimodal_dialogue",
    "multimodal_mcq", "unimodal_mcq", "multimodal_tf", "unimodal_tf",
)
"""Columns every split must have (`variant_images` is optional)."""
