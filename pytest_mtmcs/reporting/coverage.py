"""How much of the selected benchmark a run measured (`RunCoverage`), and the failed gate that
stands for a partial run (`coverage_gate`).

The benchmark a run selects is the data's dialogues after the data options (`--mtmcs-split`,
`--mtmcs-limit`, ...) and the `pytest_mtmcs_select_cases` hook, under each guardrail stack, with
their intent questions. pytest's own selection (`-k`, `-m`, `--lf`, `--deselect`) and early
stops (`-x`, `--maxfail`, `--sw`, an interrupt) can leave part of it unrun; its figures then
describe a subset, which a gate must not take for the benchmark.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from pytest_mtmcs.scoring.gates import GateResult

if TYPE_CHECKING:
    from pytest_mtmcs.dataset import Case

__all__ = ["COVERAGE_OPTION", "RunCoverage", "coverage_gate"]

COVERAGE_OPTION = "allow-partial"
"""The `GateResult.option` of the coverage gate: the option that lets a partial run be judged."""


class RunCoverage(BaseModel):
    """The selected benchmark's size and what of it ran. An item that ran has a record: passed,
    failed, skipped with its reason, or errored."""

    model_config = ConfigDict(frozen=True)
    dialogues: int = Field(description="Dialogue items of the selected benchmark: its dialogues "
                                       "under each guardrail stack.")
    questions: int = Field(description="Intent-question items of the selected benchmark (0 with "
                                       "--mtmcs-skip-questions).")
    dialogues_run: int = Field(default=0, description="Dialogue items that ran.")
    questions_run: int = Field(default=0, description="Intent-question items that ran.")
    reasons: tuple[str, ...] = Field(default=(), description=(
        "The pytest options in force that select part of the tests or stop early, as written "
        "(`-k 'type_a'`, `--lf`, `-x`)."))

    @classmethod
    def expected(cls, cases: Sequence[Case], stacks: int, *, questions: bool) -> RunCoverage:
        """The selected benchmark, nothing run yet."""
        n_questions = sum(len(c.questions) for c in cases) if questions else 0
        return cls(dialogues=len(cases) * stacks, questions=n_questions * stacks)

    @property
    def partial(self) -> bool:
        """Whether some item of the selected benchmark did not run."""
        return self.dialogues_run < self.dialogues or self.questions_run < self.questions

    def line(self) -> str:
        """E.g. `partial run: the figures cover 48 of 288 dialogues and 0 of 1152 intent
        questions (-k 'type_a')`."""
        parts = [f"{self.dialogues_run} of {self.dialogues} dialogues"]
        if self.questions:
            parts.append(f"{self.questions_run} of {self.questions} intent questions")
        why = f" ({', '.join(self.reasons)})" if self.reasons else ""
        return f"partial run: the figures cover {' and '.join(parts)}{why}"


def coverage_gate(cov: RunCoverage, target: str) -> GateResult:
    """The failed gate that stands for a partial run when gates are set and
    --mtmcs-allow-partial is not: the figures of a subset never pass for the benchmark's. Its
    value is the share of the selected benchmark's items that ran."""
    total = cov.dialogues + cov.questions
    ran = cov.dialogues_run + cov.questions_run
    return GateResult(
        option=COVERAGE_OPTION, figure="coverage", label="benchmark items run", op=">=",
        threshold=1.0, target=target, guardrail="all", value=ran / total if total else 0.0,
        ci=None, n=total, passed=False,
        reason=("gates judge the whole selected benchmark: pass --mtmcs-allow-partial to have "
                "them judge this subset"))
