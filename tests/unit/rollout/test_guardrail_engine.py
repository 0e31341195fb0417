"""Guardrail stacks in the engine: shared target calls, store, blocked turns, costs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pytest_mtmcs.chat import Conversation, GenParams, Reply
from pytest_mtmcs.dataset import DataSelection, load_cases
from pytest_mtmcs.errors import SpecError
from pytest_mtmcs.guardrails import (
    GuardContext,
    GuardedTarget,
    Guardrail,
    GuardrailOptions,
    make_guardrail,
    parse_guardrails,
)
from pytest_mtmcs.rollout.engine import Engine
from pytest_mtmcs.rollout.store import Store
from pytest_mtmcs.targets.base import Target


class CountingTarget(Target):
    """Answers every call after a short sleep, counting the calls per request text."""

    spec = "counting"

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def respond(self, conversation: Conversation, params: GenParams) -> Reply:
        self.calls.append(conversation[-1].text)
        await asyncio.sleep(0.005)
        return Reply(text="Sure, here is how.", completion_tokens=5)


class OutputCheck(Guardrail):
    """Asks the target, then blocks replies to turns that mention `unsafe_r3`; one extra pass."""

    name = "output-check"

    async def respond(self, ctx: GuardContext) -> Reply:
        reply = await ctx.answer()
        ctx.count(calls=1)
        await asyncio.sleep(0.01)  # the check's own time, reported as added latency
        if "unsafe_r3" in ctx.conversation[-1].text:
            return ctx.block("output-check: unsafe S1")
        return reply


def _cases(dataset: Path) -> list:  # type: ignore[type-arg]
    return load_cases(DataSelection(data=str(dataset), splits=("type_a",), modalities=("unimodal",)))


def test_an_output_check_reuses_the_target_calls_of_the_bare_run(dataset: Path, tmp_path: Path) -> None:
    target = CountingTarget()
    stack = GuardedTarget(target, OutputCheck())
    eng = Engine(target, Store(tmp_path / "s.sqlite"), params=GenParams(), concurrency=4,
                 stacks={"output-check": stack})
    cases = _cases(dataset)
    for c in cases:
        eng.add(c, questions=set())
        eng.add(c, questions=set(), guardrail="output-check")
    eng.start()
    bare = {c.id: eng.dialogue(c.id).result(timeout=30) for c in cases}
    guarded = {c.id: eng.dialogue(c.id, "output-check").result(timeout=30) for c in cases}
    eng.stop()
    # 2 rows of Type A unimodal: R1 and R2 shared by safe and unsafe, so 4 distinct calls per
    # row, each made once although both stacks asked for it.
    assert len(target.calls) == len(set(target.calls)) == 8
    unsafe = guarded["type_a-0000-unimodal-unsafe"]
    assert unsafe.guardrail == "output-check" and unsafe.turn_of_refusal == 3
    r3 = unsafe.turns[2]
    assert r3.refused and r3.blocked_by == "output-check" and r3.block_reason == "output-check: unsafe S1"
    assert all(t.guard_calls == 1 and t.guard_latency_s >= 0.009 for t in unsafe.turns)
    assert bare["type_a-0000-unimodal-unsafe"].turn_of_refusal is None
    assert bare["type_a-0000-unimodal-unsafe"].turns[0].guard_calls == 0
    assert guarded["type_a-0000-unimodal-safe"].verdict == "pass"


def test_a_rerun_replays_the_guarded_replies_from_the_store(dataset: Path, tmp_path: Path) -> None:
    for run in range(2):
        target = CountingTarget()
        eng = Engine(target, Store(tmp_path / "s.sqlite"), params=GenParams(), concurrency=4,
                     stacks={"output-check": GuardedTarget(target, OutputCheck())})
        cases = _cases(dataset)
        for c in cases:
            eng.add(c, questions=set(), guardrail="output-check")
        eng.start()
        recs = [eng.dialogue(c.id, "output-check").result(timeout=30) for c in cases]
        eng.stop()
        assert len(target.calls) == (8 if run == 0 else 0)
        assert recs[1].turns[2].blocked_by == "output-check"


def test_parse_guardrails() -> None:
    assert parse_guardrails("none, dpp ,llama-guard:/models/lg3") == [
        ("none", None), ("dpp", None), ("llama-guard", "/models/lg3")]
    with pytest.raises(SpecError, match="unknown guardrail 'nope'"):
        parse_guardrails("none,nope")
    with pytest.raises(SpecError, match="named twice"):
        parse_guardrails("dpp,dpp")
    with pytest.raises(SpecError):
        make_guardrail("nope", None, GuardrailOptions(), CountingTarget())
