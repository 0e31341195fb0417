"""Rollout speed against a local OpenAI-compatible load server, measured in one run.

    python bench/rollout_speed.py [--rows 250] [--latency 0.2] [--concurrency 32] [--variants]

Prints one markdown table for the README:
- bare:   a bare asyncio loop making the same distinct calls (growing history, image on the
          last user message; Type A's shared R1/R2 once per pair) through the same `openai`
          client at the same concurrency;
- mtmcs:  `pytest --mtmcs` (dialogue items only) with a fresh store, whole process wall time;
- warm:   the same pytest command again (every call cached, failure tracebacks off) against
          the same number of trivial parametrized tests;
- serial: the official release's way, one request at a time, on a slice, extrapolated
          per call to the same number of calls (so the speed-up is a ratio from this run);
- ideal:  calls x latency / concurrency.
The load server runs in its own process so it does not share the client's GIL.
With `--variants`, both sides also roll out every multimodal dialogue on each of its row's
variant images (`--mtmcs-variants all`): the ratio to the bare loop should stay the same.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import synth


def start_server(latency: float, *, jitter: float = 0.0, fault_rate: float = 0.0,
                 log: Path | None = None, seed: int = 0) -> tuple[subprocess.Popen[str], str]:
    """Start the load server in its own process; returns (process, base URL).

    `log`: the server appends one JSON line per finished call there (its call counter).
    `fault_rate`: the share of calls answered with a transient fault (500, 503, 429, drop),
    the same call numbers on every start with the same `seed`.
    """
    cmd = [sys.executable, "-m", "pytest_mtmcs.testing.server", "--port", "0",
           "--latency", str(latency), "--jitter", str(jitter), "--fault-rate", str(fault_rate),
           "--seed", str(seed), "--retry-after", "0.2"]
    if log is not None:
        cmd += ["--log", str(log)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("READY "):
        proc.kill()
        proc.wait()
        raise SystemExit(f"load server did not start: {line!r}")
    return proc, line.split(" ", 1)[1]


def stop_server(proc: subprocess.Popen[str]) -> None:
    """Stop a server started by `start_server` and reap it (nothing is left running)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


@dataclass(frozen=True)
class Measured:
    """One subprocess run: wall time (start to exit), exit code, output, peak RSS."""

    wall: float
    returncode: int
    stdout: str
    stderr: str
    max_rss_mb: float
    """The command's own peak resident set size: `ru_maxrss` from `os.wait4` on its pid."""
    cpu_s: float = 0.0
    """CPU time the command used, user plus system, all its threads (from the same rusage)."""

    @property
    def tail(self) -> str:
        """The last line of stdout (pytest's summary line), else the end of stderr."""
        out = self.stdout.strip()
        return out.splitlines()[-1] if out else self.stderr[-500:]


# Linux carries a process's high-water RSS into a forked child's ru_maxrss (exec keeps the
# larger of the old and new figures), so a child forked from this big bench process would
# report at least this process's RSS. A small launcher forks the command instead, reaps it
# with wait4 and writes its wall time, exit code and ru_maxrss (KiB) to the file in argv[1].
_LAUNCHER = """
import json, os, subprocess, sys, time
t = time.perf_counter()
p = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(p.pid, 0)
wall = time.perf_counter() - t
p.returncode = os.waitstatus_to_exitcode(status)
with open(sys.argv[1], "w") as f:
    json.dump({"wall": wall, "rc": p.returncode, "maxrss_kib": usage.ru_maxrss,
               "cpu": usage.ru_utime + usage.ru_stime}, f)
"""


