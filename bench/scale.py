"""Full-size scale benchmark: one command, one Markdown table with the goals, PASS or MISS.

    python bench/scale.py [--rows 752] [--latency 0.2] [--concurrency 64] [--jitter 0]
                          [--fault-rate 0] [--serial-calls 60] [--collect-repeat 3]

The fixture rows are replicated to `--rows` rows per split with 8 intent questions per modality
(752 rows: 6,016 dialogues and 30,080 pytest items, the published size); padded questions get
distinct wording, so every item costs a real call (15,040 dialogue calls and 24,064 question
calls at full size). A local OpenAI-compatible load server runs in its own process, a fresh one
per measurement, and counts the calls it answered (its `--log`, one line per finished call).

Measured in this one run:
- bare:    a bare asyncio loop making the same distinct calls through the same `openai` client
           with the same concurrency (a semaphore of `--concurrency` around each call), once
           with the SDK's `create()` as users write it, once with its raw `post()` (the path
           the plugin takes); the goal is judged against the faster of the two;
- mtmcs:   `pytest --mtmcs` with a fresh store, process start to exit, `--tb=no -rN`; its peak
           RSS is `ru_maxrss` from `os.wait4` on the pytest process, reaped by a small
           launcher process (the kernel's figure for that process alone; see
           `rollout_speed.measured`);
- warm:    the same command again (every reply in the store; the server must see no call)
           against plain pytest running as many trivial parametrized tests;
- collect: `pytest --mtmcs --collect-only -q` of all items, best of `--collect-repeat`;
- serial:  the official release's way, one request at a time, on a slice of about
           `--serial-calls` calls, extrapolated per call to the full call count.
Nothing is left running: every server is stopped and reaped, the scratch folder removed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import collect_speed
import rollout_speed
import synth

if TYPE_CHECKING:
    from typing_extensions import Self

    from pytest_mtmcs.dataset import Case, Question

GOAL_VS_BARE = 1.10
GOAL_RSS_MB = 600.0
GOAL_COLLECT_S = 5.0
GOAL_WARM_VS_TRIVIAL = 1.3


# ------------------------------------------------------------------------------------ data
def distinct_questions(data: Path) -> None:
    """Give padded questions distinct wording, so that no two questions of a dialogue make
    the same request (the engine would rightly ask an identical request once)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for f in sorted((data / "data").glob("*.parquet")):
        table = pq.read_table(f)
        rows = table.to_pylist()
        for r in rows:
            for field in ("multimodal_mcq", "unimodal_mcq", "multimodal_tf", "unimodal_tf"):
                seen: set[str] = set()
                for i, q in enumerate(r[field]):
                    if q["question"] in seen:
                        q["question"] = f"{q['question']} (variant {i})"
                    seen.add(q["question"])
        pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), f)


@dataclass(frozen=True)
class Unit:
    """Calls that depend on one another: a shared prefix of turns, then one branch per
    dialogue (Type A's safe and unsafe share R1 and R2), then each dialogue's questions."""

    prefix: tuple[str, ...]
    branches: tuple[str, ...]
    """The last turn of each dialogue in `cases` (empty when the prefix is the whole dialogue)."""
    cases: tuple[Case, ...]
    uri: str | None
    """The image as a data URI on the last user message (multimodal), else None."""

    def questions(self, case: Case) -> list[Question]:
        """The case's questions that make distinct requests (identical ones are asked once)."""
        seen: set[tuple[str, str, tuple[str, ...]]] = set()
        out = []
        for q in case.questions:
            key = (q.kind, q.question, q.options)
            if key not in seen:
                seen.add(key)
                out.append(q)
        return out

    @property
    def calls(self) -> int:
        """Distinct calls this unit makes."""
        return len(self.prefix) + len(self.branches) + sum(len(self.questions(c)) for c in self.cases)


