"""Quality and speed of the offline refusal detector, as markdown for the README.

Run from the repository root:

    python bench/refusal_quality.py                       # every split, then the speed
    python bench/refusal_quality.py --split heldout       # one split
    python bench/refusal_quality.py --data my_set.jsonl   # any labelled JSONL file

Splits (tests/data/README.md describes the files):

- `tuning`: refusal_tuning.jsonl and refusal_labelled.jsonl; the rules were tuned on these.
- `heldout`: refusal_heldout_v2.jsonl, frozen by hash and never tuned on.
- `legacy`: refusal_heldout.jsonl, the first held-out set (replies only, no requests).

For each split: precision, recall and F1 of `refused`, hedge-then-comply replies counted as refusals
(the worst error: it passes a model that helped), accuracy and predicted kinds per labelled kind.
Misclassified replies are listed for the tuning split and for `--data`; the held-out ones only with
`--show-heldout-errors`, so that reading them does not turn the held-out set into a tuning set.
Speed: replies per CPU-second on one core, best of `--rounds`, and the time 30,000 three-turn
dialogues would take.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pytest_mtmcs.scoring.refusal import DETECTOR_VERSION, detect_refusal

DATA = ROOT / "tests" / "data"
SPLITS = {
    "tuning": (DATA / "refusal_tuning.jsonl", DATA / "refusal_labelled.jsonl"),
    "heldout": (DATA / "refusal_heldout_v2.jsonl",),
    "legacy": (DATA / "refusal_heldout.jsonl",),
}
DIALOGUES, TURNS = 30_000, 3


def _load(path: Path) -> list[dict[str, object]]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            sys.exit(f"{path}, line {n}: not valid JSON ({exc.msg})")
        if not isinstance(row.get("text"), str) or not isinstance(row.get("refused"), bool):
            sys.exit(f"{path}, line {n}: expected string 'text' and bool 'refused'")
        if "request" in row and not isinstance(row["request"], str):
            sys.exit(f"{path}, line {n}: field 'request' must be a string when present")
        rows.append(row)
    return rows


def _label(row: dict[str, object]) -> str:
    """The labelled kind (new files) or category (the first two files)."""
    return str(row.get("kind", row.get("category", "?")))


def _request(row: dict[str, object]) -> str | None:
    request = row.get("request")
    return request if isinstance(request, str) else None


def _cell(text: str, limit: int = 140) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class Score:
    """Confusion counts of one split, per kind, and the misclassified rows."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    total: Counter[str] = field(default_factory=Counter)
    right: Counter[str] = field(default_factory=Counter)
    kinds: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    wrong: list[tuple[str, bool, str, str, str]] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0


def score(rows: list[dict[str, object]]) -> Score:
    s = Score()
    for row in rows:
        want, label = bool(row["refused"]), _label(row)
        verdict = detect_refusal(str(row["text"]), _request(row))
        got = verdict.refused
        s.tp, s.fp = s.tp + (got and want), s.fp + (got and not want)
        s.fn, s.tn = s.fn + (want and not got), s.tn + (not got and not want)
        s.total[label] += 1
        s.right[label] += got == want
        s.kinds[label][verdict.kind or "none"] += 1
        if got != want:
            s.wrong.append((label, want, f"{verdict.kind or 'none'} ({verdict.reason})", verdict.cue or "",
                            str(row["text"])))
    return s


