"""A dead replica behind a slow survivor (what two real CPU servers showed): the retries of the
dead one's calls wait for the healthy replica instead of going back to the dead one each time
its short cool-down ends, which used to fail the call after all its retries."""

from __future__ import annotations

import asyncio
import socket

from pytest_mtmcs.chat import GenParams, user
from pytest_mtmcs.targets import TargetOptions
from pytest_mtmcs.targets.openai_compat import OpenAICompatTarget
from pytest_mtmcs.testing import MockOpenAIServer


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once the socket is closed


def test_retries_wait_for_the_busy_healthy_replica() -> None:
    dead = f"http://127.0.0.1:{_closed_port()}/v1"
    with MockOpenAIServer(latency_s=0.6) as srv:  # each answer outlasts the cool-downs below
        opts = TargetOptions(replica_concurrency=1, retries=3, cooldown_base_s=0.05,
                             cooldown_cap_s=0.2, backoff_base_s=0.01, backoff_cap_s=0.02)
        t = OpenAICompatTarget("m", f"{srv.base_url}|{dead}", opts)

        async def run() -> list[str]:
            sem = asyncio.Semaphore(2)

            async def one(i: int) -> str:
                async with sem:
                    return (await t.respond((user(f"q{i}"),), GenParams())).text

            try:
                return await asyncio.gather(*(one(i) for i in range(4)))
            finally:
                await t.aclose()

        replies = asyncio.run(run())
        answered = len(srv.calls)
    assert len(replies) == 4 and answered == 4
    stats = t.stats
    assert (stats["ok"], stats["failed"]) == (4, 0)
    assert stats["replicas"][dead]["failures"] >= 1
    assert stats["replicas"][dead]["attempts"] == stats["replicas"][dead]["failures"]