def plan(data: Path) -> tuple[list[Unit], int, int]:
    """(units, dialogues, pytest items) of a dataset."""
    from pytest_mtmcs.chat import data_uri
    from pytest_mtmcs.dataset import DataSelection, load_cases

    cases = load_cases(DataSelection(data=str(data)))
    pairs: dict[tuple[str, int, str], list[Case]] = {}
    for c in cases:
        pairs.setdefault(c.pair_key, []).append(c)
    uris: dict[tuple[str, int], str] = {}
    units: list[Unit] = []
    for (split, row, _mod), pair in pairs.items():
        safe, unsafe = sorted(pair, key=lambda c: c.safety)  # "safe" < "unsafe"
        uri = None
        if safe.image is not None:
            uri = uris.get((split, row)) or uris.setdefault((split, row), data_uri(safe.image))
        if safe.turns[:2] == unsafe.turns[:2]:
            units.append(Unit(safe.turns[:2], (safe.turns[2], unsafe.turns[2]), (safe, unsafe), uri))
        else:
            units += [Unit(safe.turns, (), (safe,), uri), Unit(unsafe.turns, (), (unsafe,), uri)]
    n_items = len(cases) + sum(len(c.questions) for c in cases)
    return units, len(cases), n_items


# ------------------------------------------------------------------------------- bare loop
async def bare_loop(url: str, units: list[Unit], concurrency: int, *, api: str = "create",
                    retries: int = 0) -> int:
    """Roll out `units` with a plain `openai.AsyncOpenAI` client, at most `concurrency` calls
    in flight; `api` is "create" (`chat.completions.create`) or "post" (the SDK's raw post of
    the same body). Returns the number of calls made."""
    import openai
    from openai.types.chat import ChatCompletion

    from pytest_mtmcs.rollout.protocol import (
        MCQ_MAX_TOKENS,
        TF_MAX_TOKENS,
        question_prompt,
    )

    client = openai.AsyncOpenAI(base_url=url, api_key="bench", max_retries=retries, timeout=120)
    slots = asyncio.Semaphore(concurrency)
    calls = 0

    def content(text: str, uri: str | None) -> Any:
        if uri is None:
            return text
        return [{"type": "image_url", "image_url": {"url": uri}}, {"type": "text", "text": text}]

    async def ask(messages: list[dict[str, Any]], max_tokens: int) -> str:
        nonlocal calls
        async with slots:
            if api == "create":
                resp = await client.chat.completions.create(
                    model="bench", messages=messages,  # type: ignore[arg-type]
                    temperature=0.1, max_tokens=max_tokens)
            else:
                resp = await client.post("/chat/completions", cast_to=ChatCompletion, body={
                    "model": "bench", "messages": messages, "temperature": 0.1,
                    "max_tokens": max_tokens})
        calls += 1
        return resp.choices[0].message.content or ""

    async def turn(history: list[dict[str, Any]], text: str, uri: str | None) -> list[dict[str, Any]]:
        reply = await ask([*history, {"role": "user", "content": content(text, uri)}], 128)
        return [*history, {"role": "user", "content": text}, {"role": "assistant", "content": reply}]

    async def dialogue(history: list[dict[str, Any]], last: str | None, case: Case,
                       unit: Unit) -> None:
        if last is not None:
            history = await turn(history, last, unit.uri)
        replies = [m["content"] for m in history if m["role"] == "assistant"]

        async def question(q: Question) -> None:
            text = question_prompt(case, q, replies)
            await ask([{"role": "user", "content": content(text, unit.uri)}],
                      MCQ_MAX_TOKENS if q.kind == "mcq" else TF_MAX_TOKENS)

        await asyncio.gather(*(question(q) for q in unit.questions(case)))

    async def roll(unit: Unit) -> None:
        history: list[dict[str, Any]] = []
        for t in unit.prefix:
            history = await turn(history, t, unit.uri)
        if unit.branches:
            await asyncio.gather(*(dialogue(history, b, c, unit)
                                   for b, c in zip(unit.branches, unit.cases, strict=True)))
        else:
            await dialogue(history, None, unit.cases[0], unit)

    try:
        await asyncio.gather(*(roll(u) for u in units))
    finally:
        await client.close()
    return calls


# --------------------------------------------------------------------------------- helpers
def server_counts(log: Path, start: int = 0) -> tuple[int, int]:
    """(calls finished, calls answered 200) in the server's log from line `start` on."""
    lines = log.read_text().splitlines()[start:] if log.exists() else []
    recs = [json.loads(line) for line in lines]
    return len(recs), sum(r["status"] == 200 and r["completed"] for r in recs)


def log_lines(log: Path) -> int:
    """Lines in the server's log so far."""
    return len(log.read_text().splitlines()) if log.exists() else 0


def outcomes(line: str) -> dict[str, int]:
    """pytest's summary line as {"passed": n, "failed": m, ...}."""
    found = re.findall(r"(\d+) (passed|failed|errors?|skipped|deselected|xfailed|xpassed)", line)
    return {("error" if k.startswith("error") else k): int(n) for n, k in found}


