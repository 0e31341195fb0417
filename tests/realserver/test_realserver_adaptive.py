"""Against the real single-stream `transformers serve` (no continuous batching), the calls in
flight are lowered once their latency grows with them (`targets/adaptive.py`)."""

from __future__ import annotations

import asyncio

from _realserver import RealServer

from pytest_mtmcs.chat import GenParams, user
from pytest_mtmcs.targets import TargetOptions, make_target
from pytest_mtmcs.targets.openai_compat import OpenAICompatTarget

PARAMS = GenParams(temperature=0.0, max_tokens=8)


async def _warm_up(real_server: RealServer) -> None:
    """One call through a target of its own: a server's first generation is slower (its
    caches are cold), and the burst's first call sets the latency baseline, which a slow
    first call would inflate (on a busy machine, enough to hide the growth)."""
    warm = make_target(real_server.spec(), TargetOptions(timeout_s=300))
    try:
        await warm.respond((user("Name a shape."),), PARAMS)
    finally:
        await warm.aclose()


def test_a_single_stream_server_gets_fewer_calls_in_flight(real_server: RealServer) -> None:
    asyncio.run(_warm_up(real_server))
    target = make_target(real_server.spec(), TargetOptions(timeout_s=300))
    assert isinstance(target, OpenAICompatTarget)
    before = real_server.answered()
    n = 8  # one burst: the first window of calls is judged as the last of them ends

    async def go() -> None:
        slots = asyncio.Semaphore(8)  # what the engine's --mtmcs-concurrency 8 would allow

        async def one(i: int) -> None:
            async with slots:
                await target.respond((user(f"Name a colour, {i}."),), PARAMS)

        try:
            await asyncio.gather(*(one(i) for i in range(n)))
        finally:
            await target.aclose()

    asyncio.run(go())
    stats = target.stats
    assert (stats["calls"], stats["ok"], stats["failed"]) == (n, n, 0)
    assert real_server.answered() - before == n  # the server's own log agrees
    lowered = stats.get("lowered", "")
    assert lowered.startswith("calls in flight lowered 8 -> "), stats
    assert "latency grew" in lowered
