"""Collection time of the full-size benchmark: 752 rows per split, 30,080 pytest items.

    python bench/collect_speed.py [--rows 752] [--repeat 3]

The fixture rows are replicated to 752 rows per split with 8 questions per modality, so the
item count equals the published 30,080 samples (4 dialogues + 16 questions per row). Reports
the wall time of `pytest --mtmcs --collect-only -q` (process start to exit) and pytest's own
"collected in" figure, best of `--repeat`, beside a plain parametrized file of as many items.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import synth

# Bytecode caching on, as on a user's machine (some shells export PYTHONDONTWRITEBYTECODE,
# which makes every run recompile pytest's assertion-rewritten modules).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run(cmd: list[str], cwd: Path) -> tuple[float, float | None, str]:
    t = time.perf_counter()
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=ENV)
    wall = time.perf_counter() - t
    last = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else res.stderr[-300:]
    m = re.search(r"in ([0-9.]+)s", last)
    if res.returncode != 0:
        raise SystemExit(f"failed ({res.returncode}): {last}\n{res.stderr[-1500:]}")
    return wall, float(m.group(1)) if m else None, last


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=752)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mtmcs-collect-"))
    data = synth.build(tmp / "data", a.rows, ROOT / "fixtures" / "mtmcs-sample", 8)
    mt_cmd = [sys.executable, "-m", "pytest", "--mtmcs", f"--mtmcs-data={data}",
              f"--mtmcs-store={tmp / 's.sqlite'}", "--collect-only", "-q", "-p", "no:cacheprovider",
              str(data)]
    n_items = a.rows * 2 * 20
    (tmp / "test_plain.py").write_text(
        f"import pytest\n\n@pytest.mark.parametrize('i', range({n_items}))\n"
        "def test_plain(i):\n    pass\n")
    plain_cmd = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                 str(tmp / "test_plain.py")]
    results = {}
    runs = (("pytest --mtmcs --collect-only", mt_cmd), ("plain parametrize --collect-only", plain_cmd))
    for name, cmd in runs:
        run(cmd, tmp)  # warm-up: bytecode caches
        best = min((run(cmd, tmp) for _ in range(a.repeat)), key=lambda r: r[0])
        results[name] = best
    print(f"{n_items} items ({a.rows} rows per split), best of {a.repeat}\n")
    print("| command | wall (process) | pytest's 'collected in' | last line |\n| --- | --- | --- | --- |")
    for name, (wall, own, last) in results.items():
        print(f"| {name} | {wall:.2f} s | {own if own is not None else '-'} s | {last} |")


if __name__ == "__main__":
    main()
