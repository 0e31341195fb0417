"""Custom pytest items: one per dialogue and one per intent question.

Waiting for the rollout happens in `setup`, so a model-server or data failure is an ERROR
(infrastructure) and a safety verdict is a FAILURE: CI can tell the two apart. Each item's
record rides on its report's `user_properties` (xdist ships reports to the controller, which
aggregates them; see item_records.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_mtmcs.errors import MtmcsError
from pytest_mtmcs.item_records import PROP_DIALOGUE, PROP_QUESTION, error_record, skip_record
from pytest_mtmcs.textsafety import for_terminal

if TYPE_CHECKING:
    from pytest_mtmcs.dataset import Case, Question
    from pytest_mtmcs.scoring.records import DialogueRecord
    from pytest_mtmcs.session import MtmcsSession

__all__ = ["DialogueItem", "MtmcsItem", "MtmcsSuite", "MtmcsVerdict", "QuestionItem",
           "explain_dialogue", "rollout_jobs"]

_MARKS: dict[str, pytest.MarkDecorator] = {}


def _error(exc: BaseException) -> None:
    """Re-raise a setup failure; our own errors become one clear paragraph, no traceback."""
    if isinstance(exc, MtmcsError):
        # `from None`: the one paragraph is the whole story, without the chain of causes.
        raise pytest.fail.Exception(f"{type(exc).__name__}: {for_terminal(str(exc))}",
                                    pytrace=False) from None
    raise exc


class MtmcsVerdict(Exception):
    """A dialogue or question whose outcome is a failure under the run's rules."""


class MtmcsItem(pytest.Item):
    """What the benchmark's items share: a case, the run's session and a guardrail stack."""

    case: Case
    mtmcs: MtmcsSession
    guardrail: str
    """The guardrail stack the item runs through (`none`: the bare target)."""

    def _init(self, case: Case, mtmcs: MtmcsSession, guardrail: str, *marks: str) -> None:
        self.case = case
        self.mtmcs = mtmcs
        self.guardrail = guardrail
        # What add_marker does, with decorators made once per name: 30,000 items collect faster.
        variant = ("variant",) if case.variant else ()
        for name in ("mtmcs", case.split, case.modality, case.safety, *variant, *marks):
            deco = _MARKS.get(name) or _MARKS.setdefault(name, getattr(pytest.mark, name))
            self.keywords[name] = deco
            self.own_markers.append(deco.mark)
        self.record: Any = None

    def reportinfo(self) -> tuple[Path | str, int | None, str]:
        return self.path, None, self.name

    def _wait(self, fut: Future[Any]) -> Any:
        """Wait for a future, keeping the terminal's progress line alive. Never waits on a dead
        engine: it wakes as soon as either the result or the end of the engine's thread comes
        (a thread that ended without settling this future raises `EngineStopped`)."""
        engine = self.mtmcs.engine_for()
        started = time.monotonic()
        while True:
            # The 0.25 s is for the progress line only; both events wake the wait at once.
            wait([fut, engine.finished], timeout=0.25, return_when=FIRST_COMPLETED)
            if fut.done():
                return fut.result()
            if engine.finished.done():
                raise engine.stopped_error()
            self.mtmcs.progress_text.show(time.monotonic() - started)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, MtmcsVerdict):
            return for_terminal(str(excinfo.value))  # replies and server text: made inert
        if isinstance(excinfo.value, MtmcsError):
            kind = type(excinfo.value).__name__
            return f"{kind}: {for_terminal(str(excinfo.value))}"
        return super().repr_failure(excinfo, style=style)


class DialogueItem(MtmcsItem):
    """One dialogue: passes when the refusal behaviour is right for its safety label, or with a
    judge, when its score reaches the pass score."""

    def setup(self) -> None:
        self.mtmcs.progress_text.item_started()
        reason = self.mtmcs.skip_reason(self.case)
        target = self.mtmcs.settings.target
        if reason:
            self.user_properties.append((PROP_DIALOGUE, skip_record(
                self.case, reason, target=target, guardrail=self.guardrail)))
            pytest.skip(reason)
        try:
            self.mtmcs.raise_if_stopped()
            self.record = self._wait(self.mtmcs.engine_for().dialogue(self.case.id, self.guardrail))
        except BaseException as exc:
            self.user_properties.append((PROP_DIALOGUE, error_record(
                self.case, exc, target=target, guardrail=self.guardrail)))
            self.mtmcs.note_stop(self, exc)
            _error(exc)
        self.mtmcs.records.publish(self, PROP_DIALOGUE, self.record)
        if self.record.verdict == "error":  # e.g. a judgement that could not be parsed
            _error(MtmcsError(self.record.reason or "the dialogue errored"))

    def runtest(self) -> None:
        rec = self.record
        if rec.verdict == "fail":
            raise MtmcsVerdict(explain_dialogue(self.case, rec))


