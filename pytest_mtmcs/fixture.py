"""`mtmcs_results`: the run's results inside ordinary tests.

Tests that request the fixture run after every benchmark item, so they see the whole run:

    def test_dpp_refuses_more(mtmcs_results):
        ab = mtmcs_results.compare("none", "dpp")
        assert ab.get("refusal_rate_unsafe").diff >= 0

    def test_outcomes(mtmcs_results, snapshot):
        from pytest_mtmcs.reporting.snapshot import MtmcsSnapshotExtension
        assert mtmcs_results.outcomes() == snapshot(extension_class=MtmcsSnapshotExtension)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_mtmcs.reporting.compare import Comparison
    from pytest_mtmcs.reporting.report import RunReport
    from pytest_mtmcs.scoring.metrics import GroupSummary
    from pytest_mtmcs.scoring.records import DialogueRecord, QuestionRecord


class MtmcsResults:
    """The records, metrics and report of the benchmark items that ran in this process."""

    def __init__(self, report: RunReport) -> None:
        self.report = report

    @property
    def dialogues(self) -> tuple[DialogueRecord, ...]:
        """Every dialogue record, sorted by guardrail and id."""
        return self.report.dialogues

    @property
    def questions(self) -> tuple[QuestionRecord, ...]:
        """Every intent-question record, sorted by guardrail and id."""
        return self.report.questions

    @property
    def summary(self) -> tuple[GroupSummary, ...]:
        """The metrics per (target, guardrail, split, modality) and overall."""
        return self.report.summary

    def _target(self, target: str | None) -> str:
        if target is not None:
            return target
        targets = sorted({g.target for g in self.report.summary})
        if len(targets) != 1:
            raise ValueError(f"several targets ran ({', '.join(targets)}): pass target=...")
        return targets[0]

    def overall(self, guardrail: str = "none", target: str | None = None) -> GroupSummary:
        """The overall figures of one stack. KeyError names the stacks that ran."""
        t = self._target(target)
        for g in self.report.summary:
            if g.overall and (g.target, g.guardrail) == (t, guardrail):
                return g
        ran = sorted({g.guardrail for g in self.report.summary})
        raise KeyError(f"no results for guardrail {guardrail!r} of {t} (ran: {', '.join(ran)})")

    def outcomes(self, guardrail: str = "none", target: str | None = None) -> dict[str, Any]:
        """The per-dialogue outcome table and metrics of one stack: what `--mtmcs-snapshot`
        stores (compare it with syrupy's `snapshot` and `MtmcsSnapshotExtension`)."""
        from pytest_mtmcs.reporting.snapshot import outcome_table

        self.overall(guardrail, target)  # a clear KeyError for a stack that did not run
        return outcome_table(self.report, self._target(target), guardrail)

    def compare(self, a: str = "none", b: str | None = None, target: str | None = None) -> Comparison:
        """A/B of two guardrail stacks of this run on the same dialogues."""
        from pytest_mtmcs.reporting.compare import compare_stacks

        t = self._target(target)
        if b is None:
            others = sorted({g.guardrail for g in self.report.summary if g.guardrail != a})
            if len(others) != 1:
                raise ValueError(f"name the stack to compare with {a!r}: one of {others}")
            b = others[0]
        self.overall(a, t)
        self.overall(b, t)
        return compare_stacks(self.report, self.report, (t, a), (t, b))
