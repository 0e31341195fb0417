"""The store-backed call cache: replay, single flight, failures, per-target slots."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pytest_mtmcs.chat import Conversation, GenParams, Reply, user
from pytest_mtmcs.errors import TargetError
from pytest_mtmcs.rollout.calls import CallCache
from pytest_mtmcs.rollout.progress import Progress
from pytest_mtmcs.rollout.store import Store
from pytest_mtmcs.targets.base import Target


class GatedTarget(Target):
    """Answers once `gate` opens; counts calls and the most in flight at once. Tests wait on
    `reached(n)` (n calls in flight), an event, never on a sleep."""

    def __init__(self, spec: str = "gated", fail: bool = False) -> None:
        self.spec = spec
        self.fail = fail
        self.gate = asyncio.Event()
        self.calls = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.changed = asyncio.Condition()

    async def reached(self, n: int) -> None:
        """Wait until `n` calls are in flight at once."""
        async with self.changed:
            await self.changed.wait_for(lambda: self.in_flight >= n)

    async def respond(self, conversation: Conversation, params: GenParams) -> Reply:
        self.calls += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        async with self.changed:
            self.changed.notify_all()
        try:
            await self.gate.wait()
            if self.fail:
                raise TargetError("server said no", url="http://127.0.0.1:1/v1", status=500)
            return Reply(text=f"reply to {conversation[-1].text}")
        finally:
            self.in_flight -= 1


def _ask(text: str) -> Conversation:
    return (user(text),)


def test_identical_requests_in_flight_are_made_once(tmp_path: Path) -> None:
    async def main() -> None:
        target = GatedTarget()
        progress = Progress()
        cache = CallCache(Store(tmp_path / "s.sqlite"), progress, concurrency=4, target=target)
        first = asyncio.create_task(cache.call(target, _ask("hi"), GenParams()))
        second = asyncio.create_task(cache.call(target, _ask("hi"), GenParams()))
        await target.reached(1)  # the second task joined before this (see CallCache.call)
        target.gate.set()
        (r1, cached1), (r2, cached2) = await first, await second
        assert target.calls == 1
        assert r1.text == r2.text == "reply to hi"
        assert (cached1, cached2) == (False, True)
        assert (progress.calls, progress.cached) == (1, 1)

    asyncio.run(main())


def test_a_stored_reply_is_replayed_by_a_new_cache(tmp_path: Path) -> None:
    async def call_once(target: GatedTarget) -> tuple[Reply, bool]:
        target.gate.set()
        cache = CallCache(Store(tmp_path / "s.sqlite"), Progress(), concurrency=4, target=target)
        return await cache.call(target, _ask("hi"), GenParams())

    first = GatedTarget()
    assert asyncio.run(call_once(first))[1] is False
    again = GatedTarget()
    reply, cached = asyncio.run(call_once(again))
    assert cached and reply.text == "reply to hi" and again.calls == 0


def test_a_failed_call_reaches_every_waiter_and_is_not_stored(tmp_path: Path) -> None:
    async def main() -> None:
        target = GatedTarget(fail=True)
        store = Store(tmp_path / "s.sqlite")
        cache = CallCache(store, Progress(), concurrency=4, target=target)
        tasks = [asyncio.create_task(cache.call(target, _ask("hi"), GenParams())) for _ in range(2)]
        await target.reached(1)
        target.gate.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, TargetError) for r in results)
        assert target.calls == 1
        target.fail = False  # the next call is made again: nothing was cached
        reply, cached = await cache.call(target, _ask("hi"), GenParams())
        assert (reply.text, cached, target.calls) == ("reply to hi", False, 2)

    asyncio.run(main())


@pytest.mark.parametrize("concurrency", [1, 3])
def test_calls_in_flight_are_bounded_per_target(tmp_path: Path, concurrency: int) -> None:
    async def main() -> None:
        target, judge = GatedTarget("target"), GatedTarget("judge")
        progress = Progress()
        cache = CallCache(Store(tmp_path / "s.sqlite"), progress, concurrency=concurrency,
                          target=target, judge_target=judge)
        tasks = [asyncio.create_task(cache.call(t, _ask(f"q{i}"), GenParams()))
                 for i in range(6) for t in (target, judge)]
        await target.reached(concurrency)
        await judge.reached(concurrency)
        for _ in range(20):  # let every other task run as far as it can: none may get in
            await asyncio.sleep(0)
        assert (target.in_flight, judge.in_flight) == (concurrency, concurrency)
        target.gate.set()
        judge.gate.set()
        await asyncio.gather(*tasks)
        assert (target.max_in_flight, judge.max_in_flight) == (concurrency, concurrency)
        assert (progress.calls, progress.judge_calls, progress.helper_calls) == (6, 6, 0)

    asyncio.run(main())


class Overriding(Target):
    """A custom target whose `identity()` forgets its class and version."""

    spec = "custom:x"

    def __init__(self, version: str | None = None) -> None:
        self.version = version
        self.calls = 0

    def identity(self) -> str:
        return self.spec

    async def respond(self, conversation: Conversation, params: GenParams) -> Reply:
        self.calls += 1
        return Reply(text=f"v{self.version}: {conversation[-1].text}")


def test_a_new_version_is_never_answered_from_the_old_versions_replies(tmp_path: Path) -> None:
    """The store keys calls by `cache_identity()`: the class and version stay in the key even
    when a custom `identity()` leaves them out."""
    store = Store(tmp_path / "store.sqlite")
    request = (user("hello"),)

    def ask(target: Overriding) -> tuple[Reply, bool]:
        cache = CallCache(store, Progress(), concurrency=2, target=target)
        return asyncio.run(cache.call(target, request, GenParams()))

    first, second, bumped = Overriding("1"), Overriding("1"), Overriding("2")
    assert ask(first) == (Reply(text="v1: hello"), False)
    assert ask(second)[1] is True and second.calls == 0  # same code: replayed
    reply, cached = ask(bumped)
    assert (reply.text, cached, bumped.calls) == ("v2: hello", False, 1)
    assert bumped.cache_identity() == f"{__name__}.Overriding@2|custom:x"
