"""Asynchronous rollout: dialogues rolled out concurrently while pytest runs items.

pytest runs items one at a time, but model servers want many requests in flight. The engine
runs an asyncio loop in a background thread with `concurrency` workers; each worker takes the
next dialogue (collection order, or a dialogue an item is waiting for, first), rolls out its
three turns, has the judge score it (with `--mtmcs-judge`), then asks its intent questions. So
at most `concurrency` requests are in flight per model (target and judge), and each item waits
only for its own result (a `concurrent.futures.Future`).

Every call goes through the store first: a cached reply is replayed, a new one is committed
the moment it arrives.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
import time
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any

from pytest_mtmcs.bench import Case, Question
from pytest_mtmcs.chat import Conversation, GenParams, Reply, sniff_mime
from pytest_mtmcs.errors import DataError, MtmcsError, OutageError
from pytest_mtmcs.guardrails.base import GuardedTarget
from pytest_mtmcs.judge.llm import Judge
from pytest_mtmcs.judge.refusal import DETECTOR_VERSION, RefusalVerdict, detect_refusal
from pytest_mtmcs.judge.verdicts import (
    DEFAULT_PASS_SCORE,
    dialogue_verdict,
    parse_answer,
    question_verdict,
)
from pytest_mtmcs.progress import Progress
from pytest_mtmcs.records import DialogueRecord, JudgeRecord, QuestionRecord, TurnRecord
from pytest_mtmcs.rollout import (
    MCQ_MAX_TOKENS,
    TF_MAX_TOKENS,
    question_prompt,
    question_request,
    turn_request,
)
from pytest_mtmcs.store import Store, answer_key, call_key, dialogue_key
from pytest_mtmcs.targets.base import Target
from pytest_mtmcs.workqueue import WorkQueue


def job_key(case_id: str, guardrail: str = "none") -> str:
    """The engine's key of one dialogue under one guardrail stack."""
    return case_id if guardrail == "none" else f"{guardrail}/{case_id}"


@dataclass
class _Job:
    case: Case
    use_caption: bool
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
    given: bool = False
    """The replies were given up front, not rolled out (nothing is written to the store)."""
    follow: bool = False
    """Another xdist worker holds this job's row: wait for it, then read the store."""

    @property
    def unit(self) -> str:
        """The work-queue unit: the row (its dialogues share calls across safety, modality and
        guardrail stack)."""
        return f"{self.case.split}/{self.case.row_id}"


def _settle(fut: Future[Any], result: Any = None, error: BaseException | None = None) -> None:
    """Resolve a future unless `stop()` already failed it (a rollout finishing after the run
    stopped waiting for it)."""
    try:
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(result)
    except InvalidStateError:  # already resolved by the other thread
        pass


class DialogueFailed(MtmcsError):
    """A question could not be asked because its dialogue's rollout failed."""


def check_image(case: Case) -> None:
    """Raise DataError (file, row, field) when the case's image cannot be read or decoded."""
    assert case.image is not None
    try:
        sniff_mime(case.image.load_bytes())
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"cannot read the image ({exc}); expected PNG, JPEG, GIF or WebP bytes",
                        file=case.source, row=case.row_id, field="image") from exc


