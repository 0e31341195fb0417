"""The run's summary at the end of the terminal output: rollout, model-server counters,
metrics, gates, A/B and baseline checks, outage and the files written.

The tables are drawn by `reporting.terminal` and `reporting.post_run`; this module decides
what is shown, in which order, at which verbosity. Every line goes through
`textsafety.for_terminal` (through `_Safe`): redacted, and control characters shown as escapes,
since lines quote specs, ids and model servers' messages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_mtmcs.errors import EXIT_INFRA
from pytest_mtmcs.textsafety import for_terminal

if TYPE_CHECKING:
    import pytest

    from pytest_mtmcs.session import MtmcsSession

__all__ = ["write_summary"]


class _Safe:
    """The terminal reporter's writing methods, with every text made inert first."""

    def __init__(self, tr: pytest.TerminalReporter) -> None:
        self._tr = tr

    def write_line(self, line: str, **markup: bool) -> None:
        self._tr.write_line(for_terminal(line), **markup)

    def write_sep(self, sep: str, title: str | None = None, **kwargs: Any) -> None:
        self._tr.write_sep(sep, for_terminal(title) if title else title, **kwargs)

    def section(self, title: str, **kwargs: Any) -> None:
        self._tr.section(for_terminal(title), **kwargs)


def write_summary(tr_: pytest.TerminalReporter, mt: MtmcsSession) -> None:
    """The summary printed at the end of the run (nothing when no item was measured); with
    `-q`, the one-line metrics and only the failed gates."""
    if not mt.records.measured:
        return
    tr = _Safe(tr_)
    from pytest_mtmcs.reporting.terminal import gate_lines, quiet_lines, summary_lines

    summary = mt.summarize()
    quiet = mt.config.get_verbosity() < 0
    if quiet:
        tr.write_sep("-", "mtmcs")
        for line in quiet_lines(summary):
            tr.write_line(line)
    else:
        tr.section("mtmcs summary")
        if mt.engine is not None:
            tr.write_line(mt.engine.progress.line())
        from pytest_mtmcs.targets.resilience import stats_line

        for role, stats in mt.call_stats().items():  # model servers: requests, retries
            tr.write_line(stats_line(role, stats))
        if mt.settings.judge:
            tr.write_line(f"judge {mt.settings.judge}, pass score {mt.settings.pass_score}")
        for line in summary_lines(summary):
            tr.write_line(line)
    for i, line in enumerate(gate_lines(mt.gate_results)):
        failed = "FAIL" in line[:8] or (i == 0 and "FAILED" in line)
        if not quiet or i == 0 or failed:
            tr.write_line(line, red=failed, green=not failed and i == 0)
    if mt.checks is not None:
        from pytest_mtmcs.reporting.post_run import terminal

        terminal(tr, mt.checks, quiet=quiet)
    if mt.outage:
        tr.write_line(f"run stopped early, the model server is down: {mt.outage}", red=True)
    kinds = mt.records.error_kinds
    if "target" in kinds or "store" in kinds:
        what = "model-server" if "target" in kinds else "store"
        tr.write_line(f"{what} errors: results are incomplete; exit code {EXIT_INFRA} "
                      "(retry the run; cached calls are not repeated)", red=True)
    elif "engine" in kinds:
        tr.write_line("the rollout engine stopped on an internal error: results are incomplete; "
                      "exit code 3 (please report it with the message above)", red=True)
    if mt.checks is not None and mt.checks.written and not quiet:
        from pytest_mtmcs.reporting.terminal import clip_middle

        for path in mt.checks.written:
            tr.write_line("written: " + clip_middle(path, 91))
