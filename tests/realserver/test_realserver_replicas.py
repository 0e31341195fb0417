"""Two real servers as replicas of one model; one is killed mid-run and its calls fail over."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from _data import row, write_dataset
from _realserver import RealServer
from _runs import load_report, run_mtmcs

DIALOGUES = ("--mtmcs-split=type_a", "--mtmcs-modality=unimodal", "--mtmcs-temperature=0",
             "--mtmcs-max-tokens=8", "--mtmcs-timeout=300", "--mtmcs-skip-questions",
             "--mtmcs-concurrency=2", "--mtmcs-replica-concurrency=1")


def test_a_killed_replica_fails_over_to_the_survivor(
        pytester: pytest.Pytester, tmp_path: Path, real_server: RealServer,
        second_server: RealServer) -> None:
    survivor, victim = real_server, second_server
    assert survivor.model == victim.model  # both pinned to the same folder: one model name
    data = write_dataset(tmp_path / "ds", {"type_a": [row(0), row(1)]})  # 8 calls
    before = survivor.answered()
    killed = threading.Event()

    def kill_after_its_first_answer() -> None:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and victim.alive():
            if victim.answered() >= 1:
                victim.kill()
                killed.set()
                return
            time.sleep(0.1)  # a watcher's poll; no assertion waits on it

    watcher = threading.Thread(target=kill_after_its_first_answer, daemon=True)
    watcher.start()
    result = run_mtmcs(pytester, data, *DIALOGUES,
                       target=f"openai+{survivor.base_url}|{victim.base_url}:{survivor.model}")
    watcher.join(timeout=5)
    assert killed.is_set(), "the run ended before the victim had answered once"

    report = load_report(pytester)
    assert result.ret in (0, 1), result.stdout.str()[-3000:]
    assert len(report["dialogues"]) == 4
    assert all(d["verdict"] in ("pass", "fail") for d in report["dialogues"]), report["dialogues"]
    calls = report["calls"]["target"]
    assert (calls["calls"], calls["ok"], calls["failed"]) == (8, 8, 0)  # the run finished whole
    assert calls["retries_by_reason"].get("connection", 0) >= 1  # the dead replica's calls...
    by_url = calls["replicas"]
    lost = by_url[victim.base_url]
    assert lost["failures"] >= 1
    victim_ok = lost["attempts"] - lost["failures"]
    kept = by_url[survivor.base_url]
    survivor_ok = kept["attempts"] - kept["failures"]
    assert victim_ok >= 1 and victim_ok + survivor_ok == 8
    # ...were answered by the survivor, by its own access log
    assert survivor.answered() - before == survivor_ok
    assert kept["failures"] == 0
    outcomes = result.parseoutcomes()
    assert outcomes.get("error", 0) == 0
