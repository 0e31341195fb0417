"""Tiny random checkpoints for tests, built fully offline (no hub, no downloads).

Every builder writes a complete `save_pretrained` folder (weights, config, tokenizer with a
chat template) into the folder it is given and returns that folder, so tests exercise the real
`from_pretrained(local_dir)` path. Weights are random (seeded), so outputs are gibberish but
deterministic; the tokenizer is a byte-level BPE trained in-process on a small corpus.

To add a family (Mllama, Llama4, ...): build a tokenizer with `build_tokenizer` (pass the family's
special tokens and template), build the model from a small config with `torch.manual_seed`,
and `save_pretrained` both, as `build_tiny_llama` does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

CORPUS: tuple[str, ...] = (
    "The quick brown fox jumps over the lazy dog.",
    "What is the capital of France? The capital of France is Paris.",
    "I'm sorry, but I can't help with that request.",
    "Sure, here is a helpful answer to your question.",
    "Please describe the image. The image shows a red car parked near a tree.",
    "How do I bake bread? Mix flour, water, salt and yeast, then knead and bake.",
    "Safety matters: never mix bleach and ammonia.",
    "user assistant system hello world thanks goodbye",
    "0 1 2 3 4 5 6 7 8 9 10 100 1000",
) * 4

LLAMA_SPECIALS: tuple[str, ...] = (
    "<pad>", "<unk>", "<bos>", "<eos>", "<|image|>",
    "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
)

LLAMA_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<|image|>{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n{% endif %}"
)
"""A Llama-3-shaped chat template (headers, end-of-turn token, generation prompt)."""


def build_tokenizer(*, specials: Sequence[str] = LLAMA_SPECIALS, chat_template: str = LLAMA_TEMPLATE,
                    corpus: Iterable[str] = CORPUS, vocab_size: int = 512, bos: str = "<bos>",
                    eos: str = "<|eot_id|>", pad: str = "<pad>", unk: str = "<unk>",
                    extra_special_tokens: dict[str, str] | None = None) -> Any:
    """A byte-level BPE `PreTrainedTokenizerFast` trained on `corpus` (a few ms), with a chat template.

    Byte-level means any text round-trips, so random model output always decodes.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE(unk_token=unk))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(specials),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator(list(corpus), trainer)
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tk, bos_token=bos, eos_token=eos, unk_token=unk, pad_token=pad,
        extra_special_tokens=dict(extra_special_tokens or {}), chat_template=chat_template,
    )


def build_tiny_llama(folder: str | Path, *, seed: int = 0, hidden_size: int = 64,
                     num_layers: int = 4, num_heads: int = 4, num_kv_heads: int = 2,
                     intermediate_size: int = 128, initializer_range: float = 0.2,
                     tokenizer: Any = None) -> Path:
    """A random `LlamaForCausalLM` (~0.2 M parameters) plus tokenizer, saved into `folder`.

    `initializer_range` is larger than a real model's so the logits are peaked: greedy decoding
    then does not hinge on float noise between padded and unpadded batches.
    Returns the folder, ready for `hf:<folder>`.
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok = tokenizer if tokenizer is not None else build_tokenizer()
    stop = [tok.convert_tokens_to_ids(t) for t in ("<|eot_id|>", "<eos>") if t in tok.get_vocab()]
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=intermediate_size,
        num_hidden_layers=num_layers, num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads, max_position_embeddings=2048,
        initializer_range=initializer_range, tie_word_embeddings=False,
        bos_token_id=tok.bos_token_id, eos_token_id=stop, pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()  # type: ignore[no-untyped-call]
    model.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
        bos_token_id=tok.bos_token_id, eos_token_id=stop, pad_token_id=tok.pad_token_id)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def param_count(folder: str | Path) -> int:
    """Number of parameters of the checkpoint in `folder` (for sizing assertions)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    return sum(p.numel() for p in model.parameters())
