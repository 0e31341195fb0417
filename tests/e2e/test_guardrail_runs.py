"""Whole runs with several guardrail stacks against a real server on 127.0.0.1 (black box)."""

from __future__ import annotations

from pathlib import Path

import pytest
from _runs import load_report, run_mtmcs

from pytest_mtmcs.testing import MockOpenAIServer

pytest.importorskip("transformers")

DIALOGUES_ONLY = ("--mtmcs-skip-questions", "--mtmcs-modality=unimodal")


@pytest.fixture(scope="module")
def guards(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny Llama Guard 3 forced to say safe (p=0.05) and one forced to say unsafe (p=0.95)."""
    from _tiny_guards import build_tiny_llama_guard3, force_verdict

    root = tmp_path_factory.mktemp("guards")
    base = build_tiny_llama_guard3(root / "base")
    return {"safe": force_verdict(base, root / "safe", p_unsafe=0.05),
            "unsafe": force_verdict(base, root / "unsafe", p_unsafe=0.95)}


def _target(srv: MockOpenAIServer) -> str:
    return f"openai+{srv.base_url}:acme/vlm"


def test_an_allowing_guard_costs_the_target_no_extra_call(
        pytester: pytest.Pytester, dataset: Path, guards: dict[str, Path]) -> None:
    with MockOpenAIServer() as srv:
        result = run_mtmcs(pytester, dataset, *DIALOGUES_ONLY,
                           f"--mtmcs-guardrail=none,llama-guard:{guards['safe']}", target=_target(srv))
        calls = [c.body["messages"] for c in srv.calls]
    # 2 rows x 2 splits of unimodal dialogues, per stack; the mock's replies never refuse.
    result.assert_outcomes(passed=8, failed=8)
    result.stdout.fnmatch_lines(["*mtmcs[[]llama-guard-type_b-0001-unimodal-unsafe[]]*"])
    # Type A: 4 calls per row (R1, R2 shared), Type B: 6; each made once for both stacks.
    assert len(calls) == 2 * (4 + 6)
    assert len({repr(c) for c in calls}) == len(calls)
    report = load_report(pytester)
    guarded = [d for d in report["dialogues"] if d["guardrail"] == "llama-guard"]
    assert len(guarded) == 8
    # every turn was checked twice (input and output) by the local classifier
    assert {t["guard_calls"] for d in guarded for t in d["turns"]} == {2}
    cost = next(g for g in report["summary"] if g["guardrail"] == "llama-guard" and g["split"] == "all")
    assert cost["guard_cost"]["turns"] == 24 and cost["guard_cost"]["blocked_turns"] == 0


def test_a_blocking_guard_refuses_before_the_target_is_called(
        pytester: pytest.Pytester, dataset: Path, guards: dict[str, Path]) -> None:
    with MockOpenAIServer() as srv:
        run_mtmcs(pytester, dataset, *DIALOGUES_ONLY,
                  f"--mtmcs-guardrail=none,llama-guard:{guards['unsafe']}", target=_target(srv))
        n_calls = len(srv.calls)
    assert n_calls == 2 * (4 + 6)  # only the bare stack reached the server
    report = load_report(pytester)
    guarded = [d for d in report["dialogues"] if d["guardrail"] == "llama-guard"]
    assert {d["turn_of_refusal"] for d in guarded} == {1}
    first = guarded[0]["turns"][0]
    assert first["blocked_by"] == "llama-guard" and first["block_reason"].startswith("llama-guard input: unsafe")
    rates = {(g["guardrail"], g["split"]): g for g in report["summary"] if g["modality"] == "unimodal"}
    assert rates[("llama-guard", "type_a")]["refusal_rate_unsafe"]["value"] == 1.0
    assert rates[("llama-guard", "type_a")]["over_refusal_rate_safe"]["value"] == 1.0
    assert rates[("none", "type_a")]["refusal_rate_unsafe"]["value"] == 0.0


def test_an_unknown_guardrail_is_a_usage_error(pytester: pytest.Pytester, dataset: Path) -> None:
    result = run_mtmcs(pytester, dataset, "--mtmcs-guardrail=none,nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown guardrail 'nope'; expected none or one of*"])
