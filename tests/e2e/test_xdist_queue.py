"""xdist workers share the store as a work queue: under `-n 2` every distinct request reaches
the server exactly once, and the metrics equal those of `-n 0`."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from _data import small_dataset
from _runs import load_report, run_mtmcs

from pytest_mtmcs.testing import MockOpenAIServer


def _key(body: dict[str, object]) -> str:
    return json.dumps(body, sort_keys=True)


def _figures(report: dict[str, object]) -> list[dict[str, object]]:
    """The summary without anything that depends on who made which call."""
    return [{k: v for k, v in g.items() if k not in ("guard_cost", "target")}
            for g in report["summary"]]  # type: ignore[union-attr]


def _outcomes(report: dict[str, object]) -> dict[str, tuple[object, ...]]:
    return {f"{d['guardrail']}/{d['id']}": (d["verdict"], d["turn_of_refusal"])
            for d in report["dialogues"]}  # type: ignore[union-attr]


@pytest.mark.parametrize("extra", [[], ["--mtmcs-guardrail=none,dpp"]], ids=["bare", "two-stacks"])
def test_n2_makes_every_call_once_and_matches_n0(pytester: pytest.Pytester, tmp_path: Path,
                                                 extra: list[str]) -> None:
    data = small_dataset(tmp_path / "ds", 4)
    reports = {}
    logs = {}
    for mode in ("-n0", "-n2"):
        with MockOpenAIServer(latency_s=0.01) as srv:
            store = tmp_path / f"store{mode}.sqlite"
            result = run_mtmcs(pytester, data, mode, f"--mtmcs-store={store}",
                               *extra, target=f"openai+{srv.base_url}:acme/vlm-7b")
            assert result.ret in (0, 1), result.stdout.str()[-2000:]
            logs[mode] = [_key(c.body) for c in srv.calls]
        reports[mode] = load_report(pytester)
    counts = Counter(logs["-n2"])
    repeated = {k: n for k, n in counts.items() if n > 1}
    assert repeated == {}, f"{len(repeated)} requests were made more than once under -n 2"
    assert counts == Counter(logs["-n0"])  # the very same requests, each once
    assert _figures(reports["-n2"]) == _figures(reports["-n0"])
    assert _outcomes(reports["-n2"]) == _outcomes(reports["-n0"])
    stacks = 2 if extra else 1
    assert len(reports["-n2"]["dialogues"]) == 4 * 2 * 2 * 2 * stacks
