"""Item records on test reports: written by each item, read back by the process that reports.

Each mtmcs item attaches its record to its report's `user_properties` as JSON (xdist ships
reports to the controller, and JUnit XML keeps them). A skipped or errored item gets a small
record made here; an errored one also carries the kind of its error (see `failure_kind`),
which decides the exit code. `ItemRecords` collects the records, and counts the
failed items, from every report the process sees, local or from an xdist worker.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from pytest_mtmcs.errors import error_kind

if TYPE_CHECKING:
    from pytest_mtmcs.dataset import Case, Question
    from pytest_mtmcs.scoring.records import DialogueRecord, QuestionRecord

__all__ = ["PROP_DIALOGUE", "PROP_QUESTION", "ItemRecords", "error_record", "failure_kind",
           "root_cause", "skip_record"]

PROP_DIALOGUE = "mtmcs_dialogue"
"""The `user_properties` name of a dialogue item's record."""
PROP_QUESTION = "mtmcs_question"
"""The `user_properties` name of an intent-question item's record."""

_INERT_JSON = {cp: f"\\u{cp:04x}" for cp in (
    *range(0x7F, 0xA0), 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A),
    0x2028, 0x2029)}
"""JSON escapes for the characters JSON leaves raw that still act on a terminal or a viewer
(DEL, the C1 controls, bidirectional overrides, line separators): a record's JSON rides into
JUnit XML and CI logs, and server text in it (a reply kept with --mtmcs-save-transcripts) must
not act there. They only occur inside JSON strings, so the escaped text decodes the same."""


def skip_record(case: Case, reason: str, q: Question | None = None, *, target: str,
                guardrail: str = "none") -> str:
    """The JSON record of a skipped item (its question's when `q` is given)."""
    return _record(case, "skip", reason, q, target=target, guardrail=guardrail)


def root_cause(exc: BaseException) -> BaseException:
    """The error behind `exc`: a question's `DialogueFailed` and the engine's `EngineStopped`
    only pass on the error of their dialogue or of the engine."""
    from pytest_mtmcs.rollout.jobs import DialogueFailed, EngineStopped

    root = exc
    while isinstance(root, (DialogueFailed, EngineStopped)) and root.__cause__ is not None:
        root = root.__cause__
    return root


def failure_kind(exc: BaseException) -> str:
    """The kind of an item's error, which decides the exit code, the same for a dialogue and
    for a question: `config` (a server refused the run's key or model; exit 4), `target` (a
    model server failed; 75), `store` (the store could not be read or written; 75), `data`
    (bad benchmark data; 4), `engine` (the rollout engine stopped on a bug; 3), `other`."""
    from pytest_mtmcs.rollout.jobs import EngineStopped
    from pytest_mtmcs.rollout.store_errors import StoreError

    root = root_cause(exc)
    if isinstance(root, StoreError):
        return "store"
    if isinstance(root, EngineStopped) or isinstance(exc, EngineStopped):
        return "engine"
    return error_kind(root)


def error_record(case: Case, exc: BaseException, q: Question | None = None, *, target: str,
                 guardrail: str = "none") -> str:
    """The JSON record of an errored item; the error's kind decides the exit code."""
    return _record(case, "error", f"{type(exc).__name__}: {exc}", q, failure_kind(exc),
                   target=target, guardrail=guardrail)


def _record(case: Case, verdict: str, reason: str, q: Question | None,
            error_kind: str | None = None, *, target: str, guardrail: str) -> str:
    from pytest_mtmcs.scoring.records import DialogueRecord, QuestionRecord

    rec: Any
    base = {"split": case.split, "row_id": case.row_id, "modality": case.modality,
            "safety": case.safety, "variant": case.variant, "target": target,
            "guardrail": guardrail}
    if q is None:
        rec = DialogueRecord(id=case.id, verdict=verdict, reason=reason, **base)  # type: ignore[arg-type]
    else:
        rec = QuestionRecord(id=f"{case.id}-{q.suffix}", dialogue_id=case.id, kind=q.kind,
                             question_type=q.question_type, expected=q.answer,
                             verdict=verdict, reason=reason, **base)  # type: ignore[arg-type]
    data = json.loads(rec.model_dump_json())
    if error_kind:
        data["error_kind"] = error_kind
    return json.dumps(data)


class ItemRecords:
    """The records of a run's items, and its failure counts, as its reports arrive.

    `keep_published`: keep the record object of each item published in this process, so its
    report is read back without parsing the JSON again (False on an xdist worker, whose
    reports are read by the controller).
    """

    def __init__(self, *, keep_published: bool) -> None:
        self.keep_published = keep_published
        self.dialogues: dict[tuple[str, str], DialogueRecord] = {}
        """(guardrail, dialogue id) -> its record."""
        self.questions: dict[tuple[str, str], QuestionRecord] = {}
        """(guardrail, question id) -> its record."""
        self.error_kinds: set[str] = set()
        """The kinds of the errored items' errors (see `failure_kind`)."""
        self.failed_items = 0
        """mtmcs items that failed or errored (they fail the run only without gates, or strict)."""
        self.other_failures = 0
        """Failed or errored tests that are not mtmcs items: they always fail the run."""
        self._published: dict[int, tuple[str, Any]] = {}
        """id(JSON text) -> (that text, its record object), for records published in this
        process: the report of the item is read back without parsing the JSON again."""

    @property
    def measured(self) -> bool:
        """Whether any dialogue or question record arrived (something was measured)."""
        return bool(self.dialogues or self.questions)

    def publish(self, item: pytest.Item, name: str, rec: DialogueRecord | QuestionRecord) -> None:
        """Attach an item's finished record to it: as JSON in its user_properties, which carry
        it to the xdist controller and into JUnit XML. In one process the record object is
        kept too, so that its report is read back without a second copy (at 30,000 items the
        parsed copies cost about 80 MB)."""
        text = rec.model_dump_json().translate(_INERT_JSON)
        item.user_properties.append((name, text))
        if self.keep_published:
            self._published[id(text)] = (text, rec)

    def collect(self, report: pytest.TestReport) -> None:
        """Count failures, and aggregate the record a (possibly remote) item attached to its
        teardown report."""
        from pytest_mtmcs.scoring.records import DialogueRecord, QuestionRecord

        if report.failed:
            ours = any(name in (PROP_DIALOGUE, PROP_QUESTION) for name, _ in report.user_properties)
            if ours:
                self.failed_items += 1
            else:
                self.other_failures += 1
        if report.when != "teardown":
            return
        for name, value in report.user_properties:
            if name not in (PROP_DIALOGUE, PROP_QUESTION):
                continue
            kept = self._published.pop(id(value), None)
            if kept is not None and kept[0] is value:  # published in this process
                rec = kept[1]
                if getattr(rec, "error_kind", None):
                    self.error_kinds.add(rec.error_kind)
                (self.dialogues if name == PROP_DIALOGUE else self.questions)[
                    (rec.guardrail, rec.id)] = rec
                continue
            data = json.loads(str(value))
            kind = (data.get if name == PROP_DIALOGUE else data.pop)("error_kind", None)
            if kind:
                self.error_kinds.add(kind)
            if name == PROP_DIALOGUE:
                d = DialogueRecord.model_validate(data)
                self.dialogues[(d.guardrail, d.id)] = d
            else:
                q = QuestionRecord.model_validate(data)
                self.questions[(q.guardrail, q.id)] = q
