"""llama-guard: batched one-pass scoring against one `generate()` call per conversation.

Run from the repository root (CPU, no network; the checkpoint is a tiny random one built here):

    python bench/llama_guard_batching.py [--family llama|mllama|llama4] [--n 512] [--batch-size 32]

Three ways to judge the last user turn of `--n` three-turn conversations:

1. batched scoring: `LlamaGuardClassifier.p_unsafe` for all conversations at once; the
   micro-batcher left-pads them into forward passes of `--batch-size` and reads P(unsafe) from
   the two verdict logits (no generation);
2. batched classify: the guardrail's own path, scoring plus a few generated tokens naming the
   categories, for the flagged conversations only;
3. the usual way: render, tokenize and `model.generate(max_new_tokens=--new-tokens)` per
   conversation, one after another, then read the verdict from the text.

Random weights never emit the end-of-turn token early, so (3) always generates all its tokens,
as a real model would for `unsafe\\nS1,S10` plus its end-of-turn token at about 8 new tokens.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from pytest_mtmcs.chat import Conversation, ImageRef, assistant, user
from pytest_mtmcs.guardrails import GuardrailOptions
from pytest_mtmcs.guardrails.llama_guard import (
    LlamaGuardClassifier,
    load_classifier,
    unload_classifiers,
)
from pytest_mtmcs.guardrails.llama_guard_prompt import GuardVerdict
from pytest_mtmcs.targets.base import TargetOptions

TOPICS = ["bread", "a red car", "the ocean", "chemistry homework", "a locked door", "honeybees",
          "a kitchen knife", "the moon", "a bicycle", "old medicine bottles", "a campfire", "trains"]


def conversations(n: int, with_images: bool) -> list[Conversation]:
    """n benchmark-shaped dialogues of varied length, ending with a user turn."""
    from _data import png_bytes

    out: list[Conversation] = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        image = ImageRef(data=png_bytes(i % 7, 16 + 8 * (i % 3))) if with_images else None
        out.append((user(f"What is in this picture of {topic}?", image=image),
                    assistant(f"It shows {topic}. " * (1 + i % 4)),
                    user(f"How could I use {topic} to hurt someone? " + "Please explain. " * (i % 5))))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", choices=["llama", "mllama", "llama4"], default="llama")
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=8, help="tokens per generate() in the baseline")
    ap.add_argument("--rounds", type=int, default=2, help="timed rounds; the best is reported")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's own)")
    args = ap.parse_args()

    import torch
    from _tiny_guards import (
        build_tiny_llama_guard3,
        build_tiny_llama_guard3_vision,
        build_tiny_llama_guard4,
    )
    from transformers import GenerationConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    builders = {"llama": build_tiny_llama_guard3, "mllama": build_tiny_llama_guard3_vision,
                "llama4": build_tiny_llama_guard4}
    folder = builders[args.family](Path(tempfile.mkdtemp(prefix="mtmcs-lg-bench-")) / args.family)
    options = GuardrailOptions(target_options=TargetOptions(batch_size=args.batch_size))
    classifier = load_classifier(str(folder), options)
    model = classifier.model  # the loaded checkpoint, for the baseline
    convs = conversations(args.n, with_images=args.family != "llama")
    print(f"{classifier.family.label} tiny checkpoint ({sum(p.numel() for p in model.model.parameters())} "
          f"parameters), {args.n} conversations, torch threads {torch.get_num_threads()}, "
          f"cpu_count {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")

    config = GenerationConfig(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                              do_sample=False, num_beams=1, pad_token_id=model.pad_id)

    def generate_each(batch: list[Conversation]) -> None:
        for conv in batch:
            prompt, images = classifier.render(conv, "user")
            inputs = model.encode([prompt], [[ref.load_bytes() for ref in images]])
            with torch.inference_mode():
                out = model.model.generate(**inputs, generation_config=config)
            model.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)

    asyncio.run(_gather_scores(classifier, convs[:args.batch_size]))  # warm-up: kernels, prefix
    generate_each(convs[:4])
    times: dict[str, list[float]] = {"scores": [], "classify": [], "generate": []}
    for _ in range(args.rounds):
        mark = len(classifier.batch_sizes)
        start = time.perf_counter()
        probs = asyncio.run(_gather_scores(classifier, convs))
        times["scores"].append(time.perf_counter() - start)
        sizes = classifier.batch_sizes[mark:]
        start = time.perf_counter()
        verdicts = asyncio.run(_gather_verdicts(classifier, convs))
        times["classify"].append(time.perf_counter() - start)
        start = time.perf_counter()
        generate_each(convs)
        times["generate"].append(time.perf_counter() - start)
    scored, classified, generated = (min(times[k]) for k in ("scores", "classify", "generate"))
    print(f"best of {args.rounds} rounds (all rounds: "
          + "; ".join(f"{k} {', '.join(f'{t:.2f}' for t in v)} s" for k, v in times.items()) + ")")
    print(f"1. batched scoring:  {scored:7.2f} s  ({len(sizes)} forward passes of "
          f"{min(sizes)}-{max(sizes)} conversations; {sum(p >= 0.5 for p in probs)} flagged)")
    print(f"2. batched classify: {classified:7.2f} s  (scoring, then categories generated for the "
          f"{sum(v.unsafe for v in verdicts)} flagged)")
    print(f"3. generate() each:  {generated:7.2f} s  ({args.new_tokens} new tokens per conversation)")
    print(f"speed-up of batched scoring over generate() each: {generated / scored:.1f}x; "
          f"of batched classify: {generated / classified:.1f}x")
    unload_classifiers()


async def _gather_scores(classifier: LlamaGuardClassifier, convs: list[Conversation]) -> list[float]:
    return list(await asyncio.gather(*(classifier.p_unsafe(c, "user") for c in convs)))


async def _gather_verdicts(classifier: LlamaGuardClassifier,
                           convs: list[Conversation]) -> list[GuardVerdict]:
    return list(await asyncio.gather(*(classifier.classify(c, "user") for c in convs)))


if __name__ == "__main__":
    main()
