"""Local transformers targets through the plugin (tiny random checkpoints built by the tests)."""

from __future__ import annotations

from pathlib import Path

import pytest
from _runs import load_report, run_mtmcs

pytest.importorskip("transformers", reason='needs pip install "pytest-mtmcs[hf]"')


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Module scope: built (and torch imported) before pytester snapshots sys.modules, which it
    # restores after each test; torch cannot be imported twice.
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


def test_missing_caption_for_a_text_only_target(pytester: pytest.Pytester, tmp_path: Path,
                                                tiny_model: Path) -> None:
    import json

    from _data import small_dataset

    data = small_dataset(tmp_path / "ds", 2)
    (data / "captions.json").write_text(json.dumps({"0": "A plain square."}))
    result = run_mtmcs(pytester, data, "--mtmcs-caption-for-text", "--mtmcs-split=type_a",
                       "-m", "multimodal and not mcq and not tf", "--mtmcs-max-tokens=4",
                       target=f"hf:{tiny_model}")
    outcomes = result.parseoutcomes()
    assert outcomes["errors"] == 2  # row 1 has no caption; row 0 is rolled out
    assert outcomes.get("passed", 0) + outcomes.get("failed", 0) == 2
    result.stdout.fnmatch_lines(["*row id 1, field 'caption': no caption for this row*"])