class QuestionItem(MtmcsItem):
    """One intent question: passes when the parsed answer is right."""

    question: Question

    def setup(self) -> None:
        self.mtmcs.progress_text.item_started()
        reason = self.mtmcs.skip_reason(self.case)
        target = self.mtmcs.settings.target
        if reason:
            self.user_properties.append((PROP_QUESTION, skip_record(
                self.case, reason, self.question, target=target, guardrail=self.guardrail)))
            pytest.skip(reason)
        try:
            self.mtmcs.raise_if_stopped()
            self.record = self._wait(self.mtmcs.engine_for().question(
                self.case.id, self.question.suffix, self.guardrail))
        except BaseException as exc:
            self.user_properties.append((PROP_QUESTION, error_record(
                self.case, exc, self.question, target=target, guardrail=self.guardrail)))
            self.mtmcs.note_stop(self, exc)
            _error(exc)
        self.mtmcs.records.publish(self, PROP_QUESTION, self.record)
        if self.record.verdict == "error":
            _error(MtmcsError(self.record.reason or "the question errored"))

    def runtest(self) -> None:
        rec = self.record
        if rec.verdict == "fail":
            q = self.question
            raise MtmcsVerdict(f"{q.kind.upper()} {self.case.id} {q.suffix}: {rec.reason}\n"
                               f"  question: {q.question}")


class MtmcsSuite(pytest.Collector):
    """The benchmark as a collector: node id = the data's label (its path relative to the
    rootdir, or the dataset id), children = one item per dialogue and per question."""

    mtmcs: MtmcsSession

    @classmethod
    def for_session(cls, session: pytest.Session, mtmcs: MtmcsSession) -> MtmcsSuite:
        """The suite node for this run's data."""
        data = mtmcs.settings.data.split(":", 1)[-1] if mtmcs.settings.data.startswith(
            ("parquet:", "jsonl:", "datasets:")) else mtmcs.settings.data
        path = Path(data)
        if path.exists():
            try:
                label = path.resolve().relative_to(session.config.rootpath).as_posix()
            except ValueError:
                label = path.resolve().as_posix().lstrip("/")
            node = cls.from_parent(session, name=label, path=path.resolve(), nodeid=label)
        else:
            node = cls.from_parent(session, name=data, nodeid=data)
        node.mtmcs = mtmcs
        return node

    def collect(self) -> list[pytest.Item]:
        """The items of every case, in order: the dialogue, then its questions."""
        mt = self.mtmcs
        cases = mt.cases  # the data's dialogues, after the pytest_mtmcs_select_cases hook
        items: list[pytest.Item] = []
        # Ids are built like a parametrized test's ("label::mtmcs[param]"), as plain strings
        # (public API since pytest 8: no structured node ids), so that they compare equal to
        # ids parsed back from strings (the --lf cache, --deselect, xdist).
        # One item per dialogue and question under each guardrail stack; ids of the bare target
        # (`none`) carry no prefix, so they stay the same whether or not guardrails are added.
        base = f"{self.nodeid}::mtmcs"
        for guardrail, _ in mt.guardrails:
            prefix = "" if guardrail == "none" else f"{guardrail}-"
            for case in cases:
                did = f"{prefix}{case.id}"
                d = DialogueItem.from_parent(self, name=f"mtmcs[{did}]", nodeid=f"{base}[{did}]")
                d._init(case, mt, guardrail)
                items.append(d)
                for q in () if mt.settings.skip_questions else case.questions:
                    qid = f"{did}-{q.suffix}"
                    qi = QuestionItem.from_parent(self, name=f"mtmcs[{qid}]",
                                                  nodeid=f"{base}[{qid}]")
                    qi._init(case, mt, guardrail, q.kind)
                    qi.question = q
                    items.append(qi)
        return items


def rollout_jobs(items: Iterable[pytest.Item]) -> list[tuple[str, Case, set[str]]]:
    """What the selected items need rolled out, in run order: (guardrail stack, case, the
    suffixes of its selected questions), once per dialogue and stack."""
    wanted: dict[tuple[str, str], tuple[Case, set[str]]] = {}
    for item in items:
        if isinstance(item, MtmcsItem):
            _, suffixes = wanted.setdefault((item.guardrail, item.case.id), (item.case, set()))
            if isinstance(item, QuestionItem):
                suffixes.add(item.question.suffix)
    return [(guardrail, case, suffixes) for (guardrail, _), (case, suffixes) in wanted.items()]


def explain_dialogue(case: Case, rec: DialogueRecord) -> str:
    """The failure text of a dialogue item: what went wrong, turn by turn."""
    lines = [f"{case.id}: {rec.reason}", f"  intent: {case.intent}"]
    if rec.judge is not None:
        j = rec.judge
        lines.append(f"  judge {j.judge} ({j.rubric}): score {j.score}"
                     + (f": {j.explanation}" if j.explanation else ""))
    for i, t in enumerate(rec.turns, 1):
        flag = "REFUSED" if t.refused else "answered"
        if t.blocked_by:
            flag += f" (blocked by {t.blocked_by})"
        elif t.refusal_reason and t.refusal_reason != "no_decline":
            cue = f": {_clip(t.refusal_cue, 60)!r}" if t.refusal_cue else ""
            flag += f" (detector: {t.refusal_reason}{cue})"
        lines.append(f"  R{i}: {flag}")
        if t.reply is not None:
            lines.append(f"      user: {_clip(t.user or '')}")
            lines.append(f"      assistant: {_clip(t.reply)}")
            if t.refusal_clause:
                lines.append(f"      decided by: {_clip(t.refusal_clause)}")
    if rec.turns and rec.turns[0].reply is None:
        lines.append("  (pass --mtmcs-save-transcripts to see the replies)")
    return "\n".join(lines)


def _clip(text: str, limit: int = 160) -> str:
    text = " ".join(for_terminal(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
