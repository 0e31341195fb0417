"""The hf: target on a tiny random Llama built in the test: chat template, determinism, batching."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("torch", reason='needs the hf extra: pip install "pytest-mtmcs[hf]"')
pytest.importorskip("transformers", reason='needs the hf extra: pip install "pytest-mtmcs[hf]"')

from _data import png_bytes
from _tiny_models import build_tiny_llama

from pytest_mtmcs.chat import Conversation, GenParams, ImageRef, assistant, user
from pytest_mtmcs.errors import SpecError, TargetError
from pytest_mtmcs.targets import TargetOptions, make_target
from pytest_mtmcs.targets.hf import HFCausalLMTarget, configure_threads

GREEDY = GenParams(temperature=0, max_tokens=8)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


def hf(model_dir: Path, batch_size: int = 4) -> HFCausalLMTarget:
    target = make_target(f"hf:{model_dir}", TargetOptions(batch_size=batch_size))
    assert isinstance(target, HFCausalLMTarget)
    return target


@pytest.fixture(scope="module")
def target(model_dir: Path) -> HFCausalLMTarget:
    return hf(model_dir)


def convs(n: int) -> list[Conversation]:
    """n single-turn conversations of different lengths."""
    return [(user("hello " * (i + 1) + f"question {i}"),) for i in range(n)]


def test_reply_is_text_with_token_counts(target: HFCausalLMTarget) -> None:
    reply = asyncio.run(target.respond((user("What is the capital of France?"),), GREEDY))
    assert isinstance(reply.text, str)
    assert reply.prompt_tokens and reply.prompt_tokens > 5
    assert reply.completion_tokens and 1 <= reply.completion_tokens <= GREEDY.max_tokens
    assert reply.latency_s > 0
    assert target.supports_images is False
    assert target.spec.startswith("hf:")


def test_greedy_is_deterministic(target: HFCausalLMTarget) -> None:
    conv = (user("Tell me about bread."),)
    first = asyncio.run(target.respond(conv, GREEDY))
    second = asyncio.run(target.respond(conv, GREEDY))
    assert first.text == second.text
    assert first.completion_tokens == second.completion_tokens


def test_history_goes_through_the_chat_template(target: HFCausalLMTarget) -> None:
    conv = (user("first question"), assistant("first answer"),
            user("second question", image=ImageRef(data=png_bytes())))
    prompt = target.render_prompt(conv)
    assert prompt == (
        "<bos><|start_header_id|>user<|end_header_id|>\nfirst question<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\nfirst answer<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\nsecond question<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n"
    )  # the image part is dropped: a text-only target reads Message.text
    reply = asyncio.run(target.respond(conv, GREEDY))
    assert reply.prompt_tokens == len(target.tokenizer(prompt, add_special_tokens=False)["input_ids"])


def test_concurrent_calls_are_batched(model_dir: Path) -> None:
    target = hf(model_dir, batch_size=4)
    ticks = 0

    async def ticker(stop: asyncio.Event) -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.001)

    async def main() -> list[str]:
        stop = asyncio.Event()
        tick_task = asyncio.create_task(ticker(stop))
        replies = await asyncio.gather(*(target.respond(c, GenParams(temperature=0, max_tokens=24))
                                         for c in convs(10)))
        stop.set()
        await tick_task
        return [r.text for r in replies]

    texts = asyncio.run(main())
    assert len(texts) == 10
    assert target.batch_sizes == [4, 4, 2]
    assert ticks >= 2, "the event loop was blocked while the model generated"


def test_different_params_never_share_a_batch(model_dir: Path) -> None:
    target = hf(model_dir, batch_size=8)
    a, b = GenParams(temperature=0, max_tokens=3), GenParams(temperature=0, max_tokens=5)

    async def main() -> None:
        await asyncio.gather(*(target.respond(c, p) for c in convs(3) for p in (a, b)))

    asyncio.run(main())
    assert sorted(target.batch_sizes) == [3, 3]


@pytest.mark.parametrize("params", [GREEDY, GenParams(temperature=0.9, max_tokens=8)],
                         ids=["greedy", "sampled"])
def test_respond_many_matches_respond(model_dir: Path, params: GenParams) -> None:
    batched = hf(model_dir, batch_size=4)
    single = hf(model_dir, batch_size=1)
    many = asyncio.run(batched.respond_many(convs(6), params))
    one_by_one = [asyncio.run(single.respond(c, params)) for c in convs(6)]
    assert [r.text for r in many] == [r.text for r in one_by_one]
    assert max(batched.batch_sizes) == 4
    assert set(single.batch_sizes) == {1}


def test_sampling_is_reproducible_and_varies_by_prompt(target: HFCausalLMTarget) -> None:
    params = GenParams(temperature=1.0, max_tokens=12)
    first = asyncio.run(target.respond_many(convs(4), params))
    again = asyncio.run(target.respond_many(list(reversed(convs(4))), params))
    assert [r.text for r in first] == [r.text for r in reversed(again)]
    assert len({r.text for r in first}) > 1


def test_max_tokens_is_respected(target: HFCausalLMTarget) -> None:
    for params in (GenParams(temperature=0, max_tokens=3), GenParams(temperature=0.7, max_tokens=5)):
        replies = asyncio.run(target.respond_many(convs(5), params))
        assert all(r.completion_tokens is not None and r.completion_tokens <= params.max_tokens
                   for r in replies)


def test_identity_names_the_resolved_folder(model_dir: Path) -> None:
    target = make_target(f"hf:{model_dir}/../{model_dir.name}")
    assert str(model_dir.resolve()) in target.identity()
    assert target.identity() == hf(model_dir).identity()


def test_missing_folder_is_a_spec_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(SpecError, match=r"config\.json") as info:
        make_target(f"hf:{missing}")
    assert str(missing) in str(info.value)


def test_folder_without_model_files_is_a_spec_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(SpecError, match=r"lacks config\.json, weights, tokenizer files"):
        make_target(f"hf:{tmp_path}")


def test_folder_without_chat_template_is_a_spec_error(model_dir: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(model_dir, tmp_path / "model"))
    (copy / "chat_template.jinja").unlink()
    with pytest.raises(SpecError, match="chat template"):
        make_target(f"hf:{copy}")


def test_generation_failure_is_a_target_error_and_the_target_recovers(model_dir: Path) -> None:
    target = hf(model_dir)
    real = target.model

    class Broken:
        device = real.device

        def generate(self, **kwargs: object) -> None:
            raise RuntimeError("out of memory (simulated)")

    target.model = Broken()
    with pytest.raises(TargetError, match="out of memory"):
        asyncio.run(target.respond_many(convs(3), GREEDY))
    target.model = real
    assert len(asyncio.run(target.respond_many(convs(3), GREEDY))) == 3


def test_xdist_workers_get_a_share_of_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    before = torch.get_num_threads()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", str(os.cpu_count() or 1))
    try:
        assert configure_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_importing_the_package_and_target_module_does_not_import_torch() -> None:
    code = ("import sys, pytest_mtmcs, pytest_mtmcs.targets, pytest_mtmcs.targets.hf, "
            "pytest_mtmcs.targets.smollm2; "
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_sampling_defaults_in_the_folder_do_not_override_greedy(model_dir: Path, tmp_path: Path) -> None:
    """Hub models often ship generation_config.json with do_sample=true; temperature 0 stays greedy."""
    copy = Path(shutil.copytree(model_dir, tmp_path / "model"))
    gen = json.loads((copy / "generation_config.json").read_text())
    gen.update(do_sample=True, temperature=1.5, top_k=0)
    (copy / "generation_config.json").write_text(json.dumps(gen))
    sampling_default = hf(copy)
    first = asyncio.run(sampling_default.respond_many(convs(4), GREEDY))
    again = asyncio.run(sampling_default.respond_many(convs(4), GREEDY))
    reference = asyncio.run(hf(model_dir).respond_many(convs(4), GREEDY))
    assert [r.text for r in first] == [r.text for r in again] == [r.text for r in reference]
