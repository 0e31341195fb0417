"""Whole runs against text-only and misconfigured OpenAI-compatible servers (the mock server):
an image-blind server is found before the run, a rejected model name ends it with exit 4."""

from __future__ import annotations

from pathlib import Path

import pytest
from _data import row, write_dataset
from _runs import load_report, run_mtmcs

from pytest_mtmcs.testing import FaultPlan, MockOpenAIServer

MULTIMODAL = ("--mtmcs-split=type_a", "--mtmcs-modality=multimodal", "--mtmcs-skip-questions",
              "--mtmcs-temperature=0")


def test_an_image_blind_server_skips_multimodal_dialogues_with_the_reason(
        pytester: pytest.Pytester, tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "ds", {"type_a": [row(0)]})
    with MockOpenAIServer() as srv:  # counts only the text's tokens, as a text-only model does
        result = run_mtmcs(pytester, data, *MULTIMODAL, "-rs", target=f"openai+{srv.base_url}:m?images=probe")
        bodies = [c.body for c in srv.calls]
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["*SKIPPED*the server at http://127.0.0.1:*/v1 ignores images: "
                                 "prompt_tokens * with a 64x64 image and * without*"])
    assert len(bodies) == 2 and all(b["max_tokens"] == 1 for b in bodies)  # the probe pair only
    assert {d["verdict"] for d in load_report(pytester)["dialogues"]} == {"skip"}


def test_an_image_blind_server_reads_the_caption_when_asked(
        pytester: pytest.Pytester, tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "ds", {"type_a": [row(0)]}, captions={"0": "A red kite."})
    with MockOpenAIServer() as srv:
        result = run_mtmcs(pytester, data, *MULTIMODAL, "--mtmcs-caption-for-text",
                           target=f"openai+{srv.base_url}:m?images=probe")
        bodies = [c.body for c in srv.calls]
    assert result.ret in (0, 1)
    run = bodies[2:]  # after the probe pair
    assert len(run) == 4
    assert all(isinstance(m["content"], str) for b in run for m in b["messages"])  # no image sent
    assert any("A red kite." in b["messages"][0]["content"] for b in run)
    report = load_report(pytester)
    assert [d["captioned"] for d in report["dialogues"]] == [True, True]
    assert report["calls"]["target"]["images"]["mode"] == "probe"


def test_a_rejected_model_name_ends_the_run_with_exit_4_naming_the_served_models(
        pytester: pytest.Pytester, tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "ds", {"type_a": [row(0)]})
    plan = FaultPlan.always("http_400", message="Server is pinned to 'acme/vlm-7b'; requested '{model}'.")
    with MockOpenAIServer(faults=plan, model_name="acme/vlm-7b") as srv:
        result = run_mtmcs(pytester, data, "--mtmcs-split=type_a", "--mtmcs-modality=unimodal",
                           "--mtmcs-skip-questions", "--mtmcs-concurrency=1",
                           target=f"openai+{srv.base_url}:vlm")
        asked = len(srv.calls)
    assert result.ret == 4 and asked == 1
    result.stdout.fnmatch_lines(["*HTTP 400 for model 'vlm': Server is pinned to 'acme/vlm-7b'; "
                                 "requested 'vlm'. (the server serves 'acme/vlm-7b')*"])
