"""Images sent to a text-only model behind a real server: never scored as if it had seen them.

`transformers serve` with SmolLM2 answers 200 to a request with an image part and drops the
image (the same prompt_tokens with and without it). `?images=probe` finds that out before the
run with two one-token requests; `?images=no` declares it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _data import row, write_dataset
from _realserver import RealServer
from _runs import load_report, run_mtmcs

MULTIMODAL = ("--mtmcs-split=type_a", "--mtmcs-modality=multimodal", "--mtmcs-temperature=0",
              "--mtmcs-max-tokens=8", "--mtmcs-concurrency=1", "--mtmcs-timeout=300",
              "--mtmcs-skip-questions")


def test_an_image_blind_server_is_found_and_its_multimodal_dialogues_skipped(
        pytester: pytest.Pytester, tmp_path: Path, real_server: RealServer) -> None:
    data = write_dataset(tmp_path / "ds", {"type_a": [row(0)]})
    before = len(real_server.chat_statuses())
    result = run_mtmcs(pytester, data, *MULTIMODAL, "-rs", target=real_server.spec("?images=probe"))
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines([
        "*ignores images: prompt_tokens * with a 64x64 image and * without*multimodal dialogue "
        "skipped (pass --mtmcs-caption-for-text*"])
    assert real_server.chat_statuses()[before:] == [200, 200]  # the probe pair, nothing else
    report = load_report(pytester)
    assert {d["verdict"] for d in report["dialogues"]} == {"skip"}


def test_a_declared_text_only_server_reads_the_caption(
        pytester: pytest.Pytester, tmp_path: Path, real_server: RealServer) -> None:
    data = write_dataset(tmp_path / "ds", {"type_a": [row(0)]})
    before = real_server.answered()
    result = run_mtmcs(pytester, data, *MULTIMODAL, "--mtmcs-caption-for-text",
                       target=real_server.spec("?images=no"))
    report = load_report(pytester)
    assert [d["captioned"] for d in report["dialogues"]] == [True, True]
    assert {d["verdict"] for d in report["dialogues"]} <= {"pass", "fail"}
    assert report["calls"]["target"]["images"] == {"mode": "no"}
    assert real_server.answered() - before == 4  # no probe: the spec said text-only
    outcomes = result.parseoutcomes()
    assert outcomes.get("error", 0) == 0 and outcomes.get("skipped", 0) == 0
