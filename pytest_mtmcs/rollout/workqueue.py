"""The work queue xdist workers share through the store: who rolls out which row.

Under `pytest -n N` every worker collects every item and runs an engine that works ahead, but a
row's dialogues (safe and unsafe, both modalities, every guardrail stack) share calls: Type A's
R1 and R2, a row's caption, the target calls of a bare and a guarded stack. So workers claim
whole rows. A worker that claims a row rolls out all of its dialogues and questions; a worker
whose item needs a row another worker holds waits until that row is marked done, then reads
every reply from the store (no call is made twice). A worker that dies stops beating; after
`stale_after_s` its unfinished rows may be taken over.

Claims belong to one run (an id the xdist controller hands its workers), so a later run, or a
run killed half way, never waits on them.
"""

from __future__ import annotations

import asyncio
import time

from pytest_mtmcs.rollout.store import Store


class WorkQueue:
    """Row claims of one run, for one worker (`owner`)."""

    def __init__(self, store: Store, run: str, owner: str, *, stale_after_s: float = 60.0,
                 poll_s: float = 0.05) -> None:
        self.store = store
        self.run = run
        self.owner = owner
        self.stale_after_s = stale_after_s
        self.poll_s = poll_s
        self.beat()

    def beat(self) -> None:
        """Say this worker is alive (called every few seconds by the engine)."""
        self.store.queue_beat(self.run, self.owner, time.time())

    def claim(self, unit: str) -> bool:
        """Take `unit` if nobody holds it, or if its holder stopped beating before finishing it.
        True when this worker now holds it."""
        holder, done = self.store.queue_claim(self.run, unit, self.owner)
        if holder == self.owner:
            return True
        if done:
            return False
        beat = self.store.queue_heartbeat(self.run, holder)
        if beat is None or time.time() - beat > self.stale_after_s:
            return self.store.queue_take_over(self.run, unit, holder, self.owner)
        return False

    def done(self, unit: str) -> None:
        """Mark a unit this worker holds as rolled out (its replies are all in the store)."""
        self.store.queue_done(self.run, unit, self.owner)

    async def wait(self, unit: str) -> bool:
        """Wait until another worker finishes `unit`. Returns True when it did, False when this
        worker took the unit over (its holder died) and must roll it out itself."""
        while True:
            holder, done = self.store.queue_state(self.run, unit)
            if done:
                return True
            if holder != self.owner and self.claim(unit):
                return False
            await asyncio.sleep(self.poll_s)