def with_server(args: argparse.Namespace, log: Path, fn: Callable[[str], Any]) -> Any:
    """Run `fn(base_url)` against a fresh load server that is always stopped afterwards."""
    proc, url = rollout_speed.start_server(args.latency, jitter=args.jitter,
                                           fault_rate=args.fault_rate, log=log, seed=args.seed)
    try:
        return fn(url)
    finally:
        rollout_speed.stop_server(proc)


def cpu_s() -> float:
    """CPU time of this process so far, user plus system, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def verdict(ok: bool) -> str:
    """The result cell of a goal."""
    return "PASS" if ok else "**MISS**"


class Steal:
    """CPU time the hypervisor gave to other guests while a phase ran (/proc/stat `steal`), as
    a share of all CPU time: on a shared VM, a phase with high steal ran on a slower machine."""

    @staticmethod
    def _read() -> tuple[int, int]:
        try:
            fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        except (OSError, ValueError):
            return 0, 0
        return fields[7] if len(fields) > 7 else 0, sum(fields[:8])

    def __enter__(self) -> Self:
        self._start = self._read()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._read()
        total = end[1] - self._start[1]
        self.share = (end[0] - self._start[0]) / total if total > 0 else 0.0

    def __str__(self) -> str:
        return f"steal {100 * self.share:.0f}%"


# ------------------------------------------------------------------------------------ main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=752, help="rows per split (20 items each)")
    ap.add_argument("--latency", type=float, default=0.2, help="seconds per call at the server")
    ap.add_argument("--jitter", type=float, default=0.0, help="+/- seconds of uniform jitter per call")
    ap.add_argument("--fault-rate", type=float, default=0.0,
                    help="share of calls the server fails transiently (500, 503, 429, drop); "
                         "both clients retry them (up to --retries)")
    ap.add_argument("--retries", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0, help="seed of the server's fault draw")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--serial-calls", type=int, default=60,
                    help="calls made one at a time for the official-way estimate")
    ap.add_argument("--collect-repeat", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=2,
                    help="cache-warm re-runs and trivial runs, interleaved; the best of each counts")
    ap.add_argument("--bare-api", choices=("both", "create", "post"), default="both")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder (store, logs)")
    a = ap.parse_args()

    def note(msg: str) -> None:
        print(f"[{time.perf_counter() - started:6.0f} s] {msg}", file=sys.stderr, flush=True)

    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="mtmcs-scale-"))
    try:
        data = synth.build(tmp / "data", a.rows, ROOT / "fixtures" / "mtmcs-sample", 8)
        distinct_questions(data)
        units, n_dialogues, n_items = plan(data)
        n_calls = sum(u.calls for u in units)
        ideal = n_calls * a.latency / a.concurrency
        note(f"{n_dialogues} dialogues, {n_items} items, {n_calls} distinct calls; ideal {ideal:.1f} s")
        retries = a.retries if a.fault_rate > 0 else 0
        apis = ("create", "post") if a.bare_api == "both" else (a.bare_api,)

        def bare_run(api: str) -> tuple[float, int, str, float]:
            log = tmp / f"bare-{api}.jsonl"

            def go(url: str) -> tuple[float, float]:
                t, cpu = time.perf_counter(), cpu_s()
                asyncio.run(bare_loop(url, units, a.concurrency, api=api, retries=retries))
                return time.perf_counter() - t, cpu_s() - cpu

            with Steal() as st:
                wall, cpu = with_server(a, log, go)
            note(f"bare {api}: {wall:.1f} s, CPU {cpu:.1f} s ({st})")
            return wall, server_counts(log)[1], str(st), cpu

        # Order: a bare loop, pytest, the other bare loop, so drift on a shared machine hits
        # both sides alike.
        bare: dict[str, tuple[float, int, str, float]] = {apis[0]: bare_run(apis[0])}

        # One server for the cold run and the cache-warm re-runs: the target's identity (and
        # so every cache key) includes its URL, port and all.
        log = tmp / "mtmcs.jsonl"
        server, url = rollout_speed.start_server(a.latency, jitter=a.jitter, fault_rate=a.fault_rate,
                                                 log=log, seed=a.seed)
        try:
            mtmcs_cmd = [sys.executable, "-m", "pytest", "--mtmcs", f"--mtmcs-data={data}",
                         f"--mtmcs-target=openai+{url}:bench", f"--mtmcs-concurrency={a.concurrency}",
                         f"--mtmcs-retries={a.retries}", f"--mtmcs-store={tmp / 'store.sqlite'}",
                         "-p", "no:cacheprovider", "-q", "--tb=no", "-rN", str(data)]
            with Steal() as cold_steal:
                cold = rollout_speed.measured(mtmcs_cmd, tmp)
            if cold.returncode not in (0, 1):
                raise SystemExit(f"pytest --mtmcs failed ({cold.returncode}):\n{cold.stdout[-3000:]}\n"
                                 f"{cold.stderr[-3000:]}")
            mtmcs_attempts, mtmcs_ok = server_counts(log)
            note(f"mtmcs cold {cold.wall:.1f} s, CPU {cold.cpu_s:.1f} s ({cold_steal})")
            for api in apis[1:]:
                bare[api] = bare_run(api)
            best_api = min(bare, key=lambda k: bare[k][0])
            best_bare = bare[best_api][0]

            sample: list[Unit] = []
            for u in units:
                if sum(x.calls for x in sample) >= a.serial_calls:
                    break
                sample.append(u)
            sample_calls = sum(u.calls for u in sample)

            def run_serial(url: str) -> float:
                t = time.perf_counter()
                asyncio.run(bare_loop(url, sample, 1, retries=retries))
                return time.perf_counter() - t

            serial = with_server(a, tmp / "serial.jsonl", run_serial) / sample_calls * n_calls
            note(f"serial estimate: {serial:.0f} s")

            # Cache-warm re-runs (a server is up, so that any call it would make is counted)
            # interleaved with plain pytest on as many trivial items; best of --repeat each.
            triv = tmp / "trivial"
            triv.mkdir()
            (triv / "test_trivial.py").write_text(
                "import pytest\n\n"
                f"@pytest.mark.parametrize('i', range({n_items}))\n"
                "def test_trivial(i):\n    assert i >= 0\n")
            n_failed = outcomes(cold.tail).get("failed", 0)
            (triv / "test_mix.py").write_text(
                "import pytest\n\n"
                f"@pytest.mark.parametrize('i', range({n_items}))\n"
                f"def test_mix(i):\n    assert i >= {n_failed}\n")
            trivial_cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--tb=no", "-rN"]
            rollout_speed.measured([*trivial_cmd, str(triv / "test_trivial.py")], triv)  # bytecode
            warms, trivials = [], []
            with Steal() as warm_steal:
                for _ in range(a.repeat):
                    warms.append(rollout_speed.measured(mtmcs_cmd, tmp))
                    trivials.append(rollout_speed.measured([*trivial_cmd, str(triv / "test_trivial.py")],
                                                           triv))
            warm_calls = log_lines(log) - mtmcs_attempts
            warm = min(warms, key=lambda m: m.wall)
            trivial = min(trivials, key=lambda m: m.wall)
            mix = rollout_speed.measured([*trivial_cmd, str(triv / "test_mix.py")], triv)
            note(f"warm {[round(m.wall, 1) for m in warms]} s, trivial "
                 f"{[round(m.wall, 1) for m in trivials]} s ({warm_steal})")
        finally:
            rollout_speed.stop_server(server)

        collect_cmd = [sys.executable, "-m", "pytest", "--mtmcs", f"--mtmcs-data={data}",
                       f"--mtmcs-store={tmp / 'collect.sqlite'}", "--collect-only", "-q",
                       "-p", "no:cacheprovider", str(data)]
        collect_speed.run(collect_cmd, tmp)  # warm-up: bytecode caches
        collect = min((collect_speed.run(collect_cmd, tmp) for _ in range(a.collect_repeat)),
                      key=lambda r: r[0])
        m = re.search(r"(\d+) tests? collected", collect[2])
        collected = int(m.group(1)) if m else -1
        note(f"collect: {collect[0]:.2f} s")
    finally:
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            note(f"kept {tmp}")

    cold_out, warm_out = outcomes(cold.tail), outcomes(warm.tail)
    scored = sum(cold_out.get(k, 0) for k in ("passed", "failed"))
    rows = [
        ("size", f"{n_items:,} items scored",
         (f"{n_dialogues:,} dialogues, {n_items:,} items ({collected:,} collected, {scored:,} "
          f"passed or failed), {n_calls:,} distinct calls"),
         verdict(collected == n_items and scored == n_items)),
        ("ideal: calls x latency / concurrency", "", f"{ideal:.1f} s", ""),
        *[(f"bare asyncio loop, `openai` SDK `{api}()`", "",
           f"{w:.1f} s ({w / ideal:.2f}x ideal; CPU {cpu:.0f} s; server answered {ok:,}; {st})", "")
          for api, (w, ok, st, cpu) in bare.items()],
        ("`pytest --mtmcs`, fresh store, whole process, `--tb=no -rN`",
         f"<= {GOAL_VS_BARE:.2f}x bare ({best_api})",
         (f"{cold.wall:.1f} s = {cold.wall / best_bare:.2f}x bare, "
          f"{cold.wall / ideal:.2f}x ideal; CPU {cold.cpu_s:.0f} s ({cold_steal})"),
         verdict(cold.wall / best_bare <= GOAL_VS_BARE)),
        ("target calls answered (load server's log)", f"= {n_calls:,} distinct calls",
         f"{mtmcs_ok:,} answered of {mtmcs_attempts:,} attempts",
         verdict(mtmcs_ok == n_calls)),
        ("peak RSS of the pytest process (`os.wait4` ru_maxrss)", f"< {GOAL_RSS_MB:.0f} MB",
         f"{cold.max_rss_mb:.0f} MB (cache-warm re-run: {warm.max_rss_mb:.0f} MB)",
         verdict(cold.max_rss_mb < GOAL_RSS_MB)),
        (f"collection, `--collect-only -q`, best of {a.collect_repeat}", f"< {GOAL_COLLECT_S:.0f} s",
         f"{collect[0]:.2f} s whole process (pytest's own figure {collect[1]} s)",
         verdict(collect[0] < GOAL_COLLECT_S)),
        (f"cache-warm re-run, `--tb=no -rN`, best of {a.repeat}",
         f"< {GOAL_WARM_VS_TRIVIAL}x trivial, 0 calls",
         (f"{warm.wall:.1f} s = {warm.wall / trivial.wall:.2f}x trivial (CPU {warm.cpu_s:.0f} s "
          f"against {trivial.cpu_s:.0f} s); {warm_calls} calls made ({warm_steal})"),
         verdict(warm.wall / trivial.wall < GOAL_WARM_VS_TRIVIAL and warm_calls == 0)),
        (f"plain pytest, {n_items:,} trivial parametrized tests, `--tb=no -rN`, best of {a.repeat}",
         "", (f"{trivial.wall:.1f} s (as many failing as the re-run, {n_failed:,}: {mix.wall:.1f} s; "
              f"re-run = {warm.wall / mix.wall:.2f}x that)"), ""),
        (f"official way, one request at a time ({sample_calls} calls, x per-call time)", "",
         f"{serial:,.0f} s: pytest-mtmcs is {serial / cold.wall:.1f}x faster", ""),
    ]
    print(f"\nlatency {a.latency * 1000:.0f} ms (jitter +/-{a.jitter * 1000:.0f} ms, fault rate "
          f"{a.fault_rate:g}), concurrency {a.concurrency}, {os.cpu_count()} CPUs, "
          f"{time.perf_counter() - started:.0f} s in all; cold run: {cold.tail}\n")
    print("| measure | goal | value | result |\n| --- | --- | --- | --- |")
    for measure, goal, value, result in rows:
        print(f"| {measure} | {goal} | {value} | {result} |")
    print(json.dumps({"rows": a.rows, "dialogues": n_dialogues, "items": n_items, "calls": n_calls,
                      "ideal_s": ideal, "bare_s": {k: v[0] for k, v in bare.items()},
                      "bare_cpu_s": {k: v[3] for k, v in bare.items()},
                      "mtmcs_s": cold.wall, "mtmcs_cpu_s": cold.cpu_s, "warm_cpu_s": warm.cpu_s,
                      "trivial_cpu_s": trivial.cpu_s, "mtmcs_answered": mtmcs_ok,
                      "mtmcs_attempts": mtmcs_attempts, "rss_mb": cold.max_rss_mb,
                      "warm_rss_mb": warm.max_rss_mb, "collect_s": collect[0],
                      "warm_s": [m.wall for m in warms], "warm_calls": warm_calls,
                      "trivial_s": [m.wall for m in trivials], "trivial_mix_s": mix.wall,
                      "serial_estimate_s": serial, "cold_outcomes": cold_out,
                      "warm_outcomes": warm_out}))


if __name__ == "__main__":
    main()
