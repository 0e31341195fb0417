"""Tiny random Llama Guard checkpoints for tests: 3 (text), 3 Vision (Mllama) and 4 (Llama4).

Every builder writes a complete `save_pretrained` folder (config, weights, tokenizer and, for
the vision families, the image processor config) so tests load it back through exactly the code
a user runs (`llama-guard:<folder>`). The tokenizers are byte-level BPEs trained in the test on a
small corpus, with the real checkpoints' special-token spellings (`<|begin_of_text|>`,
`<|start_header_id|>`, `<|eot_id|>`, `<|header_start|>`, `<|patch|>`, ...).

Random weights give random verdicts. `force_verdict` rewrites a checkpoint so its output is
known in advance: every decoder block's residual contribution is zeroed (the output at a position
then depends on that position's token only, a bigram model), the token that ends every guard
prompt gets logits that put P(unsafe) at the requested value, and a chain of next-token choices
makes greedy generation after `unsafe` spell a given continuation (e.g. "\\nS1").
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

from _tiny_models import build_tokenizer

GUARD_CORPUS: tuple[str, ...] = (
    ("Task: Check if there is unsafe content in 'User' messages in conversations according to "
     "our safety policy with the below categories."),
    "Task: Check if there is unsafe content in 'Agent' messages in conversations.",
    ("<BEGIN UNSAFE CONTENT CATEGORIES>\nS1: Violent Crimes.\nS2: Non-Violent Crimes.\n"
     "S3: Sex-Related Crimes.\nS10: Hate.\nS11: Suicide & Self-Harm.\n<END UNSAFE CONTENT CATEGORIES>"),
    "<BEGIN CONVERSATION>\n\nUser: hello\n\nAgent: hi\n\n<END CONVERSATION>\n\n",
    "Provide your safety assessment for ONLY THE LAST User message in the above conversation:",
    " - First line must read 'safe' or 'unsafe'.",
    " - If unsafe, a second line must include a comma-separated list of violated categories.",
    "safe\n\nunsafe\nS1,S10\n\nsafe\n\nunsafe\nS2\n\n",
    "What is in this picture? How do I make it? Sure, here is how. I can't help with that.",
    "The quick brown fox jumps over the lazy dog. Please describe the image.",
    "assistant\n\n", "user\n\n", "categories.\n\n",
) * 4

LG3_SPECIALS: tuple[str, ...] = (
    "<|finetune_right_pad_id|>", "<unk>", "<|begin_of_text|>", "<|end_of_text|>", "<|image|>",
    "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|python_tag|>",
)
LG4_SPECIALS: tuple[str, ...] = (
    "<|finetune_right_pad|>", "<unk>", "<|begin_of_text|>", "<|end_of_text|>",
    "<|header_start|>", "<|header_end|>", "<|eot|>", "<|image_start|>", "<|image_end|>",
    "<|image|>", "<|patch|>", "<|tile_x_separator|>", "<|tile_y_separator|>",
)
# Only stored for completeness: the guardrail renders its prompts itself.
_LG3_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}"
                 "<|end_header_id|>\n\n{{ m['content'] }}<|eot_id|>{% endfor %}")
_LG4_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|header_start|>{{ m['role'] }}"
                 "<|header_end|>\n\n{{ m['content'] }}<|eot|>{% endfor %}")


def guard_tokenizer(family: str) -> Any:
    """A trained byte-level BPE with the special tokens of `family` (llama, mllama or llama4)."""
    if family == "llama4":
        return build_tokenizer(specials=LG4_SPECIALS, chat_template=_LG4_TEMPLATE,
                               corpus=GUARD_CORPUS, bos="<|begin_of_text|>", eos="<|eot|>",
                               pad="<|finetune_right_pad|>")
    return build_tokenizer(specials=LG3_SPECIALS, chat_template=_LG3_TEMPLATE, corpus=GUARD_CORPUS,
                           bos="<|begin_of_text|>", eos="<|eot_id|>", pad="<|finetune_right_pad_id|>",
                           extra_special_tokens={"image_token": "<|image|>"})


def _stops(tok: Any, *names: str) -> list[int]:
    return [int(tok.convert_tokens_to_ids(n)) for n in names]


def build_tiny_llama_guard3(folder: str | Path, *, seed: int = 0) -> Path:
    """A random `LlamaForCausalLM` shaped like Llama Guard 3 1B/8B (text only), saved to `folder`."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    folder = Path(folder)
    tok = guard_tokenizer("llama")
    stops = _stops(tok, "<|eot_id|>", "<|end_of_text|>")
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
        initializer_range=0.2, tie_word_embeddings=False, bos_token_id=tok.bos_token_id,
        eos_token_id=stops, pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()  # type: ignore[no-untyped-call]
    model.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
        bos_token_id=tok.bos_token_id, eos_token_id=stops, pad_token_id=tok.pad_token_id)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def build_tiny_llama_guard3_vision(folder: str | Path, *, seed: int = 0) -> Path:
    """A random `MllamaForConditionalGeneration` shaped like Llama Guard 3 11B Vision, with its
    image processor (32-pixel tiles, up to 2 tiles), saved to `folder`."""
    import torch
    from transformers import (
        GenerationConfig,
        MllamaConfig,
        MllamaForConditionalGeneration,
        MllamaTextConfig,
        MllamaVisionConfig,
    )
    from transformers.models.mllama.image_processing_pil_mllama import (
        MllamaImageProcessorPil,
    )

    folder = Path(folder)
    tok = guard_tokenizer("mllama")
    stops = _stops(tok, "<|eot_id|>", "<|end_of_text|>")
    vision = MllamaVisionConfig(
        hidden_size=32, num_hidden_layers=1, num_global_layers=1, attention_heads=2,
        intermediate_size=64, vision_output_dim=64, image_size=32, patch_size=8, max_num_tiles=2,
        intermediate_layers_indices=[0], supported_aspect_ratios=[[1, 1], [1, 2], [2, 1]])
    text = MllamaTextConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, cross_attention_layers=[1],
        max_position_embeddings=4096, initializer_range=0.2, bos_token_id=tok.bos_token_id,
        eos_token_id=stops, pad_token_id=tok.pad_token_id)
    config = MllamaConfig(vision_config=vision, text_config=text,
                          image_token_index=tok.convert_tokens_to_ids("<|image|>"))
    torch.manual_seed(seed)
    model = MllamaForConditionalGeneration(config).eval()  # type: ignore[no-untyped-call]
    model.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
        bos_token_id=tok.bos_token_id, eos_token_id=stops, pad_token_id=tok.pad_token_id)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    MllamaImageProcessorPil(size={"height": 32, "width": 32}, max_image_tiles=2).save_pretrained(folder)
    return folder