class Engine:
    """Rolls out cases against a target; results are futures keyed by dialogue/question id."""

    def __init__(self, target: Target, store: Store, *, params: GenParams, concurrency: int,
                 keep_text: bool = False, prefetch: bool = True, judge: Judge | None = None,
                 pass_score: int = DEFAULT_PASS_SCORE,
                 stacks: dict[str, GuardedTarget] | None = None,
                 queue: WorkQueue | None = None) -> None:
        self.target = target
        self.queue = queue
        """Row claims shared with other xdist workers (None in a single process)."""
        self._units: dict[str, list[str]] = {}
        self._unit_owner: dict[str, bool] = {}
        """unit -> whether this worker holds it (absent: not asked yet)."""
        self._unit_left: dict[str, int] = {}
        self.judge = judge
        self.pass_score = pass_score
        self.stacks: dict[str, Target] = {"none": target, **(stacks or {})}
        """Guardrail name -> what answers its calls (the bare target for `none`)."""
        self.store = store
        self.params = params
        self.concurrency = max(1, concurrency)
        self.keep_text = keep_text
        self.prefetch = prefetch
        """Roll out queued cases ahead of the items; when False, only cases items ask for."""
        self.progress = Progress()
        self._jobs: dict[str, _Job] = {}
        self._heap: list[tuple[int, int, str]] = []
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._stopping = False
        self._inflight: dict[str, asyncio.Future[Reply]] = {}
        self.outage: OutageError | None = None
        """Set once a model server's outage circuit opened: the run should stop."""
        self._slots: dict[str, asyncio.Semaphore] = {}

    # ------------------------------------------------------------------ scheduling (any thread)
    def add(self, case: Case, *, use_caption: bool = False, questions: set[str] | None = None,
            replies: list[str] | None = None, answers: dict[str, str] | None = None,
            guardrail: str = "none") -> None:
        """Queue a case (call before `start`, in the order items will run).

        `questions`: the suffixes of the questions to ask (default: all of the case's).
        `replies`/`answers`: a transcript made elsewhere, to score instead of rolling out; its
        questions are read from `answers` (suffix -> answer text) instead of being asked.
        """
        job = _Job(case, use_caption, guardrail)
        if replies is not None:
            job.replies = [Reply(text=r) for r in replies]
            job.answers = answers or {}
            job.given = True
        for q in case.questions:
            if questions is None or q.suffix in questions:
                job.questions[q.suffix] = Future()
        key = job_key(case.id, guardrail)
        self._jobs[key] = job
        self._units.setdefault(job.unit, []).append(key)
        if self.prefetch:
            heapq.heappush(self._heap, (2, next(self._seq), key))
        self.progress.total += 1

    def start(self) -> None:
        """Start the background loop (idempotent)."""
        for stack in self.stacks.values():
            if isinstance(stack, GuardedTarget):
                stack.bind(self.call)
        if self._thread is None:
            self.progress.started = time.monotonic()
            self.resolve_cached()
            self._thread = threading.Thread(target=self._run, name="mtmcs-engine", daemon=True)
            self._thread.start()

    def dialogue(self, case_id: str, guardrail: str = "none") -> Future[DialogueRecord]:
        """The future of a dialogue's record; asking for it moves it to the front of the queue."""
        key = job_key(case_id, guardrail)
        self._bump(key)
        return self._jobs[key].dialogue

    def question(self, case_id: str, suffix: str, guardrail: str = "none") -> Future[QuestionRecord]:
        """The future of one question's record."""
        key = job_key(case_id, guardrail)
        self._bump(key)
        return self._jobs[key].questions[suffix]

    def _bump(self, key: str) -> None:
        with self._lock:
            job = self._jobs[key]
            if job.started:
                return
            heapq.heappush(self._heap, (0, next(self._seq), key))
        self._wake()

    def _wake(self) -> None:
        loop, event = self._loop, self._wakeup
        if loop is not None and event is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # the loop closed in between
                pass

    def _next_job(self) -> _Job | None:
        """The next job to roll out: asked-for first (priority 0), then the rest of a row this
        worker holds (1), then collection order (2). Under xdist, a job whose row another
        worker holds is skipped until an item asks for it, then followed."""
        with self._lock:
            while self._heap:
                prio, _, cid = heapq.heappop(self._heap)
                job = self._jobs[cid]
                if job.started:
                    continue
                if self.queue is not None and not job.given and not self._holds(job.unit):
                    if prio > 0:
                        continue  # another worker's row: only followed when an item needs it
                    job.follow = True
                job.started = True
                return job
            return None

    def _holds(self, unit: str) -> bool:
        """Whether this worker holds `unit`, claiming it on first sight (under `_lock`)."""
        mine = self._unit_owner.get(unit)
        if mine is None:
            assert self.queue is not None
            mine = self._unit_owner[unit] = self.queue.claim(unit)
            if mine:
                keys = self._units.get(unit, [])
                self._unit_left[unit] = sum(not self._jobs[k].started for k in keys)
                for k in keys:  # roll the row's other dialogues next, sharing their calls
                    heapq.heappush(self._heap, (1, next(self._seq), k))
        return mine

    def _job_done(self, job: _Job) -> None:
        """A job of a held row finished: mark the row done once all of its jobs have."""
        if self.queue is None or job.follow or not self._unit_owner.get(job.unit):
            return
        with self._lock:
            self._unit_left[job.unit] -= 1
            finished = self._unit_left[job.unit] <= 0
        if finished:
            self.queue.done(job.unit)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the calls in flight; unfinished futures get an error."""
        self._stopping = True
        with self._lock:
            self._heap.clear()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout)
        for job in self._jobs.values():
            futures: list[Future[Any]] = [job.dialogue, *job.questions.values()]
            for fut in futures:
                _settle(fut, error=MtmcsError("the run stopped before this dialogue was rolled out"))

    # ------------------------------------------------------------------ the loop (engine thread)
    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._wakeup = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        try:
            # Four times as many workers as request slots: a worker waiting for a request that
            # another dialogue already has in flight (Type A's shared R1/R2) holds no slot, and
            # neither does one waiting for another xdist worker's row (measured: 2x left slots
            # idle, 37.2 s against 42.6 s for 2,304 calls at concurrency 16).
            beat = asyncio.create_task(self._beat()) if self.queue is not None else None
            await asyncio.gather(*(self._worker() for _ in range(4 * self.concurrency)))
            if beat is not None:
                beat.cancel()
        finally:
            for stack in self.stacks.values():
                await stack.aclose()  # a guarded stack closes its guardrail, not the target
            if self.judge is not None:
                await self.judge.target.aclose()

    async def _beat(self) -> None:
        assert self.queue is not None
        while not self._stopping:
            await asyncio.sleep(5.0)
            self.queue.beat()

    async def _worker(self) -> None:
        assert self._wakeup is not None
        while not self._stopping:
            self._wakeup.clear()  # no await until wait(): a bump in between is never lost
            job = self._next_job()
            if job is None:
                await self._wakeup.wait()
                continue
            await self._roll(job)

    async def _call(self, job: _Job, conversation: Conversation,
                    params: GenParams) -> tuple[Reply, bool]:
        """One call of the system under test: the job's guardrail stack (see `call`)."""
        return await self.call(self.stacks[job.stack], conversation, params)

    async def call(self, target: Target, conversation: Conversation,
                   params: GenParams) -> tuple[Reply, bool]:
        """One call through the store, at most `concurrency` in flight per target. Identical
        requests are made once: a request already in flight is awaited, not repeated (Type A
        safe/unsafe share R1 and R2; the two multimodal dialogues of a row share its caption)."""
        identity = target.identity()
        key = call_key(identity, conversation, params)
        cached = self.store.get(key)
        if cached is not None:
            self.progress.cached += 1
            return cached, True
        pending = self._inflight.get(key)
        if pending is not None:
            reply = await asyncio.shield(pending)
            self.progress.cached += 1
            return reply, True
        fut: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        slots = self._slots.get(identity)
        if slots is None:
            slots = self._slots[identity] = asyncio.Semaphore(self.concurrency)
        try:
            async with slots:
                reply = await target.respond(conversation, params)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: waiters re-raise it, nobody else must
            raise
        finally:
            del self._inflight[key]
        self.store.put(key, identity, reply)
        fut.set_result(reply)
        if target is self.target:
            self.progress.calls += 1
        elif self.judge is not None and target is self.judge.target:
            self.progress.judge_calls += 1
        elif not isinstance(target, GuardedTarget):  # a stack's reply is no model call itself
            self.progress.helper_calls += 1
        return reply, False

    def rollout_key(self, job: _Job) -> str:
        """Content address of a whole dialogue's rollout (its replies depend on nothing else)."""
        case = job.case
        seen = (case.caption or "") if job.use_caption else (
            case.image.digest() if case.image is not None else "")
        return dialogue_key(self.stacks[job.stack].identity(), case.modality, case.turns, seen,
                            self.params)

    def resolve_cached(self) -> int:
        """Before the loop starts: answer every dialogue whose rollout is already in the store
        with one bulk read, so a cache-warm re-run costs a lookup, not three calls, per dialogue.
        Returns how many were resolved."""
        keys: dict[str, _Job] = {}
        for job in self._jobs.values():
            if job.given:
                continue
            try:
                keys[self.rollout_key(job)] = job
            except (OSError, ValueError, KeyError):
                continue  # an unreadable image: the rollout reports it on the item
        found = self.store.get_dialogues(list(keys), DETECTOR_VERSION)
        asked: dict[str, list[tuple[_Job, str]]] = {}  # two questions may share a prompt
        for key, (replies, verdicts) in found.items():
            job = keys[key]
            job.replies = replies
            self.progress.cached += len(replies)
            if verdicts:
                job.verdicts = [RefusalVerdict.model_construct(**v) for v in verdicts]
            texts = [r.text for r in replies]
            for q in job.case.questions:
                if q.suffix in job.questions:
                    akey = self._answer_key(job, q, texts, key)
                    asked.setdefault(akey, []).append((job, q.suffix))
        for akey, answer in self.store.get_answers(list(asked)).items():
            for job, suffix in asked[akey]:
                job.stored_answers[suffix] = answer
        for key in found:
            job = keys[key]
            if self.judge is None:  # otherwise a worker asks the judge (or its stored answer)
                # nothing left to do unless questions are still to be asked
                job.started = all(s in job.stored_answers for s in job.questions)
                if job.started:  # every answer stored: settle the questions here
                    for q in job.case.questions:
                        if q.suffix in job.questions:
                            self.progress.cached += 1
                            self._settle_answer(job, q, job.stored_answers[q.suffix], True)
                self._finish_dialogue(job, found[key][0], [True] * len(found[key][0]),
                                      job.verdicts)
        return len(found)

    def _answer_key(self, job: _Job, q: Question, replies: list[str], rollout: str) -> str:
        """The store's key of a question's answer (see `store.answer_key`)."""
        return answer_key(rollout, question_prompt(job.case, q, replies), self._question_params(q))

    def _question_params(self, q: Question) -> GenParams:
        return GenParams(temperature=self.params.temperature,
                         max_tokens=MCQ_MAX_TOKENS if q.kind == "mcq" else TF_MAX_TOKENS)

    async def _roll(self, job: _Job) -> None:
        if job.follow:
            assert self.queue is not None
            if not await self.queue.wait(job.unit):  # its holder died: this worker rolls it
                job.follow = False
                with self._lock:
                    self._unit_owner[job.unit] = True
                    self._unit_left[job.unit] = 1
        try:
            await self._roll_job(job)
        finally:
            self._job_done(job)

    async def _roll_job(self, job: _Job) -> None:
        case = job.case
        rollout: str | None = None  # the dialogue's rollout key, computed once for all its keys
        if job.replies is None:
            replies: list[Reply] = []
            cached: list[bool] = []
            try:
                if case.image is not None and not job.use_caption:
                    check_image(case)
                if job.use_caption and not case.caption:
                    raise DataError("no caption for this row, and the text-only target reads the "
                                    "caption in place of the image: add it to the captions file "
                                    "(--mtmcs-captions)", file=case.source, row=case.row_id,
                                    field="caption")
                for t in range(3):
                    request = turn_request(case, t, [r.text for r in replies],
                                           use_caption=job.use_caption)
                    reply, was_cached = await self._call(job, request, self.params)
                    replies.append(reply)
                    cached.append(was_cached)
                verdicts = [detect_refusal(r.text) for r in replies]
                rollout = self.rollout_key(job)
                self.store.put_dialogue(rollout, replies,
                                        [v.model_dump() for v in verdicts], DETECTOR_VERSION)
            except Exception as exc:  # TargetError, DataError, or a bug: surfaced on the item
                self._fail(job, exc)
                return
            job.replies = replies
            job.verdicts = verdicts
            await self._complete(job, cached)
        elif not job.dialogue.done():  # stored or given replies, still to be judged
            await self._complete(job, [not job.given] * len(job.replies))
        texts = [r.text for r in job.replies]
        if rollout is None and not job.given:
            rollout = self.rollout_key(job)  # readable: the replies were rolled out or stored
        # A dialogue's questions are independent of one another: ask them together.
        await asyncio.gather(*(self._ask(job, q, texts, rollout) for q in case.questions
                               if q.suffix in job.questions))

    async def _complete(self, job: _Job, cached: list[bool]) -> None:
        """Judge a dialogue whose replies are known (with a judge), then resolve its record.
        A judge that fails errors the dialogue item only; its questions are still asked."""
        assert job.replies is not None
        judged: JudgeRecord | None = None
        if self.judge is not None:
            try:
                judged = await self.judge.score(job.case, [r.text for r in job.replies], self.call)
            except Exception as exc:  # TargetError (judge down), DataError (no caption)
                self.progress.errors += 1
                self._count_done()
                _settle(job.dialogue, error=exc)
                return
        self._finish_dialogue(job, job.replies, cached, job.verdicts, judged)

    def _finish_dialogue(self, job: _Job, replies: list[Reply], cached: list[bool],
                         verdicts: list[RefusalVerdict] | None = None,
                         judged: JudgeRecord | None = None) -> None:
        """Resolve the dialogue's future with its record (verdicts computed unless given)."""
        case = job.case
        turns = []
        if verdicts is None:
            verdicts = [detect_refusal(r.text) for r in replies]
        for t, (reply, was_cached, found) in enumerate(zip(replies, cached, verdicts, strict=True)):
            turns.append(TurnRecord(
                user=case.turns[t] if self.keep_text else None,
                reply=reply.text if self.keep_text else None,
                refused=found.refused or reply.blocked_by is not None,
                refusal_kind=found.kind, blocked_by=reply.blocked_by,
                block_reason=reply.block_reason, guard_calls=reply.guard_calls,
                guard_tokens=reply.guard_tokens, guard_latency_s=reply.guard_latency_s,
                cached=was_cached, latency_s=0.0 if was_cached else reply.latency_s,
                completion_tokens=reply.completion_tokens,
            ))
        tor = next((i + 1 for i, t in enumerate(turns) if t.refused), None)
        verdict, reason = dialogue_verdict(case.safety, tor, judged, self.pass_score)
        _settle(job.dialogue, DialogueRecord(
            id=case.id, split=case.split, row_id=case.row_id, modality=case.modality,
            safety=case.safety, target=self.target.spec, guardrail=job.stack,
            turns=tuple(turns), turn_of_refusal=tor, verdict=verdict,
            reason=reason, calls=0 if job.given else sum(not c for c in cached),
            cached_calls=0 if job.given else sum(cached), captioned=job.use_caption, judge=judged,
        ))
        self._count_done()

    async def _ask(self, job: _Job, q: Question, replies: list[str], rollout: str | None) -> None:
        """Ask one intent question (or take its stored or given answer); `rollout`: the
        dialogue's rollout key, under which the answer is stored (None: replies given up
        front, nothing is stored)."""
        case = job.case
        if job.answers is not None:
            text, was_cached = job.answers.get(q.suffix, ""), False
        elif q.suffix in job.stored_answers:
            text, was_cached = job.stored_answers[q.suffix], True
            self.progress.cached += 1
        else:
            try:
                reply, was_cached = await self._call(
                    job, question_request(case, q, replies, use_caption=job.use_caption),
                    self._question_params(q))
                if rollout is not None:
                    self.store.put_answer(self._answer_key(job, q, replies, rollout), reply.text)
            except Exception as exc:
                _settle(job.questions[q.suffix], QuestionRecord(
                    **self._question_base(job, q), verdict="error", reason=str(exc)))
                return
            text = reply.text
        self._settle_answer(job, q, text, was_cached)

    def _question_base(self, job: _Job, q: Question) -> dict[str, Any]:
        case = job.case
        return dict(id=f"{case.id}-{q.suffix}", dialogue_id=case.id, split=case.split,
                    row_id=case.row_id, modality=case.modality, safety=case.safety,
                    target=self.target.spec, guardrail=job.stack, kind=q.kind,
                    question_type=q.question_type, expected=q.answer)

    def _settle_answer(self, job: _Job, q: Question, text: str, was_cached: bool) -> None:
        """Parse a question's answer and resolve its future with the record."""
        parsed = parse_answer(q, text)
        verdict, reason = question_verdict(q, parsed)
        _settle(job.questions[q.suffix], QuestionRecord(
            **self._question_base(job, q), answer=text if self.keep_text else None,
            parsed=parsed, correct=verdict == "pass", verdict=verdict, reason=reason,
            cached=was_cached,
        ))

    def _count_done(self) -> None:
        self.progress.done += 1
        if self.progress.done >= self.progress.total:
            self.progress.finished = time.monotonic()

    def _fail(self, job: _Job, exc: BaseException) -> None:
        if isinstance(exc, OutageError):
            self.outage = exc
        self.progress.errors += 1
        self._count_done()
        _settle(job.dialogue, error=exc)
        for fut in job.questions.values():
            err = DialogueFailed(f"its dialogue {job.case.id} errored: {exc}")
            err.__cause__ = exc
            _settle(fut, error=err)
