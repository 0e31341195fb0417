"""Score transcripts made elsewhere (the benchmark's own inference script) with our metrics.

The same engine scores them as in a live run, with the model's replies and answers given up
front instead of requested: the refusal detector and the intent-answer parsers read them (the
release's figures count the parses its own inference stored, `official_parsed`), and
the judge (when one is given) scores each dialogue through the store, concurrently and
resumably. So `mtmcs score` and `pytest --mtmcs` produce the same records and metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from pytest_mtmcs.chat import Conversation, GenParams, Reply
from pytest_mtmcs.dataset.official import Transcript
from pytest_mtmcs.errors import MtmcsError, TargetError
from pytest_mtmcs.rollout.engine import Engine
from pytest_mtmcs.rollout.store import Store
from pytest_mtmcs.scoring.judge import Judge
from pytest_mtmcs.scoring.records import DialogueRecord, QuestionRecord
from pytest_mtmcs.scoring.release_readers import release_reading
from pytest_mtmcs.scoring.verdicts import DEFAULT_PASS_SCORE
from pytest_mtmcs.targets.base import Target


class RecordedTarget(Target):
    """Stands for the model whose transcripts are scored; it is never called."""

    supports_images = True

    def __init__(self, model: str) -> None:
        self.spec = model

    async def respond(self, conversation: Conversation, params: GenParams) -> Reply:
        raise MtmcsError(f"{self.spec}: recorded transcripts cannot be extended with new calls")


def _result(fut: Future[Any]) -> tuple[Any, BaseException | None]:
    try:
        return fut.result(), None
    except Exception as exc:  # the judge failed, or the row had no caption
        return None, exc


def _without_text(rec: DialogueRecord) -> DialogueRecord:
    """The record without the dialogue's text (kept only to take the divergence examples)."""
    turns = tuple(t.model_copy(update={"user": None, "reply": None, "refusal_clause": None})
                  for t in rec.turns)
    return rec.model_copy(update={"turns": turns})


@dataclass
class Scored:
    """What scoring produced."""

    dialogues: list[DialogueRecord] = field(default_factory=list)
    questions: list[QuestionRecord] = field(default_factory=list)
    server_errors: int = 0
    """Dialogues the judge could not score because its server failed (results incomplete)."""


def score_transcripts(transcripts: Sequence[Transcript], store: Store, *, judge: Judge | None,
                      concurrency: int = 16, pass_score: int = DEFAULT_PASS_SCORE,
                      keep_text: bool = False, examples: bool = False) -> Scored:
    """Records for every transcript, one engine per model (the target of its records).
    `examples`: keep a clipped example answer where the release reads it differently from us
    (model text: otherwise kept only with `keep_text`)."""
    models: dict[str, list[Transcript]] = {}
    for t in transcripts:
        models.setdefault(t.model, []).append(t)
    out = Scored()
    for model, group in models.items():
        engine = Engine(RecordedTarget(model), store, params=GenParams(), concurrency=concurrency,
                        judge=judge, pass_score=pass_score,
                        keep_text=keep_text or examples)
        for t in group:
            engine.add(t.case, replies=list(t.replies), answers=t.answers)
        engine.start()
        try:
            for t in group:
                case = t.case
                base: dict[str, Any] = {"split": case.split, "row_id": case.row_id,
                                        "modality": case.modality, "safety": case.safety,
                                        "target": model}
                rec, exc = _result(engine.dialogue(case.id))
                # A judge that fails leaves a record that keeps the refusal outcome and names
                # the error's kind (`Recorder.unjudged`); an exception is the engine's own.
                out.server_errors += isinstance(exc, TargetError) or (
                    isinstance(rec, DialogueRecord) and rec.error_kind == "target")
                if rec is not None and examples and not keep_text:
                    rec = _without_text(rec)
                out.dialogues.append(rec if rec is not None else DialogueRecord(
                    id=case.id, verdict="error", reason=f"{type(exc).__name__}: {exc}", **base))
                for q in case.questions:
                    qrec, exc = _result(engine.question(case.id, q.suffix))
                    if isinstance(qrec, QuestionRecord):
                        # The release's figures count the parses its inference stored.
                        release = release_reading(
                            q.kind, t.answers.get(q.suffix, ""), qrec.parsed,
                            t.official_parsed.get(q.suffix), example=keep_text or examples)
                        qrec = qrec.model_copy(update={"release": release, "answer": (
                            qrec.answer if keep_text else None)})
                    out.questions.append(qrec if exc is None else QuestionRecord(
                        id=f"{case.id}-{q.suffix}", dialogue_id=case.id, kind=q.kind,
                        question_type=q.question_type, expected=q.answer, verdict="error",
                        reason=f"{type(exc).__name__}: {exc}", **base))
        finally:
            engine.stop()
    return out
