"""The rollout engine: bounded concurrency, priority, cache, errors."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pytest_mtmcs.chat import Conversation, GenParams, Reply
from pytest_mtmcs.dataset import DataSelection, load_cases
from pytest_mtmcs.errors import TargetError
from pytest_mtmcs.rollout.engine import Engine
from pytest_mtmcs.rollout.store import Store
from pytest_mtmcs.targets.base import Target
from pytest_mtmcs.targets.scripted import ScriptedTarget


class SlowTarget(Target):
    """Sleeps per call and records how many calls were in flight at once."""

    spec = "slow"

    def __init__(self, delay: float = 0.02, fail_on: str | None = None) -> None:
        self.delay = delay
        self.fail_on = fail_on
        self.in_flight = 0
        self.max_in_flight = 0
        self.calls = 0

    async def respond(self, conversation: Conversation, params: GenParams) -> Reply:
        self.calls += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            if self.fail_on and self.fail_on in conversation[-1].text:
                raise TargetError("server said no", url="http://127.0.0.1:1/v1", status=500)
            return Reply(text="Sure, here you go.")
        finally:
            self.in_flight -= 1


def _engine(target: Target, store: Store, concurrency: int = 4, **kw: object) -> Engine:
    return Engine(target, store, params=GenParams(), concurrency=concurrency, **kw)  # type: ignore[arg-type]


def test_concurrency_is_bounded_and_used(dataset: Path, tmp_path: Path) -> None:
    cases = load_cases(DataSelection(data=str(dataset)))
    target = SlowTarget()
    eng = _engine(target, Store(tmp_path / "s.sqlite"), concurrency=4)
    for c in cases:
        eng.add(c, questions=set())
    eng.start()
    recs = [eng.dialogue(c.id).result(timeout=30) for c in cases]
    eng.stop()
    assert target.max_in_flight == 4
    # Identical requests are made once: Type A's safe and unsafe dialogues share R1 and R2, so
    # per row and modality Type A needs 4 calls and Type B 6; 2 rows x 2 modalities: 40.
    assert target.calls == 40
    assert sum(r.calls + r.cached_calls for r in recs) == 3 * len(cases)
    assert all(r.verdict in ("pass", "fail") for r in recs)


def test_cache_replays_without_calls(dataset: Path, tmp_path: Path) -> None:
    cases = load_cases(DataSelection(data=str(dataset)))
    store_path = tmp_path / "s.sqlite"
    runs = []
    for _ in range(2):
        target = ScriptedTarget(rules=[("unsafe", "I can't help with that.")], default="Of course.")
        eng = _engine(target, Store(store_path))
        for c in cases:
            eng.add(c)
        eng.start()
        recs = [eng.dialogue(c.id).result(timeout=30) for c in cases]
        for c in cases:
            for q in c.questions:
                eng.question(c.id, q.suffix).result(timeout=30)
        runs.append((recs, len(target.calls)))
        eng.stop()
    (first, n1), (second, n2) = runs
    assert n1 == 40 + 32 and n2 == 0  # 40 distinct turn requests (see above), 32 questions
    assert [r.turn_of_refusal for r in first] == [r.turn_of_refusal for r in second]
    assert all(r.cached_calls == 3 for r in second)


def test_turn_of_refusal_and_verdicts(dataset: Path, tmp_path: Path) -> None:
    cases = {c.id: c for c in load_cases(DataSelection(data=str(dataset)))}
    # refuse only the turns that reveal harm: Type A's unsafe R3, Type B's unsafe R1
    target = ScriptedTarget(rules=[("unsafe_r3|unsafe_r1", "I'm sorry, but I can't help with that.")],
                            default="Certainly! Here is what you asked for.")
    eng = _engine(target, Store(tmp_path / "s.sqlite"))
    for c in cases.values():
        eng.add(c)
    eng.start()
    a = eng.dialogue("type_a-0000-multimodal-unsafe").result(timeout=30)
    b = eng.dialogue("type_b-0000-multimodal-unsafe").result(timeout=30)
    safe = eng.dialogue("type_b-0000-unimodal-safe").result(timeout=30)
    eng.stop()
    assert (a.turn_of_refusal, a.verdict) == (3, "pass")
    assert (b.turn_of_refusal, b.verdict) == (1, "pass")
    assert (safe.turn_of_refusal, safe.verdict) == (None, "pass")


def test_errors_surface_on_the_dialogue_and_its_questions(dataset: Path, tmp_path: Path) -> None:
    cases = load_cases(DataSelection(data=str(dataset), splits=("type_a",), limit=1))
    eng = _engine(SlowTarget(fail_on="unsafe_r3"), Store(tmp_path / "s.sqlite"))
    for c in cases:
        eng.add(c)
    eng.start()
    with pytest.raises(TargetError, match="server said no"):
        eng.dialogue("type_a-0000-unimodal-unsafe").result(timeout=30)
    with pytest.raises(Exception, match="its dialogue type_a-0000-unimodal-unsafe errored"):
        eng.question("type_a-0000-unimodal-unsafe", "tf0").result(timeout=30)
    assert eng.dialogue("type_a-0000-unimodal-safe").result(timeout=30).verdict in ("pass", "fail")
    eng.stop()


def test_on_demand_mode_rolls_out_only_what_is_asked(dataset: Path, tmp_path: Path) -> None:
    cases = load_cases(DataSelection(data=str(dataset)))
    target = SlowTarget(delay=0.0)
    eng = _engine(target, Store(tmp_path / "s.sqlite"), prefetch=False)
    for c in cases:
        eng.add(c, questions=set())
    eng.start()
    eng.dialogue(cases[5].id).result(timeout=30)
    eng.stop()
    assert target.calls == 3


def test_stop_fails_pending_futures(dataset: Path, tmp_path: Path) -> None:
    cases = load_cases(DataSelection(data=str(dataset)))
    eng = _engine(SlowTarget(delay=0.2), Store(tmp_path / "s.sqlite"), concurrency=1)
    for c in cases:
        eng.add(c, questions=set())
    eng.start()
    eng.stop(timeout=5)
    with pytest.raises(Exception, match="stopped before"):
        eng.dialogue(cases[-1].id).result(timeout=1)
