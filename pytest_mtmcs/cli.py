"""The `mtmcs` command: work with the JSON reports that `pytest --mtmcs-report` writes.

    mtmcs summary RUN.json        print the per-(split, modality) table of a stored run
    mtmcs compare A.json B.json   A/B two stored runs on the same dialogues: differences with
                                  intervals, McNemar's exact test, flipped dialogues, a verdict
    mtmcs score DIR               score result folders of the benchmark's own inference script
                                  (intent accuracy, refusals; with --judge SPEC, judged scores)
    mtmcs sample [DEST]           write the sample dataset that ships with pytest-mtmcs into
                                  DEST (default mtmcs-sample), for the quick start
    mtmcs --version

Exit codes: 0 done (and, with --fail-on-regression, no regression), 1 a significant regression,
4 bad input (a file that is missing, unreadable or not a pytest-mtmcs report, a bad option
value), 75 the judge's model server failed.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, ParamSpec, TextIO

from pytest_mtmcs.textsafety import for_terminal
from pytest_mtmcs.version import __version__

if TYPE_CHECKING:
    from pytest_mtmcs.reporting.report import RunReport

_P = ParamSpec("_P")

EXIT_BAD_INPUT = 4
"""Bad input, as pytest's usage error: a CI step can tell it from a regression (1)."""


class _BadInput(Exception):
    """A report file that cannot be read; the message says which and why."""




def _width() -> int:
    """The terminal's width (`COLUMNS` first, 80 when output is not a terminal): tables are
    laid out to fit it, never cut."""
    import shutil

    return shutil.get_terminal_size((80, 24)).columns

def _print(*values: object, file: TextIO | None = None) -> None:
    """print(), with text from reports and servers made inert (control characters escaped,
    secrets redacted): a report file is outside input like any other. A standard output closed
    by its reader (`mtmcs summary RUN.json | head`) ends the printing quietly (`_stdout_gone`),
    and the command goes on to its files and its exit code."""
    try:
        print(*(for_terminal(str(v)) for v in values), file=file)
    except BrokenPipeError:
        if file is not None and file is not sys.stdout:
            raise
        _stdout_gone()


