"""Rollout jobs: what the engine carries per dialogue, and the records made from its replies.

A job is one dialogue under one guardrail stack: its case, the futures its items wait on, and
whatever the store or the caller already knew about it. `Recorder` turns a job's replies and
answers into `DialogueRecord` / `QuestionRecord` with scoring's refusal detector, answer
parser and verdicts; the engine decides when, this module decides what goes in them.
"""

from __future__ import annotations

from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any

from pytest_mtmcs.chat import Conversation, GenParams, Reply, sniff_mime
from pytest_mtmcs.dataset import Case, Question
from pytest_mtmcs.errors import DataError, MtmcsError, error_kind
from pytest_mtmcs.rollout.protocol import MCQ_MAX_TOKENS, TF_MAX_TOKENS, question_prompt
from pytest_mtmcs.rollout.store import answer_key, dialogue_key
from pytest_mtmcs.scoring.judge import Call, Judge
from pytest_mtmcs.scoring.prompts import DEFAULT_PROMPTS, PromptTemplates
from pytest_mtmcs.scoring.records import (
    DialogueRecord,
    JudgeRecord,
    QuestionRecord,
    TurnRecord,
)
from pytest_mtmcs.scoring.refusal import RefusalVerdict, detect_refusal
from pytest_mtmcs.scoring.release_readers import release_judge, release_mcq, release_reading, release_tf
from pytest_mtmcs.scoring.rubrics import Metric, rubric_name
from pytest_mtmcs.scoring.verdicts import dialogue_verdict, parse_answer, question_verdict
from pytest_mtmcs.targets.base import Target
from pytest_mtmcs.textsafety import for_terminal

__all__ = ["DialogueFailed", "EngineStopped", "Job", "Recorder", "check_image", "job_key", "question_params",
           "settle", "stored_answer_key", "stored_rollout_key"]


def job_key(case_id: str, guardrail: str = "none") -> str:
    """The engine's key of one dialogue under one guardrail stack."""
    return case_id if guardrail == "none" else f"{guardrail}/{case_id}"


@dataclass
class Job:
    """One dialogue under one guardrail stack, from queueing to its resolved records."""

    case: Case
    use_caption: bool
    """The target reads the case's caption in place of its image (a text-only target)."""
    stack: str = "none"
    """The guardrail stack it runs through (`none`: the bare target)."""
    dialogue: Future[DialogueRecord] = field(default_factory=Future)
    questions: dict[str, Future[QuestionRecord]] = field(default_factory=dict)
    started: bool = False
    replies: list[Reply] | None = None
    """The dialogue's replies once known (from the store's dialogue table or the rollout)."""
    verdicts: list[RefusalVerdict] | None = None
    """The refusal detector's verdicts on `replies`, when the store had them."""
    answers: dict[str, str] | None = None
    """Answers to the questions given up front (scoring transcripts made elsewhere)."""
    stored_answers: dict[str, str] = field(default_factory=dict)
    """Answers found in the store's answer table before the loop started, by question suffix."""
    stored_at: tuple[float, str | None] | None = None
    """When (epoch seconds) and by which run the `replies` were stored, when they came from the
    store."""
    stored_answers_at: dict[str, tuple[float, str | None]] = field(default_factory=dict)
    """When and by which run each of `stored_answers` was stored, by question suffix."""
    given: bool = False
    """The replies were given up front, not rolled out (nothing is written to the store)."""
    follow: bool = False
    """Another xdist worker holds this job's row: wait for it, then read the store."""

    @property
    def unit(self) -> str:
        """The work-queue unit: the row (its dialogues share calls across safety, modality and
        guardrail stack)."""
        return f"{self.case.split}/{self.case.row_id}"


class DialogueFailed(MtmcsError):
    """A question could not be asked because its dialogue's rollout failed."""


class EngineStopped(MtmcsError):
    """The rollout engine stopped on its own before this result: its `__cause__` says why (a
    `StoreError`: infrastructure trouble; anything else: a bug)."""


def check_image(case: Case) -> None:
    """Raise DataError (file, row, field) when the case's image cannot be read or decoded."""
    assert case.image is not None
    try:
        sniff_mime(case.image.load_bytes())
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"cannot read the image ({exc}); expected PNG, JPEG, GIF or WebP bytes",
                        file=case.source, row=case.row_id, field="image") from exc


def settle(fut: Future[Any], result: Any = None, error: BaseException | None = None) -> None:
    """Resolve a future unless `stop()` already failed it (a rollout finishing after the run
    stopped waiting for it)."""
    try:
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(result)
    except InvalidStateError:  # already resolved by the other thread
        pass


def refusal_verdicts(case: Case, replies: list[Reply]) -> list[RefusalVerdict]:
    """The refusal detector's verdict on each reply, given the user turn it answers (the
    turn's text as the benchmark wrote it; the detector uses it to see deflections)."""
    return [detect_refusal(r.text, request=case.turns[t]) for t, r in enumerate(replies)]


def question_params(q: Question, params: GenParams) -> GenParams:
    """The generation parameters of an intent question: the run's temperature, and the token
    budget of its kind (a letter for MCQ, a word for true/false)."""
    return GenParams(temperature=params.temperature,
                     max_tokens=MCQ_MAX_TOKENS if q.kind == "mcq" else TF_MAX_TOKENS)


def stored_rollout_key(job: Job, identity: str, params: GenParams) -> str:
    """Content address of a whole dialogue's rollout through the stack `identity` (its replies
    depend on nothing else). Raises OSError/ValueError/KeyError on an unreadable image."""
    case = job.case
    seen = (case.caption or "") if job.use_caption else (
        case.image.digest() if case.image is not None else "")
    return dialogue_key(identity, case.modality, case.turns, seen, params)


