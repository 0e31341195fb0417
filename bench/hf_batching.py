"""Measure the smollm2 target: conversion, folder load, batch-1 vs batch-16 throughput, disk size.

    python bench/hf_batching.py                       # converts into a fresh temp cache (~35 s)
    python bench/hf_batching.py --cache-dir .mtmcs    # reuse (or create) a cache folder
    python bench/hf_batching.py --single 4 --new-tokens 64

Throughput counts useful tokens only (each reply's completion_tokens, up to its end-of-turn):
rows of a batch that finish early still ride along until the longest one ends, and that cost
is part of the measured wall time. Prompts ask for long answers so most replies use all tokens.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pytest_mtmcs.chat import GenParams, user
from pytest_mtmcs.targets import TargetOptions, make_target

TOPICS = ["the ocean", "a lighthouse keeper", "volcanoes", "the history of bread", "a city at night",
          "honeybees", "the moon landing", "a mountain village", "trains", "autumn forests",
          "a robot learning to paint", "desert storms", "the printing press", "coral reefs",
          "a chess tournament", "winter in Norway"]


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def throughput(batch_size: int, n: int, new_tokens: int, cache_dir: str) -> tuple[float, int, float]:
    """(useful tokens per second, tokens, wall seconds) for n prompts at this batch size."""
    target = make_target("smollm2", TargetOptions(cache_dir=cache_dir, batch_size=batch_size))
    params = GenParams(temperature=0, max_tokens=new_tokens)
    convs = [(user(f"Write a long, detailed essay about {TOPICS[i % len(TOPICS)]}."),) for i in range(n)]
    asyncio.run(target.respond((user("Hi"),), GenParams(temperature=0, max_tokens=4)))  # warm-up
    start = time.perf_counter()
    replies = asyncio.run(target.respond_many(convs, params))
    wall = time.perf_counter() - start
    tokens = sum(r.completion_tokens or 0 for r in replies)
    print(f"  batch_size={batch_size}: batches {target.batch_sizes[1:]}, {tokens} tokens in {wall:.1f} s")
    return tokens / wall, tokens, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache-dir", help="cache folder (default: a fresh temp folder, so conversion is timed)")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--single", type=int, default=4, help="prompts for the batch-1 run (sequential)")
    ap.add_argument("--batched", type=int, default=16, help="prompts for the batch-16 run (one batch)")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's own)")
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from pytest_mtmcs.targets.smollm2 import ensure_converted

    cache = args.cache_dir or tempfile.mkdtemp(prefix="mtmcs-bench-")
    print(f"cache {cache}; torch threads {torch.get_num_threads()}, cpu_count {os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.1f} (other processes compete for the cores)")
    folder, converted = ensure_converted(cache)
    done = f"{converted:.1f} s" if converted is not None else "reused existing folder"
    print(f"conversion: {done}")
    t = time.perf_counter()
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401  (imports not timed below)

    imported = time.perf_counter() - t
    t = time.perf_counter()
    make_target("smollm2", TargetOptions(cache_dir=cache))
    print(f"load converted folder (make_target): {time.perf_counter() - t:.2f} s "
          f"(plus {imported:.1f} s importing transformers when not yet imported)")
    print(f"disk size of {folder}: {folder_size(folder) / 2**20:.0f} MiB")
    tps1, _, _ = throughput(1, args.single, args.new_tokens, cache)
    tps16, _, _ = throughput(16, args.batched, args.new_tokens, cache)
    print(f"tokens/s at {args.new_tokens} new tokens: batch 1 {tps1:.1f}, batch 16 {tps16:.1f} "
          f"(x{tps16 / tps1:.1f}); load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
