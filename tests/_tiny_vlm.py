"""A tiny random image-text-to-text checkpoint (Gemma 3 family), built fully offline.

Why Gemma 3: `AutoProcessor` loads its processor without torchvision (transformers picks
`Gemma3ImageProcessorPil` by itself), so the folder exercises exactly what a user's
`hf:/path/to/gemma-3` does; the model is a plain decoder with image soft tokens (no
cross-attention, no tiling), small and fast on a CPU.

The builder writes a complete `save_pretrained` folder (model, processor config, tokenizer,
chat template) and returns it. Weights are seeded-random, so output is gibberish but
deterministic. Three choices keep the output informative for tests:
- untied input/output embeddings and `initializer_range=0.2`: greedy output varies with the
  prompt instead of repeating one token;
- the multimodal projector, which Gemma 3 initialises to zeros, gets random weights, so the
  image actually changes the reply;
- 32x32 images in 8x8 patches, pooled to 2x2 = 4 soft tokens per image (`mm_tokens_per_image`
  must be a perfect square and equal the processor's `image_seq_length`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _tiny_models import build_tokenizer

GEMMA3_SPECIALS: tuple[str, ...] = (
    "<pad>", "<unk>", "<bos>", "<eos>", "<start_of_image>", "<end_of_image>",
    "<image_soft_token>", "<start_of_turn>", "<end_of_turn>",
)

GEMMA3_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<start_of_image>{% elif c['type'] == 'text' %}{{ c['text'] }}"
    "{% endif %}{% endfor %}{% endif %}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
"""A Gemma-3-shaped chat template: turns, `<start_of_image>` where each image part sits."""

IMAGE_SIZE = 32
TOKENS_PER_IMAGE = 4


def build_tiny_gemma3(folder: str | Path, *, seed: int = 0, hidden_size: int = 32,
                      initializer_range: float = 0.2, tokenizer: Any = None) -> Path:
    """A random `Gemma3ForConditionalGeneration` (~0.07 M parameters) plus processor, saved into
    `folder`. Returns the folder, ready for `hf:<folder>`."""
    import torch
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3ImageProcessorPil,
        Gemma3Processor,
        GenerationConfig,
    )

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok = tokenizer if tokenizer is not None else build_tokenizer(
        specials=GEMMA3_SPECIALS, chat_template=GEMMA3_TEMPLATE, eos="<end_of_turn>",
        extra_special_tokens={"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
                              "image_token": "<image_soft_token>"})
    stop = [tok.convert_tokens_to_ids(t) for t in ("<end_of_turn>", "<eos>")]
    processor = Gemma3Processor(  # type: ignore[no-untyped-call]
        image_processor=Gemma3ImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}),
        tokenizer=tok, chat_template=GEMMA3_TEMPLATE, image_seq_length=TOKENS_PER_IMAGE)
    config = Gemma3Config(
        text_config={
            "vocab_size": len(tok), "hidden_size": hidden_size, "intermediate_size": 2 * hidden_size,
            "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
            "head_dim": 16, "max_position_embeddings": 1024, "sliding_window": 128,
            "initializer_range": initializer_range, "tie_word_embeddings": False,
            "bos_token_id": tok.bos_token_id, "eos_token_id": stop, "pad_token_id": tok.pad_token_id,
        },
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "image_size": IMAGE_SIZE, "patch_size": 8},
        mm_tokens_per_image=TOKENS_PER_IMAGE, boi_token_index=tok.boi_token_id,
        eoi_token_index=tok.convert_tokens_to_ids("<end_of_image>"),
        image_token_index=tok.image_token_id, initializer_range=initializer_range,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Gemma3ForConditionalGeneration(config).eval()
    projector = model.model.multi_modal_projector.mm_input_projection_weight
    torch.nn.init.normal_(projector.data, std=1.0)  # zeros by default: images would not matter
    model.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
        bos_token_id=tok.bos_token_id, eos_token_id=stop, pad_token_id=tok.pad_token_id)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
