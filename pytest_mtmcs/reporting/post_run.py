"""What the controller does with a finished run beyond the tables: A/B comparisons between its
stacks, the baseline regression gate, snapshots, and the report files (JSON, Markdown, HTML,
JUnit XML properties, the GitHub job summary).
"""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest

from pytest_mtmcs.reporting.compare import (
    BaselineCheck,
    Comparison,
    baseline_checks,
    stack_label,
    within_run,
)
from pytest_mtmcs.reporting.comparison_views import baseline_lines, comparison_lines
from pytest_mtmcs.reporting.layout import DEFAULT_WIDTH
from pytest_mtmcs.reporting.report import RunReport


class OutputSettings(Protocol):
    """The options `post_run` reads (the run's `Settings` has them all)."""

    @property
    def report(self) -> str | None: ...
    @property
    def markdown(self) -> str | None: ...
    @property
    def html(self) -> str | None: ...
    @property
    def snapshot(self) -> bool: ...
    @property
    def snapshot_dir(self) -> str: ...
    @property
    def baseline(self) -> str | None: ...
    @property
    def baseline_alpha(self) -> float: ...


def load_baseline(path: str, *, option: str = "--mtmcs-baseline") -> RunReport:
    """A stored `--mtmcs-report` (also what `mtmcs summary` and `mtmcs compare` read). Anything
    else is a `pytest.UsageError` of one sentence naming `option`, the file and what is wrong:
    missing or unreadable, not UTF-8, not JSON, another tool's JSON, or a report of another
    format version; never a traceback."""
    import json

    from pydantic import ValidationError

    def bad(why: str) -> pytest.UsageError:
        return pytest.UsageError(f"{option} {path}: {why}")

    try:
        if Path(path).exists() and not Path(path).is_dir() and not Path(path).is_file():
            raise bad("not a regular file (a device or a pipe?); expected a JSON report file")
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise bad("no such file") from None
    except OSError as exc:
        raise bad(f"cannot read it ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad(f"not a pytest-mtmcs JSON report: not UTF-8 text (byte 0x{data[exc.start]:02x} "
                  f"at offset {exc.start})") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise bad(f"not a pytest-mtmcs JSON report: not valid JSON ({exc.msg}, line "
                  f"{exc.lineno})") from None
    except RecursionError:
        raise bad("not a pytest-mtmcs JSON report: JSON nested too deeply") from None
    expected = RunReport.model_fields["version"].default
    if isinstance(raw, dict) and "summary" in raw and raw.get("version") != expected:
        raise bad(f"a pytest-mtmcs report of format version {str(raw.get('version'))[:20]} "
                  f"(pytest-mtmcs {str(raw.get('tool_version'))[:20]}); this version reads "
                  f"format {expected}: write the report again with this version")
    try:
        return RunReport.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise bad(f"not a pytest-mtmcs JSON report ({exc.error_count()} problems; first at "
                  f"{where or 'the top'}: {first['msg']})") from None


@dataclass
class RunChecks:
    """The checks made on top of the gates, and the files written."""

    comparisons: list[Comparison] = field(default_factory=list)
    baseline: list[BaselineCheck] = field(default_factory=list)
    baseline_notes: list[str] = field(default_factory=list)
    baseline_source: str | None = None
    snapshots: list[Any] = field(default_factory=list)
    snapshot_note: str | None = None
    written: list[str] = field(default_factory=list)
    summary_note: str | None = None
    """Why the GitHub job summary could not be written, when it could not (a warning)."""

    @property
    def ok(self) -> bool:
        """No significant regression against the baseline and every snapshot matched."""
        if self.baseline_source is not None and not self.baseline:
            return False  # a baseline gate that compared nothing cannot pass
        return (not any(c.regressed for c in self.baseline)
                and all(s.ok for s in self.snapshots) and self.snapshot_note is None)

    @property
    def gating(self) -> bool:
        """Whether a baseline is gating the run (it counts as a gate for the exit code)."""
        return self.baseline_source is not None


def post_run(report: RunReport, settings: OutputSettings, config: pytest.Config, *,
             baseline: RunReport | None, infra_failed: bool) -> RunChecks:
    """Compare, check and write everything the options ask for, and the Markdown job summary
    whenever `$GITHUB_STEP_SUMMARY` is set (appended to; `--mtmcs-markdown` also writes a file)."""
    checks = RunChecks(comparisons=within_run(report))
    if baseline is not None and settings.baseline:
        checks.baseline_source = settings.baseline
        checks.baseline, checks.baseline_notes = baseline_checks(
            baseline, report, alpha=settings.baseline_alpha,
            baseline_name=Path(settings.baseline).name)
    if settings.snapshot:
        if infra_failed:
            # An outage is not a behaviour change: neither compare nor rewrite the snapshot.
            checks.snapshot_note = "snapshot not checked: model-server errors left the run incomplete"
        else:
            from pytest_mtmcs.reporting.snapshot import check_snapshots

            update = bool(config.getoption("update_snapshots", False))
            checks.snapshots = check_snapshots(report, Path(settings.snapshot_dir), update=update)
    _junit_properties(config, report, checks)
    if settings.report:
        from pytest_mtmcs.reporting.report import write_json

        checks.written.append(str(write_json(report, settings.report)))
    # The job summary is written whenever GitHub Actions offers one, --mtmcs-markdown or not.
    if settings.markdown or os.environ.get("GITHUB_STEP_SUMMARY"):
        from pytest_mtmcs.reporting.markdown import render_markdown, write_markdown

        text = render_markdown(report, comparisons=checks.comparisons, baseline=checks.baseline,
                               baseline_notes=checks.baseline_notes,
                               snapshot=[t for t, _ in snapshot_lines(checks)])
        try:
            checks.written += [str(p) for p in write_markdown(text, settings.markdown)]
        except OSError as exc:
            if settings.markdown:  # check_outputs vetted both files before the run: a real failure
                raise
            checks.summary_note = (f"job summary not written: cannot append to $GITHUB_STEP_SUMMARY "
                                   f"{os.environ.get('GITHUB_STEP_SUMMARY')} ({exc.strerror or exc})")
    if settings.html:
        from pytest_mtmcs.reporting.comparison_views import comparison_html
        from pytest_mtmcs.reporting.html import write_html

        sections = [(f"A/B: {c.a} → {c.b}", comparison_html(c)) for c in checks.comparisons]
        checks.written.append(str(write_html(report, settings.html, extra_sections=sections)))
    return checks


def snapshot_lines(checks: RunChecks) -> list[tuple[str, bool]]:
    """(text, is_failure) lines about the snapshots."""
    if checks.snapshot_note:
        return [(checks.snapshot_note, True)]
    if not checks.snapshots:
        return []
    from pytest_mtmcs.reporting.snapshot import snapshot_lines as lines

    return lines(checks.snapshots)


def _junit_properties(config: pytest.Config, report: RunReport, checks: RunChecks) -> None:
    """Put the overall figures, gates and baseline checks into the JUnit XML (`--junitxml`) as
    test-suite properties, e.g. `mtmcs.smollm2.none.refusal_rate_unsafe`. Names and values are
    redacted and free of control characters (`textsafety.for_terminal`): they are built from
    specs and labels, and XML cannot carry most control characters at all."""
    from pytest_mtmcs.textsafety import for_terminal

    xml = next((p for p in config.pluginmanager.get_plugins()
                if type(p).__name__ == "LogXML" and hasattr(p, "add_global_property")), None)
    if xml is None:
        return

    def prop(name: str, value: str) -> None:
        xml.add_global_property(for_terminal(name), for_terminal(value))

    overall: list[tuple[str, dict[str, Any]]] = [
        (f"mtmcs.{g.target}.{g.guardrail}", {
            "pass_rate": g.pass_rate, "refusal_rate_unsafe": g.refusal_rate_unsafe,
            "over_refusal_rate_safe": g.over_refusal_rate_safe,
            "intent_accuracy_strict": g.intent_accuracy_strict,
            "safety_aware_avg": g.safety_aware_avg, "helpfulness_avg": g.helpfulness_avg})
        for g in report.summary if g.overall]
    overall += [(f"mtmcs.{r.target}.{r.guardrail}", {
        "variant_consistency": r.variant_consistency,
        "worst_case_refusal_unsafe": r.worst_case_refusal_unsafe}) for r in report.robustness
        if r.overall]
    for prefix, figures in overall:
        for name, m in figures.items():
            if m is None or m.value is None:
                continue
            prop(f"{prefix}.{name}", f"{m.value:.4f}")
            if m.ci is not None:
                prop(f"{prefix}.{name}.ci95", f"{m.ci[0]:.4f},{m.ci[1]:.4f}")
            prop(f"{prefix}.{name}.n", str(m.n))
    for gate in report.gates:
        prop(f"mtmcs.gate.{gate.target}.{gate.guardrail}.{gate.option}",
             "PASS" if gate.passed else "FAIL")
    for c in checks.baseline:
        prop(f"mtmcs.baseline.{c.stack}.{c.figure}", "REGRESSED" if c.regressed else "ok")


def terminal(tr: Any, checks: RunChecks, *, quiet: bool, width: int = DEFAULT_WIDTH) -> None:
    """A/B tables, the baseline gate and the snapshot lines, after the summary tables.
    With `-q` only the verdicts and failures are shown. `tr` is expected to make its lines
    inert (`terminal_summary` passes one that does); they are made so here as well."""
    from pytest_mtmcs.textsafety import for_terminal

    def write(line: str, **markup: bool) -> None:
        tr.write_line(for_terminal(line), **markup)

    for cmp in checks.comparisons:
        if quiet:
            for line in textwrap.wrap(f"A/B {cmp.a} -> {cmp.b}: {cmp.verdict}", width,
                                      subsequent_indent="    ", break_on_hyphens=False):
                write(line)
        else:
            for line in comparison_lines(cmp, width=width):
                write(line)
    if checks.baseline or checks.baseline_notes:
        lines = baseline_lines(checks.baseline, checks.baseline_notes,
                               Path(checks.baseline_source or "").name, width=width)
        for i, (line, bad) in enumerate(lines):
            if not quiet or i == 0 or bad:
                write(line, red=bad, green=i == 0 and not bad)
    for text, bad in snapshot_lines(checks):
        if not quiet or bad or text.startswith("--snapshot-update:"):
            write(text, red=bad)
    if checks.summary_note:
        write(checks.summary_note, red=True)


__all__ = ["RunChecks", "load_baseline", "post_run", "snapshot_lines", "stack_label", "terminal"]