def measured(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> Measured:
    """Run `cmd` to completion through a small launcher process that reaps it with `os.wait4`:
    the wall time is from its start to its exit, the peak RSS the kernel's `ru_maxrss` of
    that process alone (see `_LAUNCHER`), the CPU time its user plus system time."""
    with tempfile.TemporaryDirectory() as d:
        res = subprocess.run([sys.executable, "-c", _LAUNCHER, str(Path(d) / "m.json"), *cmd],
                             cwd=cwd, capture_output=True, text=True, env=env or ENV, check=False)
        m = json.loads((Path(d) / "m.json").read_text())
    return Measured(m["wall"], m["rc"], res.stdout, res.stderr, m["maxrss_kib"] / 1024, m["cpu"])


def work_units(data: Path, variants: bool = False
               ) -> tuple[list[tuple[list[str], list[str], str | None]], int]:
    """The distinct calls the protocol needs, as units the bare loop rolls out in order.

    A unit is (shared prefix turns, branch turns, image URI): Type A's safe and unsafe
    dialogues share R1 and R2, so they form one unit ([r1, r2], [safe_r3, unsafe_r3]), 4 calls;
    each Type B dialogue is its own unit ([r1, r2, r3], []), 3 calls. Returns the units and the
    number of dialogues. With `variants`, the multimodal pairs on each variant image too.
    """
    from pytest_mtmcs.chat import data_uri
    from pytest_mtmcs.dataset import DataSelection, load_cases

    cases = load_cases(DataSelection(data=str(data), variants=None if variants else 0))
    uris: dict[tuple[int, int], str] = {}
    pairs: dict[tuple[str, int, str, int], list] = {}
    for c in cases:
        pairs.setdefault((*c.pair_key, c.variant), []).append(c)
    units = []
    for (_split, row, _mod, variant), pair in pairs.items():
        uri = None
        if pair[0].image is not None:
            uri = uris.get((row, variant)) or uris.setdefault((row, variant), data_uri(pair[0].image))
        safe, unsafe = pair
        if safe.turns[:2] == unsafe.turns[:2]:
            units.append((list(safe.turns[:2]), [safe.turns[2], unsafe.turns[2]], uri))
        else:
            units += [(list(safe.turns), [], uri), (list(unsafe.turns), [], uri)]
    return units, len(cases)


async def bare_loop(url: str, units: list[tuple[list[str], list[str], str | None]],
                    concurrency: int) -> int:
    import openai

    client = openai.AsyncOpenAI(base_url=url, api_key="bench", max_retries=0, timeout=120)
    queue = list(reversed(units))
    calls = 0

    async def ask(history: list[dict], text: str, uri: str | None) -> list[dict]:
        nonlocal calls
        last = {"role": "user", "content": text if uri is None else [
            {"type": "image_url", "image_url": {"url": uri}}, {"type": "text", "text": text}]}
        resp = await client.chat.completions.create(
            model="bench", messages=[*history, last], temperature=0.1, max_tokens=128)
        calls += 1
        return [*history, {"role": "user", "content": text},
                {"role": "assistant", "content": resp.choices[0].message.content}]

    async def worker() -> None:
        while queue:
            prefix, branches, uri = queue.pop()
            history: list[dict] = []
            for t in prefix:
                history = await ask(history, t, uri)
            for b in branches:
                await ask(history, b, uri)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    await client.close()
    return calls


# Bytecode caching on, as on a user's machine (some shells export PYTHONDONTWRITEBYTECODE,
# which makes every run recompile pytest's assertion-rewritten modules).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(cmd: list[str], cwd: Path) -> tuple[float, str]:
    t = time.perf_counter()
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=ENV, check=False)
    wall = time.perf_counter() - t
    tail = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else res.stderr[-500:]
    if res.returncode not in (0, 1):
        raise SystemExit(f"command failed ({res.returncode}): {' '.join(cmd)}\n"
                         f"{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    return wall, tail


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=250, help="rows per split (4 dialogues each)")
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--serial-dialogues", type=int, default=20)
    ap.add_argument("--variants", action="store_true",
                    help="also roll out every multimodal dialogue on its variant images")
    a = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="mtmcs-bench-"))
    data = synth.build(tmp / "data", a.rows, ROOT / "fixtures" / "mtmcs-sample", None)
    work, n_dialogues = work_units(data, a.variants)
    n_calls = sum(len(p) + len(b) for p, b, _ in work)
    ideal = n_calls * a.latency / a.concurrency
    server, url = start_server(a.latency)
    try:
        t = time.perf_counter()
        bare_calls = asyncio.run(bare_loop(url, work, a.concurrency))
        bare = time.perf_counter() - t
        assert bare_calls == n_calls

        t = time.perf_counter()
        sample = work[: a.serial_dialogues]
        asyncio.run(bare_loop(url, sample, 1))
        serial_per_call = (time.perf_counter() - t) / sum(len(p) + len(b) for p, b, _ in sample)
        serial = serial_per_call * n_calls

        cmd = [sys.executable, "-m", "pytest", "--mtmcs", f"--mtmcs-data={data}",
               f"--mtmcs-target=openai+{url}:bench", f"--mtmcs-concurrency={a.concurrency}",
               f"--mtmcs-store={tmp / 'store.sqlite'}", "--mtmcs-skip-questions",
               *(["--mtmcs-variants=all"] if a.variants else []),
               "-p", "no:cacheprovider", "-q", "--tb=no", "-rN", str(tmp)]
        timed([sys.executable, "-m", "pytest", "--co", "-q", "-p", "no:cacheprovider",
               "--mtmcs", f"--mtmcs-data={data}", str(tmp)], tmp)  # warm-up: bytecode caches
        cold, cold_tail = timed(cmd, tmp)
        warm, _ = timed(cmd, tmp)
        warm_full, _ = timed([c for c in cmd if c not in ("--tb=no", "-rN")], tmp)
        (tmp / "test_trivial.py").write_text(
            "import pytest\n\n"
            f"@pytest.mark.parametrize('i', range({n_dialogues}))\n"
            "def test_trivial(i):\n    assert i >= 0\n")
        trivial, _ = timed([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                            "--tb=no", "-rN", str(tmp / "test_trivial.py")], tmp)
    finally:
        stop_server(server)

    rows = [
        ("dialogues / distinct calls", f"{n_dialogues} / {n_calls}"),
        ("ideal (calls x latency / concurrency)", f"{ideal:.1f} s"),
        ("bare asyncio loop, same client and concurrency", f"{bare:.1f} s ({bare / ideal:.2f}x ideal)"),
        ("pytest --mtmcs, cold store, `--tb=no -rN` (whole process)",
         f"{cold:.1f} s ({cold / bare:.2f}x bare, {cold / ideal:.2f}x ideal)"),
        ("official way: one request at a time (per-call time x calls)",
         f"{serial:.0f} s (pytest-mtmcs is {serial / cold:.1f}x faster)"),
        ("pytest --mtmcs, cache-warm re-run, `--tb=no -rN`", f"{warm:.1f} s ({warm / trivial:.2f}x trivial)"),
        ("the same with every failure printed (default output)", f"{warm_full:.1f} s"),
        (f"pytest, {n_dialogues} trivial parametrized tests, `--tb=no -rN`", f"{trivial:.1f} s"),
    ]
    print(f"latency {a.latency * 1000:.0f} ms, concurrency {a.concurrency}, {os.cpu_count()} CPUs, "
          f"variant images {'all' if a.variants else 'none'}; "
          f"last pytest line: {cold_tail}\n")
    print("| measure | value |\n| --- | --- |")
    for k, v in rows:
        print(f"| {k} | {v} |")
    print(json.dumps({"ideal": ideal, "bare": bare, "mtmcs": cold, "warm": warm,
                      "warm_full_output": warm_full, "trivial": trivial,
                      "serial_estimate": serial, "calls": n_calls}))


if __name__ == "__main__":
    main()
