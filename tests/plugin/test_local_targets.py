"""Local transformers targets through the plugin (tiny random checkpoints built by the tests)."""

from __future__ import annotations

from pathlib import Path

import pytest
from _runs import load_report, run_mtmcs

pytest.importorskip("transformers", reason='needs pip install "pytest-mtmcs[hf]"')


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from _tiny_models import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "llama")


def test_text_only_target_skips_multimodal_with_reason(pytester: pytest.Pytester, dataset: Path,
                                                       tiny_model: Path) -> None:
    result = run_mtmcs(pytester, dataset, "-m", "type_a and not mcq and not tf", "-rs",
                       "--mtmcs-max-tokens=4", target=f"hf:{tiny_model}")
    outcomes = result.parseoutcomes()
    assert outcomes["skipped"] == 4
    assert outcomes.get("passed", 0) + outcomes.get("failed", 0) == 4
    result.stdout.fnmatch_lines(["*is text-only: multimodal dialogue skipped (pass "
                                 "--mtmcs-caption-for-text to give it the caption instead)*"])
    report = load_report(pytester)
    skipped = [d for d in report["dialogues"] if d["verdict"] == "skip"]
    assert sorted(d["id"] for d in skipped) == sorted(
        f"type_a-{r:04d}-multimodal-{s}" for r in (0, 1) for s in ("safe", "unsafe"))
    assert report["summary"][0]["skipped"] == 4


def test_caption_for_text_rolls_out_multimodal(pytester: pytest.Pytester, dataset: Path,
                                               tiny_model: Path) -> None:
    result = run_mtmcs(pytester, dataset, "-m", "type_b and multimodal and not mcq and not tf",
                       "--mtmcs-caption-for-text", "--mtmcs-max-tokens=4", target=f"hf:{tiny_model}")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) + outcomes.get("failed", 0) == 4
    assert "skipped" not in outcomes
    report = load_report(pytester)
    assert all(d["captioned"] for d in report["dialogues"])
