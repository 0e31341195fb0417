"""Reports: the run's results as one pydantic model, written as JSON; terminal tables."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from pytest_mtmcs import __version__
from pytest_mtmcs.metrics import TOR_BUCKETS, GroupSummary, Rate
from pytest_mtmcs.records import DialogueRecord, QuestionRecord


class RunReport(BaseModel):
    """Everything a run produced. Round-trips through JSON (`RunReport.model_validate_json`)."""

    model_config = ConfigDict(frozen=True)
    version: int = 1
    tool_version: str = __version__
    created: str = Field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat())
    target: str
    data: str
    settings: dict[str, object] = Field(description="The run's options (no secrets).")
    rollout: str | None = Field(default=None, description="Rollout progress line at the end.")
    summary: tuple[GroupSummary, ...]
    dialogues: tuple[DialogueRecord, ...]
    questions: tuple[QuestionRecord, ...]


def write_json(report: RunReport, path: str | Path) -> Path:
    """Write the report atomically (temp file, then rename)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(report.model_dump_json(indent=2), encoding="utf-8")
    tmp.replace(out)
    return out


def _rate(r: Rate) -> str:
    return "-" if r.value is None else f"{r.value:.2f} ({r.k}/{r.n})"


def _hist(h: dict[str, int]) -> str:
    return " ".join(f"{b}:{h.get(b, 0)}" for b in TOR_BUCKETS)


def summary_lines(groups: Sequence[GroupSummary]) -> list[str]:
    """The per-(split, modality) table, at most 100 columns wide."""
    head = (f"{'split':<7}{'modality':<11}{'refusal(unsafe)':<17}{'over-refusal(safe)':<19}"
            f"{'turn of refusal, unsafe':<26}{'MCQ acc':<10}{'TF acc'}")
    lines: list[str] = []
    current = None
    for g in groups:
        if (g.target, g.guardrail) != current:
            current = (g.target, g.guardrail)
            lines.append(f"target {g.target}" + ("" if g.guardrail == "none" else f", guardrail {g.guardrail}"))
            lines.append(head)
        mcq = "-" if g.mcq_accuracy.value is None else f"{g.mcq_accuracy.value:.2f}"
        tf = "-" if g.tf_accuracy.value is None else f"{g.tf_accuracy.value:.2f}"
        lines.append(f"{g.split:<7}{g.modality:<11}{_rate(g.refusal_rate_unsafe):<17}"
                     f"{_rate(g.over_refusal_rate_safe):<19}{_hist(g.tor_unsafe):<26}{mcq:<10}{tf}")
        extra = []
        if g.unparsed:
            extra.append(f"{g.unparsed} unparsed answers")
        if g.errored:
            extra.append(f"{g.errored} errored")
        if g.skipped:
            extra.append(f"{g.skipped} skipped")
        if any(g.tor_safe.get(b) for b in ("R1", "R2", "R3")):
            extra.append(f"safe refused at {_hist(g.tor_safe)}")
        if extra:
            lines.append(" " * 18 + "; ".join(extra))
    return lines
