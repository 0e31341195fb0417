"""The hf: target on a tiny random Gemma 3 VLM built in the test: images, text, batching, options."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("torch", reason='needs the hf extra: pip install "pytest-mtmcs[hf]"')
pytest.importorskip("transformers", reason='needs the hf extra: pip install "pytest-mtmcs[hf]"')

from _data import png_bytes
from _tiny_models import LLAMA_TEMPLATE, build_tiny_llama, build_tokenizer
from _tiny_vlm import TOKENS_PER_IMAGE, build_tiny_gemma3

from pytest_mtmcs.chat import (
    Conversation,
    GenParams,
    ImagePart,
    ImageRef,
    Message,
    TextPart,
    assistant,
    user,
)
from pytest_mtmcs.errors import SpecError
from pytest_mtmcs.targets import TargetOptions, make_target
from pytest_mtmcs.targets.hf import HFCausalLMTarget
from pytest_mtmcs.targets.hf_vision import HFVisionTarget, load_processor, load_vision

GREEDY = GenParams(temperature=0, max_tokens=8)


@pytest.fixture(scope="module")
def vlm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_gemma3(tmp_path_factory.mktemp("tiny-gemma3"))


def vlm(folder: Path, batch_size: int = 4, dtype: str = "auto") -> HFVisionTarget:
    target = make_target(f"hf:{folder}", TargetOptions(batch_size=batch_size, dtype=dtype))
    assert isinstance(target, HFVisionTarget)
    return target


@pytest.fixture(scope="module")
def target(vlm_dir: Path) -> HFVisionTarget:
    return vlm(vlm_dir)


def image(seed: int) -> ImageRef:
    return ImageRef(data=png_bytes(seed))


def dialogue(i: int, seed: int | None = None) -> Conversation:
    """A rollout-shaped conversation: history with an assistant turn, image on the last user turn."""
    return (user(f"first question {i}"), assistant("first answer"),
            user("hello " * (i % 3 + 1) + "describe it", image=image(i if seed is None else seed)))


def text_only(i: int) -> Conversation:
    return (user("hello " * (i + 1) + f"question {i}"),)


def test_multimodal_dialogue_renders_in_order_and_generates(target: HFVisionTarget) -> None:
    conv = dialogue(0)
    assert target.render_prompt(conv) == (
        "<bos><start_of_turn>user\nfirst question 0<end_of_turn>\n"
        "<start_of_turn>model\nfirst answer<end_of_turn>\n"
        "<start_of_turn>user\n<start_of_image>hello describe it<end_of_turn>\n"
        "<start_of_turn>model\n")
    reply = asyncio.run(target.respond(conv, GREEDY))
    assert reply.text
    assert reply.completion_tokens and 1 <= reply.completion_tokens <= GREEDY.max_tokens
    assert reply.latency_s > 0
    text_tokens = len(target.tokenizer(target.render_prompt(conv), add_special_tokens=False)["input_ids"])
    assert reply.prompt_tokens is not None
    assert reply.prompt_tokens >= text_tokens + TOKENS_PER_IMAGE  # placeholders were expanded
    assert target.supports_images is True


def test_the_image_changes_the_reply(target: HFVisionTarget) -> None:
    replies = asyncio.run(target.respond_many([dialogue(0, seed=s) for s in range(4)], GREEDY))
    assert len({r.text for r in replies}) > 1


def test_text_only_conversation_generates(target: HFVisionTarget) -> None:
    conv = (Message(role="system", content="Answer Yes or No."), user("Is this safe?"))
    assert "<start_of_image>" not in target.render_prompt(conv)
    reply = asyncio.run(target.respond(conv, GREEDY))
    assert reply.text and reply.completion_tokens


def test_images_on_earlier_messages_are_sent_unless_the_family_takes_one(vlm_dir: Path) -> None:
    conv = (user("first", image=image(1)), assistant("ok"),
            Message(role="user", content=(TextPart(text="compare with"), ImagePart(image=image(2)))))
    both = vlm(vlm_dir)
    messages, refs = both.chat_messages(conv)
    assert [r.data for r in refs] == [png_bytes(1), png_bytes(2)]
    assert [p["type"] for p in messages[2]["content"]] == ["text", "image"]  # order kept
    assert both.render_prompt(conv).count("<start_of_image>") == 2
    assert asyncio.run(both.respond(conv, GREEDY)).completion_tokens
    single = vlm(vlm_dir)
    single.max_images = 1
    messages, refs = single.chat_messages(conv)
    assert [r.data for r in refs] == [png_bytes(2)]  # the latest image is the one kept
    assert messages[0]["content"] == [{"type": "text", "text": "first"}]
    assert asyncio.run(single.respond(conv, GREEDY)).completion_tokens


@pytest.mark.parametrize("params", [GREEDY, GenParams(temperature=0.9, max_tokens=8)],
                         ids=["greedy", "sampled"])
def test_batched_equals_one_at_a_time(vlm_dir: Path, params: GenParams) -> None:
    convs = [dialogue(0), text_only(0), dialogue(1), dialogue(2), text_only(1), dialogue(3),
             dialogue(4)]
    batched, single = vlm(vlm_dir, batch_size=4), vlm(vlm_dir, batch_size=1)
    many = asyncio.run(batched.respond_many(convs, params))
    one_by_one = [asyncio.run(single.respond(c, params)) for c in convs]
    assert [r.text for r in many] == [r.text for r in one_by_one]
    assert [r.prompt_tokens for r in many] == [r.prompt_tokens for r in one_by_one]
    assert sorted(batched.batch_sizes) == [1, 2, 4]  # image and text prompts never share a batch


def test_seeded_sampling_is_reproducible_and_seeds_differ(target: HFVisionTarget) -> None:
    convs = [dialogue(i) for i in range(3)]

    def texts(seed: int | None) -> list[str]:
        params = GenParams(temperature=1.0, max_tokens=8, seed=seed)
        return [r.text for r in asyncio.run(target.respond_many(convs, params))]

    assert texts(1) == texts(1)
    assert texts(None) == texts(None)
    assert texts(1) != texts(2)


def test_max_tokens_is_respected(target: HFVisionTarget) -> None:
    convs = [dialogue(i) for i in range(3)] + [text_only(0)]
    for params in (GenParams(temperature=0, max_tokens=2), GenParams(temperature=0.7, max_tokens=5)):
        replies = asyncio.run(target.respond_many(convs, params))
        assert all(r.completion_tokens is not None and 1 <= r.completion_tokens <= params.max_tokens
                   for r in replies)


def test_dtype_option_is_honoured_and_named_in_identity(vlm_dir: Path, target: HFVisionTarget) -> None:
    half = vlm(vlm_dir, dtype="bfloat16")
    assert {str(p.dtype) for p in half.model.parameters()} == {"torch.bfloat16"}
    assert {str(p.dtype) for p in target.model.parameters()} == {"torch.float32"}  # auto on CPU
    record = json.loads(half.identity())
    assert record["dtype"] == "bfloat16" and json.loads(target.identity())["dtype"] == "float32"
    assert record["source"] == str(vlm_dir.resolve()) and record["kind"] == "hf-image-text-to-text"
    assert asyncio.run(half.respond(dialogue(0), GREEDY)).completion_tokens


@pytest.mark.parametrize(("field", "value", "allowed"), [
    ("dtype", "fp8", "auto, float32, bfloat16, float16"),
    ("device", "gpu", "cpu, cuda, cuda:N"),
])
def test_bad_dtype_or_device_is_a_spec_error(vlm_dir: Path, field: str, value: str,
                                             allowed: str) -> None:
    with pytest.raises(SpecError, match=f"unknown {field} '{value}'; allowed: {allowed}"):
        make_target(f"hf:{vlm_dir}", TargetOptions.model_validate({field: value}))


def test_absent_gpu_is_a_spec_error(vlm_dir: Path) -> None:
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(SpecError, match=f"'cuda:{count}' requested but torch sees {count} CUDA"):
        make_target(f"hf:{vlm_dir}", TargetOptions(device=f"cuda:{count}"))


def test_from_spec_picks_the_text_target_for_a_causal_lm(tmp_path: Path) -> None:
    folder = build_tiny_llama(tmp_path / "llama")
    text = make_target(f"hf:{folder}", TargetOptions(dtype="bfloat16"))
    assert type(text) is HFCausalLMTarget and text.supports_images is False
    assert {str(p.dtype) for p in text.model.parameters()} == {"torch.bfloat16"}
    assert asyncio.run(text.respond(text_only(0), GREEDY)).completion_tokens
    with pytest.raises(SpecError, match="unknown dtype"):
        make_target(f"hf:{folder}", TargetOptions(dtype="int4"))


def test_missing_folder_is_a_spec_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    for build in (lambda: make_target(f"hf:{missing}"),
                  lambda: load_vision(str(missing), TargetOptions())):
        with pytest.raises(SpecError, match=r"does not exist.*config\.json") as info:
            build()
        assert str(missing) in str(info.value)


def test_processor_without_torchvision_is_rebuilt_from_its_pil_class(tmp_path: Path) -> None:
    """LLaVA-OneVision's AutoProcessor needs torchvision (its video processor); the rebuild not."""
    from PIL import Image
    from transformers import LlavaOnevisionImageProcessorPil, LlavaOnevisionProcessor

    from pytest_mtmcs.targets.hf_vision import without_video_processor

    tok = build_tokenizer(specials=("<pad>", "<unk>", "<bos>", "<eos>", "<image>", "<video>"),
                          chat_template=LLAMA_TEMPLATE.replace("<|image|>", "<image>"),
                          extra_special_tokens={"image_token": "<image>", "video_token": "<video>"})
    image_only = without_video_processor(LlavaOnevisionProcessor)
    image_only(image_processor=LlavaOnevisionImageProcessorPil(), tokenizer=tok,
               num_image_tokens=4, vision_feature_select_strategy="full",
               chat_template=tok.chat_template).save_pretrained(tmp_path)
    processor = load_processor(str(tmp_path), local_files_only=True)
    assert isinstance(processor, LlavaOnevisionProcessor)
    messages: Any = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}]
    prompt = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    out = processor(text=[prompt], images=[[Image.new("RGB", (20, 20))]], return_tensors="pt")
    assert out["pixel_values"].ndim >= 4 and out["input_ids"].shape[1] > 4

    (tmp_path / "processor_config.json").write_text(json.dumps({"processor_class": "NoSuchProcessor"}))
    with pytest.raises(SpecError, match=r"AutoProcessor failed .* and so did the torchvision-free"):
        load_processor(str(tmp_path), local_files_only=True)