def _stdout_gone() -> None:
    """The reader of standard output went away (EPIPE): point the descriptor at devnull, so
    neither the next print nor the flush at exit raises again (Python's documented recipe,
    see the `signal` module's note on SIGPIPE)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _quiet_on_closed_stdout(main: Callable[_P, int]) -> Callable[_P, int]:
    """Run `main`, then flush standard output; a reader that closed it early (`| head`) gets
    no traceback: the exit code is the command's own, 0 when output was cut before it had one
    (argparse's --help)."""
    @functools.wraps(main)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> int:
        try:
            code = main(*args, **kwargs)
            sys.stdout.flush()
        except BrokenPipeError:
            _stdout_gone()
            return 0
        return code

    return run

def _load(path: Path) -> RunReport:
    import pytest

    from pytest_mtmcs.reporting.post_run import load_baseline

    try:
        return load_baseline(str(path), option="mtmcs:")
    except pytest.UsageError as exc:
        raise _BadInput(str(exc)) from None


def _summary(path: Path) -> int:
    from pytest_mtmcs.reporting.names import stack_names
    from pytest_mtmcs.reporting.robustness_views import robustness_lines
    from pytest_mtmcs.reporting.terminal import gate_lines, summary_lines

    try:
        report = _load(path)
    except _BadInput as exc:
        _print(exc, file=sys.stderr)
        return EXIT_BAD_INPUT
    _print(f"{path}: target {report.target}, data {report.data}, created {report.created}")
    if report.rollout:
        _print(report.rollout)
    for line in summary_lines(report.summary, width=_width()):
        _print(line)
    names = stack_names([(g.target, g.guardrail) for g in report.summary])
    for line in robustness_lines(report.robustness, width=_width(), names=names):
        _print(line)
    if report.coverage is not None and report.coverage.partial:
        _print(report.coverage.line())
    for line in gate_lines(report.gates, width=_width()):
        _print(line)
    return 0


def _pick_stacks(a: RunReport, b: RunReport, stack_a: str | None,
                 stack_b: str | None) -> list[tuple[tuple[str, str], tuple[str, str]]]:
    """Which stack of A goes with which of B: the named guardrails, else one each, else the
    guardrails both reports share."""
    from pytest_mtmcs.reporting.compare import stacks

    sa, sb = stacks(a), stacks(b)

    def named(st: list[tuple[str, str]], name: str, which: str) -> tuple[str, str]:
        found = [s for s in st if name in (s[1], f"{s[0]}+{s[1]}")]
        if not found:
            raise _BadInput(f"mtmcs compare: report {which} has no stack {name!r} (it has: "
                            f"{', '.join(g for _, g in st)})")
        return found[0]

    if stack_a or stack_b:
        pa = named(sa, stack_a, "A") if stack_a else (sa[0] if len(sa) == 1 else None)
        pb = named(sb, stack_b, "B") if stack_b else (sb[0] if len(sb) == 1 else None)
        if pa is None or pb is None:
            raise _BadInput("mtmcs compare: name the stack of both reports (--stack-a, --stack-b)"
                            " when one holds several guardrails")
        return [(pa, pb)]
    if len(sa) == 1 and len(sb) == 1:
        return [(sa[0], sb[0])]
    pairs = [(x, y) for x in sa for y in sb if x[1] == y[1]]
    if not pairs:
        raise _BadInput("mtmcs compare: the reports share no guardrail stack; pick one of each "
                        "with --stack-a and --stack-b")
    return pairs


def _compare(args: argparse.Namespace) -> int:
    from pytest_mtmcs.reporting.compare import (
        compare_stacks,
        regression_checks,
        stack_label,
    )
    from pytest_mtmcs.reporting.comparison_views import baseline_lines, comparison_lines

    try:
        _check_outputs([("--markdown", args.markdown), ("--json", args.json)],
                       [("report A", args.a), ("report B", args.b)])
        a, b = _load(args.a), _load(args.b)
        pairs = _pick_stacks(a, b, args.stack_a, args.stack_b)
    except _BadInput as exc:
        _print(exc, file=sys.stderr)
        return EXIT_BAD_INPUT
    comparisons = []
    for sa, sb in pairs:
        same = stack_label(*sa) == stack_label(*sb)
        cmp = compare_stacks(a, b, sa, sb,
                             label_a=f"{args.a.name}: {stack_label(*sa)}" if same else None,
                             label_b=f"{args.b.name}: {stack_label(*sb)}" if same else None)
        comparisons.append(cmp)
        for line in comparison_lines(cmp, width=_width()):
            _print(line)
        _print()
    if args.markdown:
        from pytest_mtmcs.reporting.markdown import comparison_markdown, write_markdown

        text = "\n".join(line for c in comparisons for line in comparison_markdown(c))
        write_markdown(text, args.markdown)
    if args.json:
        import json as _json

        args.json.write_text(_json.dumps([c.model_dump(mode="json") for c in comparisons],
                                         indent=2), encoding="utf-8")
    if args.fail_on_regression is not None:
        checks = [c for cmp in comparisons
                  for c in regression_checks(cmp, alpha=args.fail_on_regression)]
        for line, _ in baseline_lines(checks, [], str(args.a), width=_width()):
            _print(line)
        if not checks or any(c.regressed for c in checks):
            return 1
    return 0


def _check_outputs(outputs: list[tuple[str, Path | None]],
                   inputs: list[tuple[str, Path | None]], store: str = "") -> None:
    """`_BadInput` naming each output path that cannot be written, before any work is done."""
    from pytest_mtmcs.output_paths import output_problems

    problems = output_problems([(o, str(p)) for o, p in outputs if p is not None],
                               [(o, str(p)) for o, p in inputs if p is not None],
                               store=store or os.devnull)
    if problems:
        raise _BadInput("mtmcs: " + "\n  ".join(problems))


def _compare_parser(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser(
        "compare", help="A/B two stored runs (pytest --mtmcs-report) on the same dialogues",
        description="Per figure: A, B, B - A with its 95% interval (paired when the dialogues "
                    "match) and McNemar's exact test on the dialogues both runs measured; the "
                    "dialogues that flipped each way; a one-line verdict.")
    p.add_argument("a", type=Path, help="report A (the reference)")
    p.add_argument("b", type=Path, help="report B (the candidate)")
    p.add_argument("--stack-a", help="guardrail stack of A to compare (when it has several)")
    p.add_argument("--stack-b", help="guardrail stack of B to compare (when it has several)")
    p.add_argument("--markdown", type=Path, help="also write the comparison as Markdown "
                   "(and append it to $GITHUB_STEP_SUMMARY when set)")
    p.add_argument("--json", type=Path, help="also write the comparison as JSON")
    p.add_argument("--fail-on-regression", type=_number(0, 0.5, low_open=True), metavar="ALPHA",
                   nargs="?", const=0.05,
                   help="exit 1 when B is significantly worse than A on a figure (default "
                        "ALPHA 0.05)")


def _captions(path: Path | None) -> dict[str, str] | None:
    from pytest_mtmcs.dataset import read_captions
    from pytest_mtmcs.errors import DataError

    if path is None:
        return None
    if not path.exists():
        raise DataError("captions file does not exist", file=str(path))
    return read_captions(path)


def _score(args: argparse.Namespace) -> int:
    from pytest_mtmcs.chat import GenParams
    from pytest_mtmcs.dataset.official import read_official
    from pytest_mtmcs.errors import EXIT_INFRA, MtmcsError
    from pytest_mtmcs.reporting.report import RunReport, write_json
    from pytest_mtmcs.reporting.terminal import divergence_lines, summary_lines
    from pytest_mtmcs.rollout.store import Store
    from pytest_mtmcs.rollout.transcripts import score_transcripts
    from pytest_mtmcs.scoring.judge import Judge
    from pytest_mtmcs.scoring.metrics import summarize
    from pytest_mtmcs.targets import TargetOptions, make_target

    try:
        _check_outputs([("--report", args.report)], [("--captions", args.captions)],
                       store=args.store)
        transcripts = read_official(args.dir, _captions(args.captions))
        judge = None
        if args.judge:
            opts = TargetOptions(cache_dir=os.path.dirname(os.path.abspath(args.store)) or ".",
                                 api_key_env=args.api_key_env, timeout_s=args.timeout,
                                 retries=args.retries)
            target = make_target(args.judge, opts)
            judge = Judge(target, params=GenParams(temperature=args.judge_temperature,
                                                   max_tokens=args.judge_max_tokens))
    except (MtmcsError, _BadInput) as exc:
        _print(f"mtmcs score: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        store = Store(args.store)
    except MtmcsError as exc:  # not a store of ours, unreadable, in a read-only place
        _print(f"mtmcs score: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        scored = score_transcripts(transcripts, store, judge=judge, concurrency=args.concurrency,
                                   pass_score=args.pass_score, keep_text=args.save_transcripts,
                                   examples=args.explain)
    finally:
        store.close()
    dialogues = sorted(scored.dialogues, key=lambda d: (d.target, d.id))
    questions = sorted(scored.questions, key=lambda q: (q.target, q.id))
    summary = summarize(dialogues, questions)
    models = sorted({t.model for t in transcripts})
    _print(f"{args.dir}: {len(dialogues)} dialogues, {len(questions)} intent questions, "
          f"models {', '.join(models)}" + (f", judge {args.judge}" if args.judge else ""))
    for line in summary_lines(summary, width=_width()):
        _print(line)
    if args.explain:
        account = divergence_lines(summary, width=_width())
        _print("why the release's figures differ from ours (replies read differently, by shape):"
               if account else "the release's readers and ours read every reply alike")
        for line in account:
            _print(line)
    if args.report:
        report = RunReport(target=",".join(models), data=str(args.dir), judge=args.judge,
                           settings={"pass_score": args.pass_score, "source": "mtmcs score"},
                           summary=tuple(summary), dialogues=tuple(dialogues),
                           questions=tuple(questions))
        _print(f"report written to {write_json(report, args.report)}")
    if scored.server_errors:
        _print(f"mtmcs score: the judge failed on {scored.server_errors} dialogues; results are "
              f"incomplete (run again: stored judgements are not asked again)", file=sys.stderr)
        return EXIT_INFRA
    return 0


def _score_parser(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser(
        "score", help="score the result folders of the benchmark's own inference script",
        description="Read <root>/<model>/<type_a|type_b>/{multimodal,unimodal}_{safe,unsafe}.json "
                    "(DIR may be the root, one model's folder or one split folder) and print the "
                    "metrics of each model; with --judge, safety-awareness and helpfulness too.")
    p.add_argument("dir", type=Path)
    p.add_argument("--judge", help="judge target spec, e.g. openai:gpt-5-mini")
    p.add_argument("--captions", type=Path,
                   help="captions JSON (row id -> caption) for the judge on multimodal dialogues")
    p.add_argument("--judge-temperature", type=_number(0, 2), default=0.0)
    p.add_argument("--judge-max-tokens", type=_number(1, 1_000_000, integer=True), default=256)
    p.add_argument("--pass-score", type=int, default=4, choices=range(1, 6), metavar="1-5",
                   help="a judged dialogue passes at this score or above (default 4)")
    p.add_argument("--store", default=".mtmcs/store.sqlite", help="sqlite store of judge calls")
    p.add_argument("--concurrency", type=_number(1, 100_000, integer=True), default=16)
    p.add_argument("--api-key-env", default="OPENAI_API_KEY")
    p.add_argument("--timeout", type=_number(0, 86_400, low_open=True), default=120.0)
    p.add_argument("--retries", type=_number(0, 1_000, integer=True), default=4)
    p.add_argument("--report", type=Path, help="write the records and metrics as JSON")
    p.add_argument("--save-transcripts", action="store_true",
                   help="keep the dialogue text in the JSON report")
    p.add_argument("--explain", action="store_true",
                   help="print why the release's own figures differ from ours: per group, the "
                        "answers and judgements the two readings read differently, by shape, "
                        "with a count and one example answer each (kept in --report too)")


def _sample(dest: Path) -> int:
    from pytest_mtmcs.dataset.sample import SamplePlacementError, write_sample

    try:
        written = write_sample(dest)
    except (SamplePlacementError, OSError) as exc:
        _print(f"mtmcs sample: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for path in written:
        _print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    _print(f"next: pytest --mtmcs --mtmcs-data {dest} --mtmcs-target baseline:refuse "
           "-p no:cacheprovider")
    return 0


def _sample_parser(sub: argparse._SubParsersAction[_Parser]) -> None:
    from pytest_mtmcs.dataset.sample import DEFAULT_DEST

    p = sub.add_parser(
        "sample", help="write the sample dataset that ships with pytest-mtmcs (for the quick start)",
        description="Write the 12-row-per-split sample in the official MTMCS-Bench schema (parquet "
                    "with embedded images, captions.json; written for pytest-mtmcs, not the "
                    "benchmark) into DEST. Refuses (exit 4) a DEST that is a file or a folder that "
                    "is not empty.")
    p.add_argument("dest", type=Path, nargs="?", default=Path(DEFAULT_DEST),
                   help=f"a new or empty folder (default {DEFAULT_DEST})")


class _Parser(argparse.ArgumentParser):
    """argparse, with a bad command line exiting 4 (bad input) like pytest's usage errors."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def _number(low: float, high: float, *, integer: bool = False, low_open: bool = False
            ) -> Callable[[str], float]:
    """An argparse type: a finite number in [low, high] (or (low, high]), quoting the value."""
    def parse(text: str) -> float:
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            value = math.nan
        ok = math.isfinite(value) and (low < value if low_open else low <= value) and value <= high
        if not ok:
            kind = "an integer" if integer else "a number"
            raise argparse.ArgumentTypeError(
                f"{text!r}: expected {kind} from {low:g}{' (exclusive)' if low_open else ''} "
                f"to {high:g}")
        return value
    return parse


@_quiet_on_closed_stdout
def main(argv: list[str] | None = None) -> int:
    """Entry point of the `mtmcs` console script."""
    parser = _Parser(prog="mtmcs", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"pytest-mtmcs {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("summary", help="print the summary table of a stored run")
    p.add_argument("report", type=Path)
    _score_parser(sub)
    _compare_parser(sub)
    _sample_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "summary":
        return _summary(args.report)
    if args.command == "compare":
        return _compare(args)
    if args.command == "score":
        return _score(args)
    if args.command == "sample":
        return _sample(args.dest)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
