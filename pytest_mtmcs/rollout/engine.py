"""Asynchronous rollout: dialogues rolled out concurrently while pytest runs items.

pytest runs items one at a time, but model servers want many requests in flight. The engine
runs an asyncio loop in a background thread with `concurrency` workers; each worker takes the
next dialogue (collection order, or a dialogue an item is waiting for, first), rolls out its
three turns, has the judge score it (with `--mtmcs-judge`), then asks its intent questions. So
at most `concurrency` requests are in flight per model (target and judge), and each item waits
only for its own result (a `concurrent.futures.Future`).

This module schedules and runs the jobs. Every call goes through the store first (calls.py);
what a job carries and the records made from it are in jobs.py; what the store already holds
is read by resume.py; xdist row claims are in claims.py.

When the engine stops for any reason other than `stop()` (a store that cannot be written, an
exception in a worker's loop or in the heartbeat: a bug), every open future is settled at once
with `EngineStopped` naming the cause, and `finished` is set when its thread ends, so an item
never waits on a dead engine. Store writes go through one writer thread (writer.py), never on
the event loop.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

from pytest_mtmcs.chat import Conversation, GenParams, Reply
from pytest_mtmcs.dataset import Case, Question
from pytest_mtmcs.errors import DataError, OutageError
from pytest_mtmcs.guardrails.base import GuardedTarget
from pytest_mtmcs.rollout.calls import CallCache
from pytest_mtmcs.rollout.claims import RowClaims
from pytest_mtmcs.rollout.jobs import (
    DialogueFailed,
    EngineStopped,
    Job,
    Recorder,
    check_image,
    job_key,
    judge_with_release_reading,
    question_params,
    refusal_verdicts,
    settle,
    stored_answer_key,
    stored_rollout_key,
)
from pytest_mtmcs.rollout.lifecycle import EngineLoop
from pytest_mtmcs.rollout.progress import CacheMode, Progress
from pytest_mtmcs.rollout.protocol import question_request, turn_request
from pytest_mtmcs.rollout.resume import load_stored
from pytest_mtmcs.rollout.store import Store
from pytest_mtmcs.rollout.store_errors import StoreError
from pytest_mtmcs.rollout.workqueue import WorkQueue
from pytest_mtmcs.scoring.judge import Judge
from pytest_mtmcs.scoring.prompts import DEFAULT_PROMPTS, PromptTemplates
from pytest_mtmcs.scoring.records import DialogueRecord, JudgeRecord, QuestionRecord
from pytest_mtmcs.scoring.refusal import DETECTOR_VERSION, RefusalVerdict
from pytest_mtmcs.scoring.verdicts import DEFAULT_PASS_SCORE
from pytest_mtmcs.targets.base import Target

__all__ = ["DialogueFailed", "Engine", "EngineStopped", "check_image", "job_key"]


class Engine(EngineLoop):
    """Rolls out cases against a target; results are futures keyed by dialogue/question id."""

    def __init__(self, target: Target, store: Store, *, params: GenParams, concurrency: int,
                 keep_text: bool = False, prefetch: bool = True, judge: Judge | None = None,
                 pass_score: int = DEFAULT_PASS_SCORE,
                 stacks: dict[str, GuardedTarget] | None = None,
                 queue: WorkQueue | None = None, beat_s: float = 5.0,
                 prompts: PromptTemplates = DEFAULT_PROMPTS, cache: CacheMode = "use",
                 run: str | None = None) -> None:
        self.target = target
        self.cache: CacheMode = cache
        """How the store's answers are used (--mtmcs-refresh, --mtmcs-no-cache; calls.py)."""
        self.run = run
        """This run's id, on every answer it stores (xdist workers of one run share it)."""
        self.prompts = prompts
        """The templates of the intent questions and the caption prefix (`--mtmcs-prompts`)."""
        self.queue = queue
        """Row claims shared with other xdist workers (None in a single process)."""
        self._claims = RowClaims(queue) if queue is not None else None
        self.judge = judge
        self.pass_score = pass_score
        self.stacks: dict[str, Target] = {"none": target, **(stacks or {})}
        """Guardrail name -> what answers its calls (the bare target for `none`)."""
        self.store = store
        self.params = params
        self.concurrency = max(1, concurrency)
        self.worker_slots = self.concurrency
        self.keep_text = keep_text
        self.prefetch = prefetch
        """Roll out queued cases ahead of the items; when False, only cases items ask for."""
        self.progress = Progress(mode=cache, run=run)
        self.outage: OutageError | None = None
        """Set once a model server's outage circuit opened: the run should stop."""
        super().__init__()
        self.beat_s = beat_s
        """Seconds between heartbeats (claims of calls in flight, xdist row claims)."""
        self._calls = CallCache(store, self.progress, concurrency=self.concurrency, target=target,
                                judge_target=judge.target if judge is not None else None,
                                writer=self._writer, on_store_error=self._die, mode=cache,
                                run=run)
        self._records = Recorder(target.spec, keep_text, pass_score)
        self._jobs: dict[str, Job] = {}
        self._heap: list[tuple[int, int, str]] = []
        self._seq = itertools.count()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ scheduling (any thread)
    def add(self, case: Case, *, use_caption: bool = False, questions: set[str] | None = None,
            replies: list[str] | None = None, answers: dict[str, str] | None = None,
            guardrail: str = "none") -> None:
        """Queue a case (call before `start`, in the order items will run).

        `questions`: the suffixes of the questions to ask (default: all of the case's).
        `replies`/`answers`: a transcript made elsewhere, to score instead of rolling out; its
        questions are read from `answers` (suffix -> answer text) instead of being asked.
        """
        job = Job(case, use_caption, guardrail)
        if replies is not None:
            job.replies = [Reply(text=r) for r in replies]
            job.answers = answers or {}
            job.given = True
        for q in case.questions:
            if questions is None or q.suffix in questions:
                job.questions[q.suffix] = Future()
        key = job_key(case.id, guardrail)
        self._jobs[key] = job
        if self._claims is not None:
            self._claims.add(job.unit, key)
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

    def _next_job(self) -> Job | None:
        """The next job to roll out: asked-for first (priority 0), then the rest of a row this
        worker holds (1), then collection order (2). Under xdist, a job whose row another
        worker holds is skipped until an item asks for it, then followed."""
        with self._lock:
            while self._heap:
                prio, _, cid = heapq.heappop(self._heap)
                job = self._jobs[cid]
                if job.started:
                    continue
                if self._claims is not None and not job.given and not self._holds(job.unit):
                    if prio > 0:
                        continue  # another worker's row: only followed when an item needs it
                    job.follow = True
                job.started = True
                return job
            return None

    def _holds(self, unit: str) -> bool:
        """Whether this worker holds `unit`, claiming it on first sight (under `_lock`)."""
        assert self._claims is not None
        mine, row = self._claims.holds(unit, lambda k: self._jobs[k].started)
        for k in row:  # roll the row's other dialogues next, sharing their calls
            heapq.heappush(self._heap, (1, next(self._seq), k))
        return mine

    async def _job_done(self, job: Job) -> None:
        """A job of a held row finished: mark the row done once all of its jobs have."""
        claims = self._claims
        if claims is None or job.follow or not claims.is_held(job.unit):
            return
        with self._lock:
            finished = claims.job_done(job.unit)
        if finished:
            await self._writer.run(claims.row_done, job.unit)

    def _open_futures(self) -> Iterator[Future[Any]]:
        for job in self._jobs.values():
            yield job.dialogue
            yield from job.questions.values()

    def _halt(self, exc: BaseException) -> None:
        self._calls.halted = exc
        self._clear_queue()

    def _clear_queue(self) -> None:
        with self._lock:
            self._heap.clear()

    async def _close(self) -> None:
        """Release the models and this process's claims on calls (best effort: the engine may
        be stopping because the store failed)."""
        for closing in [stack.aclose for stack in self.stacks.values()] + (
                [self.judge.target.aclose] if self.judge is not None else []):
            try:
                await closing()  # a guarded stack closes its guardrail, not the target
            except Exception as exc:
                if self.failure is None:
                    self.failure = exc
        try:
            await self._writer.run(self.store.release_all)
        except StoreError:
            pass

    async def _beat(self) -> None:
        """Say this process is alive: its claims on calls in flight, its xdist rows."""
        while not self._stopping:
            await self._calls.beat()
            if self.queue is not None:
                await self._writer.run(self.queue.beat)
            await asyncio.sleep(self.beat_s)

    async def _worker(self) -> None:
        assert self._wakeup is not None
        while not self._stopping:
            self._wakeup.clear()  # no await until wait(): a bump in between is never lost
            job = self._next_job()
            if job is None:
                await self._wakeup.wait()
                continue
            await self._roll(job)

    async def _call(self, job: Job, conversation: Conversation,
                    params: GenParams) -> tuple[Reply, bool]:
        """One call of the system under test: the job's guardrail stack (see `call`)."""
        return await self.call(self.stacks[job.stack], conversation, params)

    async def call(self, target: Target, conversation: Conversation,
                   params: GenParams) -> tuple[Reply, bool]:
        """One call through the store, at most `concurrency` in flight per target. Identical
        requests are made once: a request already in flight is awaited, not repeated (Type A
        safe/unsafe share R1 and R2; the two multimodal dialogues of a row share its caption)."""
        return await self._calls.call(target, conversation, params)

    def rollout_key(self, job: Job) -> str:
        """Content address of a whole dialogue's rollout (its replies depend on nothing else)."""
        identity = self.stacks[job.stack].cache_identity()
        if job.use_caption:  # the caption reaches the target through the caption prefix
            identity += self.prompts.caption_identity()
        return stored_rollout_key(job, identity, self.params)

    def resolve_cached(self) -> int:
        """Before the loop starts: answer every dialogue whose rollout is already in the store
        with one bulk read, so a cache-warm re-run costs a lookup, not three calls, per dialogue.
        Returns how many were resolved (none with --mtmcs-no-cache; with --mtmcs-refresh, only
        what this run stored: another xdist worker of it)."""
        if self.cache == "off":
            return 0
        found = load_stored(self._jobs.values(), self.store, self.rollout_key, self.params,
                            self.prompts,
                            fresh_for=self.run if self.cache == "refresh" else None)
        for job in found:
            assert job.replies is not None and job.stored_at is not None
            self.progress.note_stored(*job.stored_at, n=len(job.replies))
            if self.judge is None:  # otherwise a worker asks the judge (or its stored answer)
                # nothing left to do unless questions are still to be asked
                job.started = all(s in job.stored_answers for s in job.questions)
                if job.started:  # every answer stored: settle the questions here
                    for q in job.case.questions:
                        if q.suffix in job.questions:
                            self.progress.note_stored(*job.stored_answers_at[q.suffix])
                            self._settle_answer(job, q, job.stored_answers[q.suffix], True)
                self._finish_dialogue(job, job.replies, [True] * len(job.replies), job.verdicts)
        return len(found)

    async def _roll(self, job: Job) -> None:
        if job.follow:
            assert self.queue is not None and self._claims is not None
            if not await self.queue.wait(job.unit):  # its holder died: this worker rolls it
                job.follow = False
                with self._lock:
                    self._claims.took_over(job.unit)
        try:
            await self._roll_job(job)
        finally:
            await self._job_done(job)

    async def _roll_job(self, job: Job) -> None:
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
                                           use_caption=job.use_caption, prompts=self.prompts)
                    reply, was_cached = await self._call(job, request, self.params)
                    replies.append(reply)
                    cached.append(was_cached)
                verdicts = refusal_verdicts(case, replies)
                rollout = self.rollout_key(job)
                if self.cache != "off":
                    await self._write(self.store.put_dialogue, rollout, replies,
                                      [v.model_dump() for v in verdicts], DETECTOR_VERSION,
                                      self.run)
            except StoreError:
                raise  # the store failed: the whole engine stops (see _die)
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

    async def _complete(self, job: Job, cached: list[bool]) -> None:
        """Judge a dialogue whose replies are known (with a judge), then resolve its record.
        A judge that fails errors the dialogue item only; its questions are still asked."""
        assert job.replies is not None
        judged: JudgeRecord | None = None
        if self.judge is not None:
            try:
                judged = await judge_with_release_reading(
                    self.judge, job.case, [r.text for r in job.replies], self.call,
                    keep_text=self.keep_text)
            except StoreError:
                raise
            except Exception as exc:  # TargetError (judge down), DataError (no caption)
                self.progress.errors += 1
                settle(job.dialogue, self._records.unjudged(
                    job, job.replies, cached, job.verdicts, self.judge.target.spec, exc))
                self._count_done()
                return
        self._finish_dialogue(job, job.replies, cached, job.verdicts, judged)

    def _finish_dialogue(self, job: Job, replies: list[Reply], cached: list[bool],
                         verdicts: list[RefusalVerdict] | None = None,
                         judged: JudgeRecord | None = None) -> None:
        """Resolve the dialogue's future with its record (verdicts computed unless given)."""
        settle(job.dialogue, self._records.dialogue(job, replies, cached, verdicts, judged))
        self._count_done()

    async def _ask(self, job: Job, q: Question, replies: list[str], rollout: str | None) -> None:
        """Ask one intent question (or take its stored or given answer); `rollout`: the
        dialogue's rollout key, under which the answer is stored (None: replies given up
        front, nothing is stored)."""
        if job.answers is not None:
            text, was_cached = job.answers.get(q.suffix, ""), False
        elif q.suffix in job.stored_answers:
            text, was_cached = job.stored_answers[q.suffix], True
            self.progress.note_stored(*job.stored_answers_at[q.suffix])
        else:
            try:
                reply, was_cached = await self._call(
                    job, question_request(job.case, q, replies, use_caption=job.use_caption,
                                          prompts=self.prompts),
                    question_params(q, self.params))
                if rollout is not None and self.cache != "off":
                    await self._write(self.store.put_answer,
                                      stored_answer_key(job, q, replies, rollout, self.params,
                                                        self.prompts),
                                      reply.text, self.run)
            except StoreError:
                raise
            except Exception as exc:
                # The error itself, not a record: its kind (a model server that failed, bad
                # data) decides the exit code exactly as a dialogue's does.
                self.progress.errors += 1
                settle(job.questions[q.suffix], error=exc)
                return
            text = reply.text
        self._settle_answer(job, q, text, was_cached)

    def _settle_answer(self, job: Job, q: Question, text: str, was_cached: bool) -> None:
        """Parse a question's answer and resolve its future with the record."""
        settle(job.questions[q.suffix], self._records.question(job, q, text, was_cached))

    def _count_done(self) -> None:
        self.progress.done += 1
        if self.progress.done >= self.progress.total:
            self.progress.finished = time.monotonic()

    def _fail(self, job: Job, exc: BaseException) -> None:
        if isinstance(exc, OutageError):
            self.outage = exc
        self.progress.errors += 1
        self._count_done()
        settle(job.dialogue, error=exc)
        for fut in job.questions.values():
            err = DialogueFailed(f"its dialogue {job.case.id} errored: {exc}")
            err.__cause__ = exc
            settle(fut, error=err)
