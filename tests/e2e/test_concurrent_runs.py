"""Two `pytest --mtmcs` runs on one store at the same time make each call once: the second
waits for, and reuses, what the first has in flight (and the other way round).

The overlap is forced with events, not hoped for: the server holds every call unanswered, the
first run starts and its one request slot fills, then the second run starts and fills its own
slot with another request while the first's is still held; only then are both released.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from _bounded import HANG_S
from _data import small_dataset

from pytest_mtmcs.testing import MockOpenAIServer


def _start(pytester: pytest.Pytester, data: Path, store: Path, report: Path,
           base_url: str) -> subprocess.Popen[bytes]:
    return pytester.popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--mtmcs",
         f"--mtmcs-data={data}", f"--mtmcs-target=openai+{base_url}:acme/vlm",
         f"--mtmcs-store={store}", f"--mtmcs-report={report}", "--mtmcs-concurrency=1"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _figures(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The summary without what depends on who made which call."""
    return [{k: v for k, v in g.items() if k not in ("guard_cost", "target")}
            for g in report["summary"]]


def _outcomes(report: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    return {d["id"]: (d["verdict"], d["turn_of_refusal"]) for d in report["dialogues"]} | {
        q["id"]: (q["verdict"], q["parsed"]) for q in report["questions"]}


def test_two_runs_on_one_store_make_each_call_once(pytester: pytest.Pytester, tmp_path: Path) -> None:
    data = small_dataset(tmp_path / "ds", 2)
    store = tmp_path / "shared" / "store.sqlite"
    reports = [tmp_path / "first.json", tmp_path / "second.json"]
    with MockOpenAIServer() as srv:
        srv.hold_after(0)  # every call waits, unanswered, until release()
        first = _start(pytester, data, store, reports[0], srv.base_url)
        srv.wait_for_calls(1, timeout=HANG_S)  # the first run's only slot is taken
        second = _start(pytester, data, store, reports[1], srv.base_url)
        # The second run's slot fills with another request while the first's is held: both
        # runs are in the middle of their rollouts on the same store at the same time.
        srv.wait_for_calls(2, timeout=HANG_S)
        srv.release()
        outputs = [p.communicate(timeout=HANG_S)[0].decode() for p in (first, second)]
        bodies = [json.dumps(c.body, sort_keys=True) for c in srv.calls]
    for proc, out in zip((first, second), outputs, strict=True):
        assert proc.returncode in (0, 1), out[-3000:]
        assert "Traceback" not in out
    repeated = {b: n for b, n in Counter(bodies).items() if n > 1}
    assert repeated == {}, f"{len(repeated)} requests were made by both runs"
    with MockOpenAIServer() as solo_srv:  # the same run alone, on a fresh store
        solo = _start(pytester, data, tmp_path / "solo.sqlite", tmp_path / "solo.json",
                      solo_srv.base_url)
        solo.communicate(timeout=HANG_S)
        alone = Counter(json.dumps(c.body, sort_keys=True) for c in solo_srv.calls)
    assert Counter(bodies) == alone  # together they made exactly the calls of one run
    a, b = (json.loads(r.read_text()) for r in reports)
    assert _figures(a) == _figures(b)
    assert _outcomes(a) == _outcomes(b)
    assert len(a["dialogues"]) == len(b["dialogues"]) == 16
