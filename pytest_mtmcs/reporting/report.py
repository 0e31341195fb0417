"""The run's results as one pydantic model (`RunReport`), written as JSON.

Every other report (terminal, Markdown, HTML, snapshots, A/B) is drawn from this model, so a
stored run can be shown again without re-running it (`mtmcs summary RUN.json`)."""

from __future__ import annotations

import datetime as _dt
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pytest_mtmcs.reporting.coverage import RunCoverage
from pytest_mtmcs.reporting.files import write_atomic
from pytest_mtmcs.scoring.gates import GateResult
from pytest_mtmcs.scoring.metrics import GroupSummary
from pytest_mtmcs.scoring.records import DialogueRecord, QuestionRecord
from pytest_mtmcs.scoring.robustness import RobustnessSummary
from pytest_mtmcs.version import __version__


class RunReport(BaseModel):
    """Everything a run produced. Round-trips through JSON (`RunReport.model_validate_json`)."""

    model_config = ConfigDict(frozen=True)
    version: int = 2
    tool_version: str = __version__
    created: str = Field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat())
    target: str
    data: str
    settings: dict[str, object] = Field(description="The run's options (no secrets).")
    rollout: str | None = Field(default=None, description="Rollout progress line at the end.")
    judge: str | None = Field(default=None, description="The judge's target spec, if any.")
    summary: tuple[GroupSummary, ...]
    robustness: tuple[RobustnessSummary, ...] = Field(default=(), description=(
        "Image-variant robustness per (target, guardrail, split) and overall, with "
        "--mtmcs-variants; empty without variant images."))
    gates: tuple[GateResult, ...] = Field(default=(), description="The gates and their outcome.")
    dialogues: tuple[DialogueRecord, ...]
    questions: tuple[QuestionRecord, ...]
    calls: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per model server role (`target`, `judge`): calls, requests sent, retries "
                    "by reason, failures, outage refusals and per-replica counters; calls "
                    "answered from the store are not counted.")
    coverage: RunCoverage | None = Field(default=None, description=(
        "How much of the selected benchmark ran (a partial run's figures cover a subset); None "
        "in reports written before this field existed."))


# JSON escapes C0 controls but leaves DEL, the C1 controls (0x9b is CSI on 8-bit terminals) and
# the bidirectional overrides raw; they can only occur inside strings, where \uXXXX is the same.
_INERT = re.compile("[\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def inert_json(text: str) -> str:
    """JSON text made inert on a terminal (`cat report.json`) and in XML: every control
    character and bidirectional override JSON leaves raw becomes a `\\uXXXX` escape, which reads
    back as the same text."""
    return _INERT.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)


def report_json(report: RunReport) -> str:
    """The report as inert JSON text (`inert_json`). Secrets never reach a report: server text
    is redacted where it is received."""
    return inert_json(report.model_dump_json(indent=2))


def write_json(report: RunReport, path: str | Path) -> Path:
    """Write the report atomically (temp file, then rename)."""
    return write_atomic(path, report_json(report))


__all__ = ["RunReport", "inert_json", "report_json", "write_json"]
