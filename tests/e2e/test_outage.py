"""A model server that stays down stops the run (exit code 75) once --mtmcs-max-outage has
passed, instead of erroring every remaining item one by one."""

from __future__ import annotations

from pathlib import Path

import pytest
from _data import small_dataset
from _runs import run_mtmcs

from pytest_mtmcs.errors import EXIT_INFRA
from pytest_mtmcs.testing import MockOpenAIServer


def test_a_dead_server_stops_the_run(pytester: pytest.Pytester, tmp_path: Path) -> None:
    data = small_dataset(tmp_path / "ds", 6)  # 48 dialogues and 192 questions
    with MockOpenAIServer() as srv:
        srv.set_down(True)
        result = run_mtmcs(pytester, data, "--mtmcs-retries=1", "--mtmcs-max-outage=0.5",
                           "--mtmcs-concurrency=4", target=f"openai+{srv.base_url}:m")
        calls = len(srv.calls)
    assert result.ret == EXIT_INFRA
    out = result.stdout.str()
    assert "run stopped early, the model server is down" in out
    assert "has been down for" in out and "--mtmcs-max-outage" in out
    outcomes = result.parseoutcomes()
    ran = outcomes.get("errors", 0) + outcomes.get("error", 0)
    assert 0 < ran < 48 + 192, "the run went on erroring item after item"
    # The circuit stops calls too: far fewer than one (plus retry) per dialogue turn.
    assert calls < 48 * 3, calls


def test_a_healthy_server_with_a_short_outage_limit_runs_to_the_end(pytester: pytest.Pytester,
                                                         dataset: Path) -> None:
    with MockOpenAIServer() as srv:
        result = run_mtmcs(pytester, dataset, "--mtmcs-max-outage=0.5", "--mtmcs-skip-questions",
                           target=f"openai+{srv.base_url}:m")
    assert result.ret == 1  # dialogues judged, some failed their verdicts; nothing stopped
    assert "run stopped early" not in result.stdout.str()
    result.assert_outcomes(passed=8, failed=8)
