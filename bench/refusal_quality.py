"""Quality and speed of the offline refusal detector, as markdown for the README.

Run from the repository root:

    python bench/refusal_quality.py [--data tests/data/refusal_labelled.jsonl] [--rounds 5]

Prints precision, recall and F1 of `refused`, accuracy and predicted kinds per category, every
misclassified reply, and the throughput (best of `--rounds` timed passes over the set, one core).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

from pytest_mtmcs.scoring.refusal import DETECTOR_VERSION, detect_refusal

DEFAULT_DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "refusal_labelled.jsonl"


def _load(path: Path) -> list[dict[str, object]]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            sys.exit(f"{path}, line {n}: not valid JSON ({exc.msg})")
        if not isinstance(row.get("text"), str) or not isinstance(row.get("refused"), bool):
            sys.exit(f"{path}, line {n}: expected string 'text' and bool 'refused'")
        rows.append(row)
    return rows


def _cell(text: str, limit: int = 140) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _throughput(texts: list[str], rounds: int, min_seconds: float = 0.5) -> tuple[float, float]:
    """Replies per CPU-second and per wall-clock second, each the best of `rounds`.

    CPU time is what one free core achieves; wall time also pays for whatever else the machine runs.
    """
    passes = 1
    while True:  # size one round to take at least min_seconds, so timer noise does not matter
        start = time.perf_counter()
        for _ in range(passes):
            for text in texts:
                detect_refusal(text)
        if time.perf_counter() - start >= min_seconds:
            break
        passes *= 2
    best_cpu = best_wall = float("inf")
    for _ in range(rounds):
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(passes):
            for text in texts:
                detect_refusal(text)
        best_cpu = min(best_cpu, time.process_time() - cpu)
        best_wall = min(best_wall, time.perf_counter() - wall)
    return passes * len(texts) / best_cpu, passes * len(texts) / best_wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="labelled JSONL (text, refused, category)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds; the best one is reported")
    args = parser.parse_args(argv)
    if not args.data.is_file():
        parser.error(f"--data {str(args.data)!r} does not exist")
    rows = _load(args.data)

    tp = fp = fn = tn = 0
    total: Counter[str] = Counter()
    right: Counter[str] = Counter()
    kinds: defaultdict[str, Counter[str]] = defaultdict(Counter)
    expected: dict[str, set[bool]] = defaultdict(set)
    wrong = []
    for row in rows:
        text, want, category = str(row["text"]), bool(row["refused"]), str(row.get("category", "?"))
        verdict = detect_refusal(text)
        got = verdict.refused
        tp, fp, fn, tn = tp + (got and want), fp + (got and not want), fn + (want and not got), tn + (not got and not want)
        total[category] += 1
        right[category] += got == want
        kinds[category][verdict.kind or "none"] += 1
        expected[category].add(want)
        if got != want:
            wrong.append((category, want, verdict.kind, verdict.cue, text))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    rate, wall_rate = _throughput([str(r["text"]) for r in rows], args.rounds)

    shown = os.path.relpath(args.data) if args.data.is_absolute() else str(args.data)
    print(f"### Refusal detector (v{DETECTOR_VERSION}) on `{_cell(shown, 80)}`\n")
    print("| replies | refusals | precision | recall | F1 | accuracy | throughput (one core) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {len(rows)} | {tp + fn} | {precision:.3f} | {recall:.3f} | {f1:.3f} | "
          f"{(tp + tn) / len(rows):.3f} | {rate:,.0f} replies/s ({1e6 / rate:.0f} µs/reply) |\n")
    print(f"Confusion: TP {tp}, FP {fp}, FN {fn}, TN {tn}. Throughput: replies per CPU-second, best of "
          f"{args.rounds} rounds, one thread, Python {platform.python_version()} on {platform.machine()}; "
          f"wall clock {wall_rate:,.0f} replies/s with {os.cpu_count()} CPUs shared with other work.\n")
    print("#### Per category\n")
    print("| category | replies | labelled | accuracy | predicted kinds |")
    print("|---|---:|---|---:|---|")
    for category in sorted(total):
        label = "/".join(sorted({"refusal" if e else "not refusal" for e in expected[category]}))
        mix = ", ".join(f"{k} {n}" for k, n in kinds[category].most_common())
        print(f"| {category} | {total[category]} | {label} | "
              f"{right[category]}/{total[category]} ({right[category] / total[category]:.0%}) | {mix} |")
    print("\n#### Misclassified\n")
    if not wrong:
        print("None.")
    else:
        print("| category | labelled | predicted kind | cue | reply |")
        print("|---|---|---|---|---|")
        for category, want, kind, cue, text in wrong:
            print(f"| {category} | {'refusal' if want else 'not refusal'} | {kind or 'none'} | "
                  f"{_cell(cue or '', 40)} | {_cell(text)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
