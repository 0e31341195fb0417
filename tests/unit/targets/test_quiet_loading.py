"""Loading a local model prints no transformers progress bars ("Loading weights", "Loading
checkpoint shards") unless HF_HUB_DISABLE_PROGRESS_BARS is set; the bars' state is restored."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("torch", reason='needs the hf extra: pip install "pytest-mtmcs[hf]"')
pytest.importorskip("transformers", reason='needs the hf extra: pip install "pytest-mtmcs[hf]"')

from _tiny_models import build_tiny_llama
from transformers.utils import logging as hf_logging

from pytest_mtmcs.targets import TargetOptions
from pytest_mtmcs.targets.hf import load
from pytest_mtmcs.targets.quiet import ENV, quiet_loading

BAR = "Loading weights"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def bars_on(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """transformers' bars on, as in a fresh process without the variable."""
    monkeypatch.delenv(ENV, raising=False)
    was = hf_logging.is_progress_bar_enabled()
    hf_logging.enable_progress_bar()
    yield
    (hf_logging.enable_progress_bar if was else hf_logging.disable_progress_bar)()


def loaded_stderr(model_dir: Path, capfd: pytest.CaptureFixture[str]) -> str:
    capfd.readouterr()
    asyncio.run(load(str(model_dir), TargetOptions()).aclose())
    return capfd.readouterr().err


@pytest.mark.usefixtures("bars_on")
def test_loading_a_model_draws_no_progress_bar(model_dir: Path, capfd: pytest.CaptureFixture[str]) -> None:
    with hf_logging.tqdm(range(3), desc=BAR) as bar:  # the control: this process can draw bars
        list(bar)
    assert BAR in capfd.readouterr().err
    assert BAR not in loaded_stderr(model_dir, capfd)
    assert hf_logging.is_progress_bar_enabled()  # restored for the user's own code


@pytest.mark.usefixtures("bars_on")
def test_the_variable_set_leaves_the_bars_to_huggingface(model_dir: Path, capfd: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "0")
    assert BAR in loaded_stderr(model_dir, capfd)


@pytest.mark.usefixtures("bars_on")
def test_nested_loads_restore_once_the_last_ends() -> None:
    with quiet_loading():
        with quiet_loading():
            assert not hf_logging.is_progress_bar_enabled()
        assert not hf_logging.is_progress_bar_enabled()
    assert hf_logging.is_progress_bar_enabled()
