"""The `mtmcs` command: work with the JSON reports that `pytest --mtmcs-report` writes.

    mtmcs summary RUN.json        print the per-(split, modality) table of a stored run
    mtmcs --version
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pytest_mtmcs import __version__


def _summary(path: Path) -> int:
    from pydantic import ValidationError

    from pytest_mtmcs.report import RunReport, summary_lines

    try:
        report = RunReport.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        print(f"mtmcs: {path}: no such file", file=sys.stderr)
        return 2
    except ValidationError as exc:
        print(f"mtmcs: {path}: not a pytest-mtmcs report ({exc.error_count()} problems, first: "
              f"{exc.errors()[0]['loc']}: {exc.errors()[0]['msg']})", file=sys.stderr)
        return 2
    print(f"{path}: target {report.target}, data {report.data}, created {report.created}")
    if report.rollout:
        print(report.rollout)
    for line in summary_lines(report.summary):
        print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `mtmcs` console script."""
    parser = argparse.ArgumentParser(prog="mtmcs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"pytest-mtmcs {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("summary", help="print the summary table of a stored run")
    p.add_argument("report", type=Path)
    args = parser.parse_args(argv)
    if args.command == "summary":
        return _summary(args.report)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
