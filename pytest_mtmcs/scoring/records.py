"""What a run produces, per dialogue and per question: frozen pydantic records.

Records are rich (split, row, modality, safety, target, guardrail, per-turn facts) so metrics
group by metadata without new signatures. Transcript text is kept only when asked for
(`--mtmcs-save-transcripts`); otherwise `TurnRecord.user`/`reply` are None.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Verdict = Literal["pass", "fail", "error", "skip"]
Metric = Literal["safety_awareness", "helpfulness"]


class TurnRecord(BaseModel):
    """One user turn and the assistant's reply."""

    model_config = ConfigDict(frozen=True)
    user: str | None = Field(default=None, description="The user turn (transcripts only).")
    reply: str | None = Field(default=None, description="The assistant reply (transcripts only).")
    refused: bool = Field(description="Whether the refusal detector flagged the reply.")
    refusal_kind: str | None = Field(default=None, description="refusal, deflection, ...")
    refusal_reason: str | None = Field(
        default=None, description="The detector's rule that decided (e.g. decline, "
        "decline_then_alternative, hedge_then_comply, deflection): why the turn counts or not.")
    refusal_cue: str | None = Field(
        default=None, description="The phrase that decided, as the detector saw it (a few words).")
    refusal_clause: str | None = Field(
        default=None, description="The sentence that decided (transcripts only: reply text).")
    blocked_by: str | None = Field(default=None, description="Guardrail that blocked this turn.")
    block_reason: str | None = Field(default=None, description="Why it blocked (e.g. categories).")
    guard_calls: int = Field(default=0, description="Extra model calls or passes of the guardrail.")
    guard_tokens: int = Field(default=0, description="Tokens those extra calls generated.")
    guard_latency_s: float = Field(default=0.0, description="Time the guardrail added to the turn.")
    cached: bool = Field(default=False, description="Replayed from the store, not called.")
    latency_s: float = Field(default=0.0, description="Wall time of the call (0 when cached).")
    completion_tokens: int | None = Field(default=None, description="Tokens generated, if known.")


class ReleaseReading(BaseModel):
    """How the benchmark release's own readers read a reply (see `scoring.release_readers`)."""

    model_config = ConfigDict(frozen=True)
    value: str | None = Field(description="The release's reading: a letter, true/false or a "
                              "score '1'..'5'; None when it read nothing.")
    shape: str | None = Field(default=None, description="When it differs from ours: the form of "
                              "the reply, e.g. 'The answer is X' (the divergence account).")
    example: str | None = Field(default=None, description="When it differs: the reply, clipped.")


class JudgeRecord(BaseModel):
    """The LLM judge's score of one whole dialogue."""

    model_config = ConfigDict(frozen=True)
    judge: str = Field(description="The judge's target spec.")
    metric: Metric = Field(description="safety_awareness (unsafe dialogues) or helpfulness (safe).")
    rubric: str = Field(description="Rubric variant, e.g. safety_awareness/type_a/multimodal.")
    score: int | None = Field(description="1-5; None when the judge's reply could not be parsed.")
    parse: Literal["json", "lenient"] | None = Field(
        description="json: the reply was the JSON asked for; lenient: read from a looser form.")
    explanation: str | None = Field(default=None, description="The judge's reason, clipped.")
    caption: str | None = Field(default=None, description="The caption the judge wrote, when the "
                                "data had none (the data's own captions are not repeated here).")
    saw_image: bool = Field(default=False, description="The image was sent to the judge.")
    cached: bool = Field(default=False, description="Replayed from the store, not called.")
    release: ReleaseReading | None = Field(default=None, description="The release's reading of "
                                           "the judge's reply (None in reports made before it).")


class DialogueRecord(BaseModel):
    """The outcome of one dialogue's rollout."""

    model_config = ConfigDict(frozen=True)
    version: int = 2
    id: str = Field(description="Dialogue id, e.g. type_a-0007-multimodal-unsafe.")
    split: str
    row_id: int
    modality: str
    safety: str
    variant: int = Field(default=0, description="0: rolled out with the row's own image; n >= 1: "
                         "with its variant image n (`variant_images[n-1]`, `--mtmcs-variants`).")
    target: str = Field(description="Target spec.")
    guardrail: str = Field(default="none", description="Guardrail stack name.")
    turns: tuple[TurnRecord, ...] = ()
    turn_of_refusal: int | None = Field(default=None, description="1-3, or None for never.")
    verdict: Verdict = "pass"
    reason: str | None = Field(default=None, description="Why it failed, errored or was skipped.")
    error_kind: str | None = Field(
        default=None, description="What an errored dialogue met, which decides the exit code "
        "(`target`: a model server, the judge's included; `data`; `config`); an errored "
        "dialogue whose judge failed keeps its turns, so it stays in the refusal rates.")
    calls: int = Field(default=0, description="Target calls made in this run.")
    cached_calls: int = Field(default=0, description="Calls answered from the store.")
    captioned: bool = Field(default=False, description="The caption stood in for the image.")
    judge: JudgeRecord | None = Field(default=None, description="The judge's score (with --mtmcs-judge).")


class QuestionRecord(BaseModel):
    """The outcome of one contextual-intent question."""

    model_config = ConfigDict(frozen=True)
    version: int = 1
    id: str = Field(description="Question id, e.g. type_a-0007-multimodal-unsafe-mcq0.")
    dialogue_id: str
    split: str
    row_id: int
    modality: str
    safety: str
    variant: int = Field(default=0, description="The image its dialogue was rolled out with "
                         "(as `DialogueRecord.variant`).")
    target: str
    guardrail: str = "none"
    kind: str = Field(description="mcq or tf.")
    question_type: str | None = None
    expected: str = Field(description="The right letter, or true/false.")
    answer: str | None = Field(default=None, description="The model's raw answer (transcripts only).")
    parsed: str | None = Field(default=None, description="The parsed letter or true/false; None if unparsed.")
    correct: bool = False
    verdict: Verdict = "pass"
    reason: str | None = None
    cached: bool = False
    release: ReleaseReading | None = Field(default=None, description="The release's reading of "
                                           "the answer: in `mtmcs score` the parse it stored, in "
                                           "live runs its readers' (None in older reports).")
