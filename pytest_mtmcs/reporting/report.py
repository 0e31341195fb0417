"""The run's results as one pydantic model (`RunReport`), written as JSON.

Every other report (terminal, Markdown, HTML, snapshots, A/B) is drawn from this model, so a
stored run can be shown again without re-running it (`mtmcs summary RUN.json`)."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pytest_mtmcs.scoring.metrics import GateResult, GroupSummary
from pytest_mtmcs.scoring.records import DialogueRecord, QuestionRecord
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
    gates: tuple[GateResult, ...] = Field(default=(), description="The gates and their outcome.")
    dialogues: tuple[DialogueRecord, ...]
    questions: tuple[QuestionRecord, ...]
    calls: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per model server role (`target`, `judge`): calls, requests sent, retries "
                    "by reason, failures, outage refusals and per-replica counters; calls "
                    "answered from the store are not counted.")


def write_json(report: RunReport, path: str | Path) -> Path:
    """Write the report atomically (temp file, then rename)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(report.model_dump_json(indent=2), encoding="utf-8")
    tmp.replace(out)
    return out


__all__ = ["RunReport", "write_json"]