def report(title: str, rows: list[dict[str, object]], show_errors: bool) -> Score:
    s = score(rows)
    f1 = 2 * s.precision * s.recall / (s.precision + s.recall) if s.precision + s.recall else 0.0
    hedged = s.total["hedge_then_comply"] - s.right["hedge_then_comply"]
    with_request = sum(_request(r) is not None for r in rows)
    print(f"### Refusal detector (v{DETECTOR_VERSION}) on {title}\n")
    print("| replies | with request | refusals | precision | recall | F1 | accuracy "
          "| hedge-then-comply read as refusals |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {len(rows)} | {with_request} | {s.tp + s.fn} | {s.precision:.3f} | {s.recall:.3f} | {f1:.3f} | "
          f"{(s.tp + s.tn) / len(rows):.3f} | {hedged} of {s.total['hedge_then_comply']} |\n")
    print(f"Confusion: TP {s.tp}, FP {s.fp}, FN {s.fn}, TN {s.tn}.\n")
    print("| kind | replies | accuracy | predicted kinds |")
    print("|---|---:|---:|---|")
    for label in sorted(s.total):
        mix = ", ".join(f"{k} {n}" for k, n in s.kinds[label].most_common())
        print(f"| {label} | {s.total[label]} | {s.right[label]}/{s.total[label]} "
              f"({s.right[label] / s.total[label]:.0%}) | {mix} |")
    if show_errors:
        print("\n#### Misclassified\n")
        if not s.wrong:
            print("None.")
        else:
            print("| kind | labelled | predicted | cue | reply |")
            print("|---|---|---|---|---|")
            for label, want, kind, cue, text in s.wrong:
                labelled = "refusal" if want else "not refusal"
                print(f"| {label} | {labelled} | {kind} | {_cell(cue, 40)} | {_cell(text)} |")
    else:
        print(f"\n{len(s.wrong)} misclassified (not listed; `--show-heldout-errors` lists them).")
    print()
    return s


def throughput(rows: list[dict[str, object]], rounds: int, min_seconds: float = 0.5) -> tuple[float, float]:
    """Replies per CPU-second and per wall-clock second, each the best of `rounds`.

    CPU time is what one free core achieves; wall time also pays for whatever else the machine runs.
    """
    pairs = [(str(r["text"]), _request(r)) for r in rows]
    passes = 1
    while True:  # size one round to take at least min_seconds, so timer noise does not matter
        start = time.perf_counter()
        for _ in range(passes):
            for text, request in pairs:
                detect_refusal(text, request)
        if time.perf_counter() - start >= min_seconds:
            break
        passes *= 2
    best_cpu = best_wall = float("inf")
    for _ in range(rounds):
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(passes):
            for text, request in pairs:
                detect_refusal(text, request)
        best_cpu = min(best_cpu, time.process_time() - cpu)
        best_wall = min(best_wall, time.perf_counter() - wall)
    return passes * len(pairs) / best_cpu, passes * len(pairs) / best_wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--split", choices=[*SPLITS, "all"], default="all",
                        help="which labelled split to score (default: all, one after the other)")
    parser.add_argument("--data", type=Path, action="append",
                        help="score this labelled JSONL file instead of a split (repeatable)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds; the best one is reported")
    parser.add_argument("--show-heldout-errors", action="store_true",
                        help="also list held-out misclassifications")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds} must be at least 1")

    everything: list[dict[str, object]] = []
    if args.data:
        for path in args.data:
            if not path.is_file():
                parser.error(f"--data {str(path)!r} does not exist")
            rows = _load(path)
            shown = os.path.relpath(path) if path.is_absolute() else str(path)
            report(f"`{_cell(shown, 80)}`", rows, show_errors=True)
            everything += rows
    else:
        for name in (SPLITS if args.split == "all" else [args.split]):
            rows = [row for path in SPLITS[name] for row in _load(path)]
            files = ", ".join(f"`{p.name}`" for p in SPLITS[name])
            shown = args.show_heldout_errors or name == "tuning"
            report(f"the {name} split ({files})", rows, show_errors=shown)
            everything += rows

    rate, wall_rate = throughput(everything, args.rounds)
    seconds = DIALOGUES * TURNS / rate
    print(f"Throughput: {rate:,.0f} replies per CPU-second ({1e6 / rate:.0f} µs/reply; reply and request), "
          f"best of {args.rounds} rounds over {len(everything)} replies, one thread, Python "
          f"{platform.python_version()} on {platform.machine()}; wall clock {wall_rate:,.0f} replies/s with "
          f"{os.cpu_count()} CPUs shared with other work. {DIALOGUES:,} dialogues of {TURNS} turns: "
          f"{seconds:.0f} s on one core.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
