"""Model calls through the store: replayed when cached, made once when asked twice, bounded.

Every call of a run (target, guardrail stack, guardrail helper, judge) goes through one
`CallCache`: a reply already in the store is replayed; a request already in flight is awaited
rather than repeated (single flight: Type A's safe and unsafe dialogues share R1 and R2, a row's
two multimodal dialogues share its caption); a new reply is committed the moment it arrives. At
most `concurrency` calls are in flight per target identity.

Single flight holds across processes too (two `pytest --mtmcs` runs on one store, xdist
workers): before a call is made it is claimed in the store (`Store.claim_call`). A process that
finds the call claimed by another live process waits, outside its request slots, for the reply
to appear in the store and reuses it; if the holder dies (its process is gone, or its
heartbeat stops) or gives up (its call failed), the call is claimed again and made here.

How the store's answers are used is the run's `mode` (see progress.CacheMode): `use` replays
them; `refresh` (--mtmcs-refresh) takes only the replies this run (`run`, shared by the xdist
workers of one run) stored, claims every other call as above, makes it once and overwrites the
older reply, so a later plain run reads the new one (two runs refreshing at once each make a
call at most once: a reply another run stored is made again once, never looked for forever);
`off` (--mtmcs-no-cache) neither reads nor writes the store, not even claims (nothing would be
stored to wait for): identical requests are still made once within the process.

Every write goes through the engine's single writer thread (`StoreWriter`), so a slow write
never stalls the event loop. A store that fails is fatal to the engine: `on_store_error` is
told at once, whatever the caller does with the exception, and the future shared by the
callers of that request is settled with it, so nobody waits on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from pytest_mtmcs.chat import Conversation, GenParams, Reply
from pytest_mtmcs.guardrails.base import GuardedTarget
from pytest_mtmcs.rollout.progress import CacheMode, Progress
from pytest_mtmcs.rollout.store import Stamp, Store, call_key
from pytest_mtmcs.rollout.store_errors import StoreError
from pytest_mtmcs.rollout.writer import StoreWriter
from pytest_mtmcs.targets.base import Target

__all__ = ["CallCache"]

POLL_FIRST_S = 0.01
POLL_MAX_S = 0.25
"""How often a call claimed by another process is looked for in the store: from 10 ms,
doubling, up to 250 ms (reads only, on the read connection)."""


class CallCache:
    """The store-backed calls of one engine. Used from the engine's event loop only.

    `target` and `judge_target` tell which counter of `progress` a new call adds to: target
    calls, judge calls, or guardrail helper calls (a guarded stack's own reply is no model call
    itself: its target and helpers are counted as they are called). `stale_after_s`: a claim
    whose holder has not beaten for this long is taken over. `mode`, `run`: how the store's
    answers are used (see the module's docstring), and the run id that marks this run's own.
    """

    def __init__(self, store: Store, progress: Progress, *, concurrency: int, target: Target,
                 judge_target: Target | None = None, writer: StoreWriter | None = None,
                 on_store_error: Callable[[StoreError], None] = lambda exc: None,
                 stale_after_s: float = 60.0, mode: CacheMode = "use",
                 run: str | None = None) -> None:
        self.store = store
        self.mode: CacheMode = mode
        self.fresh_for = run if mode == "refresh" else None
        """Only this run's replies count when refreshing (None: any stored reply)."""
        self.run = run
        self.progress = progress
        self.concurrency = max(1, concurrency)
        self.target = target
        self.judge_target = judge_target
        self.writer = writer if writer is not None else StoreWriter()
        self.on_store_error = on_store_error
        self.stale_after_s = stale_after_s
        self._inflight: dict[str, asyncio.Future[Reply]] = {}
        """call key -> the reply of the request in flight under that key."""
        self._slots: dict[str, asyncio.Semaphore] = {}
        """target identity -> its request slots."""
        self._beaten = False
        self.halted: BaseException | None = None
        """Set by the engine when it stops on its own: no call starts after that."""

    async def beat(self) -> None:
        """Say this process is alive, so other processes wait for the calls it claimed
        (called every few seconds by the engine, and before the first claim)."""
        await self.writer.run(self.store.beat_holder)
        self._beaten = True

    async def call(self, target: Target, conversation: Conversation,
                   params: GenParams) -> tuple[Reply, bool]:
        """One call through the store, at most `concurrency` in flight per target; returns the
        reply and whether it was cached (or shared with an identical request in flight, here
        or in another process)."""
        identity = target.cache_identity()
        key = call_key(identity, conversation, params)
        if self.mode != "off":
            try:
                cached = self.store.get_dated(key, fresh_for=self.fresh_for)
            except StoreError as exc:
                self.on_store_error(exc)
                raise
            if cached is not None:
                self.progress.note_stored(*cached[1])
                return cached[0], True
        pending = self._inflight.get(key)
        if pending is not None:
            reply = await asyncio.shield(pending)
            self.progress.shared += 1
            return reply, True
        fut: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            if self.mode == "off":
                reply, source = await self._unstored(target, identity, conversation, params)
            else:
                reply, source = await self._once(target, identity, key, conversation, params)
        except BaseException as exc:
            if isinstance(exc, StoreError):
                self.on_store_error(exc)
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: waiters re-raise it, nobody else must
            raise
        finally:
            del self._inflight[key]
        fut.set_result(reply)
        if source is None:
            self._count(target)
            return reply, False
        if isinstance(source, str):  # another process's call, in flight when it was asked
            self.progress.shared += 1
        else:
            self.progress.note_stored(*source)
        return reply, True

    def _slots_of(self, identity: str) -> asyncio.Semaphore:
        slots = self._slots.get(identity)
        if slots is None:
            slots = self._slots[identity] = asyncio.Semaphore(self.concurrency)
        return slots

    async def _unstored(self, target: Target, identity: str, conversation: Conversation,
                        params: GenParams) -> tuple[Reply, None]:
        """Make the call without the store (`off`): neither claimed nor stored."""
        async with self._slots_of(identity):
            if self.halted is not None:
                raise self.halted
            return await target.respond(conversation, params), None

    async def _once(self, target: Target, identity: str, key: str, conversation: Conversation,
                    params: GenParams) -> tuple[Reply, Stamp | str | None]:
        """Make the call unless another process has it in flight (then wait for its reply);
        (reply, where it came from: None made here, `shared` another process's call in flight,
        else when and by which run the reply found stored was stored)."""
        slots = self._slots_of(identity)
        if not self._beaten:
            await self.beat()
        while True:
            async with slots:  # claimed only when it can be made at once
                claim = await self.writer.run(self.store.claim_call, key,
                                              stale_after_s=self.stale_after_s,
                                              fresh_for=self.fresh_for)
                if claim == "mine":
                    if self.halted is not None:  # the engine died while this was claimed
                        self.writer.submit(self.store.release_call, key)
                        raise self.halted
                    try:
                        reply = await target.respond(conversation, params)
                    except BaseException:
                        self.writer.submit(self.store.release_call, key)
                        raise
                    await self.writer.run(self.store.put, key, identity, reply, run=self.run)
                    return reply, None
            if claim == "done":
                stored = self.store.get_dated(key, fresh_for=self.fresh_for)
                if stored is not None:
                    return stored
                continue  # replaced since by another run refreshing it: claim it again
            reply_found = await self._wait_elsewhere(key)  # held by another process
            if reply_found is not None:
                return reply_found, "shared"

    async def _wait_elsewhere(self, key: str) -> Reply | None:
        """Wait while another live process holds `key`: its reply once stored, or None when
        the claim was dropped (its call failed) or its holder died, to claim it again."""
        pause = POLL_FIRST_S
        while True:
            reply, held = self.store.call_waiting(key, stale_after_s=self.stale_after_s,
                                                  fresh_for=self.fresh_for)
            if reply is not None or not held:
                return reply
            await asyncio.sleep(pause)
            pause = min(POLL_MAX_S, pause * 2)

    def _count(self, target: Target) -> None:
        """Count a new (uncached) call under its role."""
        if target is self.target:
            self.progress.calls += 1
        elif self.judge_target is not None and target is self.judge_target:
            self.progress.judge_calls += 1
        elif not isinstance(target, GuardedTarget):  # a stack's reply is no model call itself
            self.progress.helper_calls += 1
