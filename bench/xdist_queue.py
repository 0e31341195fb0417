"""xdist against one process: the same rollout with `-n 0` and `-n 2`, each on a fresh store.

    python bench/xdist_queue.py [--rows 64] [--latency 0.2] [--concurrency 16]

Against the local load server (its own process, fixed latency), prints for each mode the wall
time of the whole pytest process and the calls the server answered, so the README can show
that workers sharing the store's work queue make no call twice and keep the throughput of one
process (the same total concurrency, split between the workers).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import rollout_speed
from synth import build


def _run(data: Path, url: str, log: Path, store: Path, concurrency: int, mode: str) -> tuple[float, int, int]:
    log.write_text("")
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--tb=no", "-rN",
           mode, "--mtmcs", f"--mtmcs-data={data}", f"--mtmcs-target=openai+{url}:mock",
           f"--mtmcs-store={store}", f"--mtmcs-concurrency={concurrency}"]
    started = time.perf_counter()
    subprocess.run(cmd, cwd=data.parent, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    keys = [json.loads(line)["sha256"] for line in log.read_text().splitlines() if line.strip()]
    return wall, len(keys), len(keys) - len(set(keys))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=64, help="rows per split")
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "data"
        build(data, args.rows, ROOT / "fixtures" / "mtmcs-sample", None)
        log = work / "calls.jsonl"
        proc, url = rollout_speed.start_server(args.latency, log=log)
        try:
            rows = []
            for mode in ("-n0", "-n2"):
                wall, calls, repeated = _run(data, url, log, work / f"store{mode}.sqlite",
                                             args.concurrency, mode)
                rows.append((mode, wall, calls, repeated))
        finally:
            rollout_speed.stop_server(proc)
    print(f"{args.rows} rows per split, latency {args.latency} s, concurrency {args.concurrency}")
    print("| mode | wall | calls answered | repeated calls |")
    print("| --- | --- | --- | --- |")
    for mode, wall, calls, repeated in rows:
        print(f"| `pytest --mtmcs {mode}` | {wall:.1f} s | {calls} | {repeated} |")


if __name__ == "__main__":
    main()