def stored_answer_key(job: Job, q: Question, replies: list[str], rollout: str,
                      params: GenParams, prompts: PromptTemplates = DEFAULT_PROMPTS) -> str:
    """The store's key of a question's answer after the rollout `rollout` (see
    `store.answer_key`): the prompt as `prompts` word it, so other wording is another key."""
    return answer_key(rollout, question_prompt(job.case, q, replies, prompts),
                      question_params(q, params))


@dataclass(frozen=True)
class Recorder:
    """Makes the records of a run's jobs: `target` is the spec every record names, `keep_text`
    keeps the dialogue text in them, `pass_score` is the judge score a dialogue needs."""

    target: str
    keep_text: bool
    pass_score: int

    def dialogue(self, job: Job, replies: list[Reply], cached: list[bool],
                 verdicts: list[RefusalVerdict] | None = None,
                 judged: JudgeRecord | None = None) -> DialogueRecord:
        """A dialogue's record from its replies (refusal verdicts computed unless given)."""
        case = job.case
        if verdicts is None:
            verdicts = refusal_verdicts(case, replies)
        turns = []
        for t, (reply, was_cached, found) in enumerate(zip(replies, cached, verdicts, strict=True)):
            turns.append(TurnRecord(
                user=case.turns[t] if self.keep_text else None,
                reply=reply.text if self.keep_text else None,
                refused=found.refused or reply.blocked_by is not None,
                refusal_kind=found.kind, refusal_reason=found.reason,
                refusal_cue=None if found.cue is None else found.cue[:80],
                refusal_clause=found.clause if self.keep_text else None,
                blocked_by=reply.blocked_by,
                block_reason=reply.block_reason, guard_calls=reply.guard_calls,
                guard_tokens=reply.guard_tokens, guard_latency_s=reply.guard_latency_s,
                cached=was_cached, latency_s=0.0 if was_cached else reply.latency_s,
                completion_tokens=reply.completion_tokens,
            ))
        tor = next((i + 1 for i, t in enumerate(turns) if t.refused), None)
        verdict, reason = dialogue_verdict(case.safety, tor, judged, self.pass_score)
        return DialogueRecord(
            id=case.id, split=case.split, row_id=case.row_id, modality=case.modality,
            safety=case.safety, variant=case.variant, target=self.target, guardrail=job.stack,
            turns=tuple(turns), turn_of_refusal=tor, verdict=verdict,
            reason=reason, calls=0 if job.given else sum(not c for c in cached),
            cached_calls=0 if job.given else sum(cached), captioned=job.use_caption, judge=judged,
        )

    def unjudged(self, job: Job, replies: list[Reply], cached: list[bool],
                 verdicts: list[RefusalVerdict] | None, judge: str,
                 exc: BaseException) -> DialogueRecord:
        """The record of a dialogue whose judge failed: its turns and refusal outcome are kept
        (the refusal outcome does not depend on the judge, so the dialogue stays in the refusal
        rates), the judgement counts as unread, and the error's kind decides the exit code."""
        case = job.case
        metric: Metric = "safety_awareness" if case.safety == "unsafe" else "helpfulness"
        failed = JudgeRecord(judge=judge, metric=metric,
                             rubric=rubric_name(metric, case.split, case.modality), score=None,
                             parse=None, explanation=f"the judge failed: {type(exc).__name__}")
        rec = self.dialogue(job, replies, cached, verdicts, failed)
        return rec.model_copy(update={
            "reason": for_terminal(f"the judge failed ({type(exc).__name__}: {exc}); the "
                                   "refusal outcome is kept"),
            "error_kind": error_kind(exc)})

    def question(self, job: Job, q: Question, text: str, was_cached: bool) -> QuestionRecord:
        """A question's record from its answer text (parsed and checked here)."""
        parsed = parse_answer(q, text)
        verdict, reason = question_verdict(q, parsed)
        tf = release_tf(text)
        release = release_mcq(text) if q.kind == "mcq" else (
            None if tf is None else ("true" if tf else "false"))
        return QuestionRecord(
            **self._question_base(job, q), answer=text if self.keep_text else None,
            parsed=parsed, correct=verdict == "pass", verdict=verdict, reason=reason,
            cached=was_cached, release=release_reading(q.kind, text, parsed, release,
                                                        example=self.keep_text),
        )

    def _question_base(self, job: Job, q: Question) -> dict[str, Any]:
        case = job.case
        return dict(id=f"{case.id}-{q.suffix}", dialogue_id=case.id, split=case.split,
                    row_id=case.row_id, modality=case.modality, safety=case.safety,
                    variant=case.variant, target=self.target, guardrail=job.stack, kind=q.kind,
                    question_type=q.question_type, expected=q.answer)


async def judge_with_release_reading(judge: Judge, case: Case, replies: list[str], call: Call, *,
                                     keep_text: bool) -> JudgeRecord:
    """The judge's record of a dialogue, with the release's reading of the same judgement (the
    judge's last call is its scoring request; an earlier one writes the caption)."""
    seen: list[str] = []

    async def keeping(target: Target, conversation: Conversation,
                      params: GenParams) -> tuple[Reply, bool]:
        reply, was_cached = await call(target, conversation, params)
        seen.append(reply.text)
        return reply, was_cached

    judged = await judge.score(case, replies, keeping)
    raw = seen[-1] if seen else ""
    release = release_judge(raw) if seen else None
    return judged.model_copy(update={"release": release_reading(
        "judge", raw, None if judged.score is None else str(judged.score),
        None if release is None else str(release), example=keep_text)})
