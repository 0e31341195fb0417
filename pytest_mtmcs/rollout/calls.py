"""Model calls through the store: replayed when cached, made once when asked twice, bounded.

Every call of a run (target, guardrail stack, guardrail helper, judge) goes through one
`CallCache`: a reply already in the store is replayed; a request already in flight is awaited
rather than repeated (single flight: Type A's safe and unsafe dialogues share R1 and R2, a row's
two multimodal dialogues share its caption); a new reply is committed the moment it arrives. At
most `concurrency` calls are in flight per target identity.
"""

from __future__ import annotations

import asyncio

from pytest_mtmcs.chat import Conversation, GenParams, Reply
from pytest_mtmcs.guardrails.base import GuardedTarget
from pytest_mtmcs.rollout.progress import Progress
from pytest_mtmcs.rollout.store import Store, call_key
from pytest_mtmcs.targets.base import Target

__all__ = ["CallCache"]


class CallCache:
    """The store-backed calls of one engine. Used from the engine's event loop only.

    `target` and `judge_target` tell which counter of `progress` a new call adds to: target
    calls, judge calls, or guardrail helper calls (a guarded stack's own reply is no model call
    itself: its target and helpers are counted as they are called).
    """

    def __init__(self, store: Store, progress: Progress, *, concurrency: int, target: Target,
                 judge_target: Target | None = None) -> None:
        self.store = store
        self.progress = progress
        self.concurrency = max(1, concurrency)
        self.target = target
        self.judge_target = judge_target
        self._inflight: dict[str, asyncio.Future[Reply]] = {}
        """call key -> the reply of the request in flight under that key."""
        self._slots: dict[str, asyncio.Semaphore] = {}
        """target identity -> its request slots."""

    async def call(self, target: Target, conversation: Conversation,
                   params: GenParams) -> tuple[Reply, bool]:
        """One call through the store, at most `concurrency` in flight per target; returns the
        reply and whether it was cached (or shared with an identical request in flight)."""
        identity = target.cache_identity()
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
        self._count(target)
        return reply, False

    def _count(self, target: Target) -> None:
        """Count a new (uncached) call under its role."""
        if target is self.target:
            self.progress.calls += 1
        elif self.judge_target is not None and target is self.judge_target:
            self.progress.judge_calls += 1
        elif not isinstance(target, GuardedTarget):  # a stack's reply is no model call itself
            self.progress.helper_calls += 1