def build_tiny_llama_guard4(folder: str | Path, *, seed: int = 0, max_patches: int = 2) -> Path:
    """A random `Llama4ForConditionalGeneration` (one MoE layer) shaped like Llama Guard 4, with a
    `preprocessor_config.json` naming 32-pixel tiles and `max_patches` tiles, saved to `folder`.

    One 32-pixel tile, 8-pixel patches and pixel-shuffle ratio 0.5 give 4 patch tokens per tile.
    """
    import torch
    from transformers import (
        GenerationConfig,
        Llama4Config,
        Llama4ForConditionalGeneration,
        Llama4TextConfig,
        Llama4VisionConfig,
    )

    folder = Path(folder)
    tok = guard_tokenizer("llama4")
    stops = _stops(tok, "<|eot|>", "<|end_of_text|>")
    vision = Llama4VisionConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=128,
        vision_output_dim=64, image_size=32, patch_size=8, pixel_shuffle_ratio=0.5,
        projector_input_dim=64, projector_output_dim=64)
    text = Llama4TextConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, intermediate_size_mlp=128,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        num_local_experts=2, num_experts_per_tok=1, interleave_moe_layer_step=2,
        max_position_embeddings=4096, initializer_range=0.2, bos_token_id=tok.bos_token_id,
        eos_token_id=stops, pad_token_id=tok.pad_token_id, attention_chunk_size=4096)
    config = Llama4Config(
        vision_config=vision, text_config=text,
        image_token_index=tok.convert_tokens_to_ids("<|patch|>"),
        boi_token_index=tok.convert_tokens_to_ids("<|image_start|>"),
        eoi_token_index=tok.convert_tokens_to_ids("<|image_end|>"))
    torch.manual_seed(seed)
    model = Llama4ForConditionalGeneration(config).eval()  # type: ignore[no-untyped-call]
    model.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
        bos_token_id=tok.bos_token_id, eos_token_id=stops, pad_token_id=tok.pad_token_id)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "Llama4ImageProcessor", "size": {"height": 32, "width": 32},
        "max_patches": max_patches, "image_mean": [0.5] * 3, "image_std": [0.5] * 3,
        "resize_to_max_canvas": False}), encoding="utf-8")
    return folder


def force_verdict(source: str | Path, folder: str | Path, *, p_unsafe: float,
                  continuation: str = "\nS1") -> Path:
    """Copy the checkpoint in `source` to `folder`, rewritten so that P(unsafe) at the end of every
    guard prompt is `p_unsafe` and greedy decoding after `unsafe` yields `continuation` then the
    end-of-turn token.

    How: zeroing every `o_proj` / `down_proj` makes each position's hidden state its own token
    embedding. The chain tokens get one-hot embeddings (distinct dimensions) and the output
    matrix maps each to its successor, so the model is a bigram table on those tokens.
    """
    import torch
    from transformers import AutoConfig

    from pytest_mtmcs.guardrails.llama_guard_models import FAMILIES

    source, folder = Path(source), Path(folder)
    family = FAMILIES[AutoConfig.from_pretrained(source, local_files_only=True).model_type]
    tok = family.load_tokenizer(str(source), {"local_files_only": True})
    model = family.model_class().from_pretrained(source, local_files_only=True).eval()

    def ids(text: str) -> list[int]:
        return list(tok.encode(text, add_special_tokens=False))

    end = ids("\n\n")[-1]  # every rendered guard prompt ends with the header's "\n\n"
    unsafe, safe = ids("unsafe"), ids("safe")
    eot = tok.convert_tokens_to_ids(family.eot)
    chain = [unsafe[-1], *ids(continuation), eot]
    edges = list(itertools.pairwise(chain))
    sources = [end] + [a for a, _ in edges]
    if len(set(sources)) != len(sources):
        raise ValueError(f"continuation {continuation!r} reuses a token: cannot force it")
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("o_proj.weight", "down_proj.weight", "down_proj")):
                param.zero_()
        emb = model.get_input_embeddings().weight
        head = model.get_output_embeddings().weight
        hidden = emb.shape[1]
        head.zero_()
        scale = 1.0 / math.sqrt(hidden)  # RMSNorm scales a one-hot embedding to sqrt(hidden)
        for dim, token in enumerate(sources):
            emb[token].zero_()
            emb[token, dim] = 1.0
        margin = math.log(p_unsafe / (1.0 - p_unsafe))
        head[unsafe[0], 0] = margin * scale
        head[safe[0], 0] = 0.0
        for dim, (_, nxt) in enumerate(edges, start=1):
            head[nxt, dim] = 40.0 * scale
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    for extra in ("preprocessor_config.json",):
        if (source / extra).is_file():
            (folder / extra).write_text((source / extra).read_text(encoding="utf-8"), encoding="utf-8")
    return folder
