"""The run's summary at the end of the terminal output: rollout, model-server counters,
metrics, gates, A/B and baseline checks, outage and the files written.

The tables are drawn by `reporting.terminal` and `reporting.post_run`; this module decides
what is shown, in which order, at which verbosity, and passes them the terminal's width
(`terminal_width`: pytest's own, which honours `COLUMNS` and falls back to 80), into which
they fit without cutting a figure. Every line goes through
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

__all__ = ["terminal_width", "write_summary"]


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


def terminal_width(config: pytest.Config) -> int:
    """The terminal's full width as pytest's terminal writer has it (it reads the real
    terminal, else `COLUMNS`, else 80); 80 when there is no terminal reporter."""
    from pytest_mtmcs.reporting.layout import DEFAULT_WIDTH

    if config.pluginmanager.get_plugin("terminalreporter") is None:
        return DEFAULT_WIDTH
    return config.get_terminal_writer().fullwidth or DEFAULT_WIDTH


def write_summary(tr_: pytest.TerminalReporter, mt: MtmcsSession) -> None:
    """The summary printed at the end of the run; with `-q`, the one-line metrics and only the
    failed gates. A partial run says so (at every verbosity), also when nothing was measured."""
    tr = _Safe(tr_)
    if not mt.records.measured:
        _write_unmeasured(tr, mt)
        return
    from pytest_mtmcs.reporting.names import stack_names
    from pytest_mtmcs.reporting.robustness_views import robustness_lines, robustness_quiet_lines
    from pytest_mtmcs.reporting.terminal import gate_table, quiet_lines, summary_lines

    summary = mt.summarize()
    robustness = mt.robustness or []
    quiet = mt.config.get_verbosity() < 0
    width = terminal_width(mt.config)
    # Every table names a stack as the summary does (names made over every stack).
    names = stack_names([(g.target, g.guardrail) for g in summary]
                        + [(g.target, g.guardrail) for g in mt.gate_results])
    if quiet:
        tr.write_sep("-", "mtmcs")
        for line in quiet_lines(summary, width=width):
            tr.write_line(line)
        for line in robustness_quiet_lines(robustness, width=width, names=names):
            tr.write_line(line)
    else:
        tr.section("mtmcs summary")
        if (rollout := mt.rollout_line()) is not None:
            tr.write_line(rollout)
        from pytest_mtmcs.targets.resilience import stats_line

        for role, stats in mt.call_stats().items():  # model servers: requests, retries
            tr.write_line(stats_line(role, stats))
        if mt.settings.judge:
            tr.write_line(f"judge {mt.settings.judge}, pass score {mt.settings.pass_score}")
        for line in summary_lines(summary, width=width):
            tr.write_line(line)
        for line in robustness_lines(robustness, width=width, names=names):
            tr.write_line(line)
    if mt.coverage is not None and mt.coverage.partial:
        tr.write_line(mt.coverage.line(), yellow=not mt.refuses_partial(), red=mt.refuses_partial())
    for row in gate_table(mt.gate_results, width=width, names=names):
        if not quiet or row.quiet:
            tr.write_line(row.text, red=row.red, green=row.green)
    if mt.checks is not None:
        from pytest_mtmcs.reporting.post_run import terminal

        terminal(tr, mt.checks, quiet=quiet, width=width)
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
        for path in mt.checks.written:  # whole, so that it can be copied
            tr.write_line("written: " + path)


def _write_unmeasured(tr: _Safe, mt: MtmcsSession) -> None:
    """Nothing was measured: say why when the selection left the whole benchmark unrun (an
    empty run of an mtmcs session never passes its gates silently)."""
    cov = mt.coverage
    if cov is None or not cov.partial:
        return
    tr.section("mtmcs summary")
    tr.write_line(cov.line(), red=bool(mt.settings.gates or mt.settings.baseline))
    if mt.settings.gates or mt.settings.baseline:
        tr.write_line("gates: FAILED, no benchmark item ran: a gate cannot pass on nothing",
                      red=True)
