"""All run state in one object, kept in the pytest stash; the exit code is decided here."""

from __future__ import annotations

import json
import os
import sys
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from pytest_mtmcs.errors import (
    EXIT_INFRA,
    DataError,
    MtmcsError,
    SpecError,
    TargetError,
)
from pytest_mtmcs.settings import STASH_KEY, Settings, read_settings

__all__ = ["STASH_KEY", "MtmcsSession"]

if TYPE_CHECKING:
    from pytest_mtmcs.bench import Case, Question
    from pytest_mtmcs.engine import Engine
    from pytest_mtmcs.judge.llm import Judge
    from pytest_mtmcs.metrics import GateResult, GroupSummary
    from pytest_mtmcs.outputs import RunChecks
    from pytest_mtmcs.records import DialogueRecord, QuestionRecord
    from pytest_mtmcs.report import RunReport
    from pytest_mtmcs.store import Store
    from pytest_mtmcs.targets.base import Target



class MtmcsSession:
    """One run: settings, cases, the target, the engine, and (on the controller) the results."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.settings: Settings = read_settings(config)
        self.is_worker = hasattr(config, "workerinput")
        winput: dict[str, Any] = getattr(config, "workerinput", {})
        self.run_id: str = winput.get("mtmcs_run") or uuid.uuid4().hex
        """The run's id: xdist workers share the controller's, and the work queue under it."""
        self.cases: list[Case] = []
        self.target: Target | None = None
        self.store: Store | None = None
        self.engine: Engine | None = None
        self.dialogues: dict[tuple[str, str], DialogueRecord] = {}
        self.questions: dict[tuple[str, str], QuestionRecord] = {}
        self.judge: Judge | None = None
        self.guardrails: list[tuple[str, str | None]] = []
        """(name, argument) of each guardrail stack, in the order given; `none` is the bare target."""
        self.error_kinds: set[str] = set()
        self.outage: str | None = None
        """Why the run stopped early: a model server down longer than --mtmcs-max-outage."""
        self._published: dict[int, tuple[str, Any]] = {}
        """id(JSON text) -> (that text, its record object), for records published in this
        process: the report of the item is read back without parsing the JSON again."""
        self.worker_calls: list[dict[str, dict[str, Any]]] = []
        """Call counters sent by xdist workers as they finish (controller only)."""
        self.failed_items = 0
        """mtmcs items that failed or errored (they fail the run only without gates, or strict)."""
        self.other_failures = 0
        """Failed or errored tests that are not mtmcs items: they always fail the run."""
        self.summary: list[GroupSummary] | None = None
        self.gate_results: list[GateResult] = []
        self.baseline: RunReport | None = None
        """The `--mtmcs-baseline` run (loaded on the controller only)."""
        self.checks: RunChecks | None = None
        """A/B comparisons, baseline checks and snapshots of the finished run."""
        self._shown = 0
        self._validate_options()

    # ------------------------------------------------------------------ set-up
    def _validate_options(self) -> None:
        from pytest_mtmcs.targets import parse_spec

        s = self.settings
        for flag, spec in (("--mtmcs-target", s.target), ("--mtmcs-judge", s.judge)):
            if spec is None:
                continue
            try:
                parse_spec(spec)
            except SpecError as exc:
                raise pytest.UsageError(f"{flag}: {exc}") from None
        for gate in ("min-safety-awareness", "min-helpfulness"):
            if gate in s.gates and not s.judge:
                raise pytest.UsageError(f"--mtmcs-{gate} needs a judge: pass --mtmcs-judge SPEC "
                                        "(e.g. openai:gpt-5-mini)")
        if "min-intent-accuracy" in s.gates and s.skip_questions:
            raise pytest.UsageError("--mtmcs-min-intent-accuracy cannot be measured with "
                                    "--mtmcs-skip-questions (no intent questions are asked)")
        if s.judge_sees_image and not s.judge:
            raise pytest.UsageError("--mtmcs-judge-sees-image needs --mtmcs-judge SPEC")
        from pytest_mtmcs.guardrails import parse_guardrails

        try:
            self.guardrails = parse_guardrails(s.guardrail)
        except SpecError as exc:
            raise pytest.UsageError(f"--mtmcs-guardrail {s.guardrail!r}: {exc}") from None
        if s.guard_model:
            try:
                parse_spec(s.guard_model)
            except SpecError as exc:
                raise pytest.UsageError(f"--mtmcs-guard-model: {exc}") from None
        if s.snapshot:
            import importlib.util

            if importlib.util.find_spec("syrupy") is None:
                raise pytest.UsageError('--mtmcs-snapshot needs syrupy, which is not installed. '
                                        'Install it with: pip install "pytest-mtmcs[snapshot]"')
        if s.html:
            import importlib.util

            if importlib.util.find_spec("matplotlib") is None:
                raise pytest.UsageError('--mtmcs-html draws its plots with matplotlib, which is '
                                        'not installed. Install it with: '
                                        'pip install "pytest-mtmcs[report]"')
        if s.baseline and not self.is_worker:
            from pytest_mtmcs.outputs import load_baseline

            self.baseline = load_baseline(s.baseline)

    def load_cases(self) -> list[Case]:
        """Load and assemble the selected dialogues; bad data is a usage error naming the row."""
        from pytest_mtmcs.bench import DataSelection, load_cases

        s = self.settings
        sel = DataSelection(
            data=s.data, splits=s.split, modalities=s.modality,  # type: ignore[arg-type]
            limit=s.limit, sample=s.sample, seed=s.seed, captions=s.captions,
            fallback=s.allow_fallback, rootdir=str(self.config.rootpath),
        )
        try:
            self.cases = load_cases(sel)
        except MtmcsError as exc:
            raise pytest.UsageError(f"pytest-mtmcs could not load the benchmark data.\n{exc}") from None
        return self.cases

    def target_options(self, **overrides: Any) -> Any:
        """The `TargetOptions` of this run's models."""
        from pytest_mtmcs.targets import TargetOptions

        s = self.settings
        fields: dict[str, Any] = {
            "cache_dir": os.path.dirname(os.path.abspath(s.store)) or ".",
            "api_key_env": s.api_key_env, "timeout_s": s.timeout, "retries": s.retries,
            "max_outage_s": s.max_outage, "replica_concurrency": s.replica_concurrency,
            "batch_size": s.batch_size, "device": s.device, "dtype": s.dtype}
        fields.update(overrides)
        return TargetOptions(**fields)

    def build_target(self) -> Target:
        """The target under test, built once."""
        if self.target is None:
            from pytest_mtmcs.targets import make_target

            s = self.settings
            opts = self.target_options(caption_for_text=s.caption_for_text)
            try:
                self.target = make_target(s.target, opts)
            except MtmcsError as exc:
                raise pytest.UsageError(f"--mtmcs-target {s.target!r}: {exc}") from None
        return self.target

    def build_judge(self) -> Judge | None:
        """The LLM judge (`--mtmcs-judge`), built once; None without one."""
        s = self.settings
        if self.judge is None and s.judge:
            from pytest_mtmcs.chat import GenParams
            from pytest_mtmcs.judge.llm import Judge
            from pytest_mtmcs.targets import make_target

            try:
                target = make_target(s.judge, self.target_options())
            except MtmcsError as exc:
                raise pytest.UsageError(f"--mtmcs-judge {s.judge!r}: {exc}") from None
            if s.judge_sees_image and not target.supports_images:
                raise pytest.UsageError(f"--mtmcs-judge-sees-image: the judge {s.judge} is "
                                        "text-only and cannot be sent images")
            self.judge = Judge(target, sees_image=s.judge_sees_image, params=GenParams(
                temperature=s.judge_temperature, max_tokens=s.judge_max_tokens))
        return self.judge

    def build_stacks(self, target: Target) -> dict[str, Any]:
        """The guarded stacks (guardrail name -> GuardedTarget), `none` excluded."""
        from pathlib import Path

        from pytest_mtmcs.guardrails import (
            GuardedTarget,
            GuardrailOptions,
            default_config_dir,
            make_guardrail,
        )

        s = self.settings
        options = GuardrailOptions(
            config_dir=Path(s.guardrails_dir) if s.guardrails_dir else default_config_dir(
                self.config.rootpath),
            model=s.guard_model, threshold=s.guard_threshold, scope=s.guard_scope,
            candidates=s.immune_candidates, device=s.device, dtype=s.dtype,
            target_options=self.target_options())
        stacks = {}
        for name, arg in self.guardrails:
            if name == "none":
                continue
            try:
                stacks[name] = GuardedTarget(target, make_guardrail(name, arg, options, target))
            except MtmcsError as exc:
                raise pytest.UsageError(f"--mtmcs-guardrail {name}: {exc}") from None
        return stacks

    def skip_reason(self, case: Case) -> str | None:
        """Why a case is not run with this target, or None."""
        target = self.build_target()
        if case.modality == "multimodal" and not target.supports_images:
            if not self.settings.caption_for_text:
                return (f"{target.spec} is text-only: multimodal dialogue skipped "
                        "(pass --mtmcs-caption-for-text to give it the caption instead)")
            if not case.caption:
                return None  # the engine reports the missing caption as a data error
        return None

    def start(self, items: list[pytest.Item]) -> None:
        """Queue the cases of the selected items in run order and start rolling out."""
        from pytest_mtmcs.chat import GenParams
        from pytest_mtmcs.engine import Engine
        from pytest_mtmcs.items import QuestionItem, _MtmcsItem
        from pytest_mtmcs.store import Store

        s = self.settings
        target = self.build_target()
        self.store = Store(s.store)
        queue = None
        concurrency = s.concurrency
        winput: dict[str, Any] = getattr(self.config, "workerinput", {})
        if self.is_worker and "mtmcs_run" in winput:
            from pytest_mtmcs.workqueue import WorkQueue

            # Workers share the rows through the store, and --mtmcs-concurrency between them:
            # the server sees the same number of requests in flight as with -n 0.
            queue = WorkQueue(self.store, self.run_id, str(winput.get("workerid", os.getpid())))
            workers = int(winput.get("workercount", 1) or 1)
            concurrency = max(1, -(-s.concurrency // workers))
        self.engine = Engine(
            target, self.store, params=GenParams(temperature=s.temperature, max_tokens=s.max_tokens),
            concurrency=concurrency, keep_text=s.save_transcripts,
            prefetch=not self.is_worker or queue is not None, judge=self.build_judge(),
            pass_score=s.pass_score, stacks=self.build_stacks(target), queue=queue,
        )
        wanted: dict[tuple[str, str], tuple[Case, set[str]]] = {}
        for item in items:
            if isinstance(item, _MtmcsItem):
                _, suffixes = wanted.setdefault((item.guardrail, item.case.id), (item.case, set()))
                if isinstance(item, QuestionItem):
                    suffixes.add(item.question.suffix)
        for (guardrail, _), (case, suffixes) in wanted.items():
            if self.skip_reason(case) is None:
                use_caption = case.modality == "multimodal" and not target.supports_images
                self.engine.add(case, use_caption=use_caption, questions=suffixes,
                                guardrail=guardrail)
        self.engine.start()

    def engine_for(self) -> Engine:
        """The running engine (items call this in setup)."""
        assert self.engine is not None, "the mtmcs engine was not started"
        return self.engine

    # ------------------------------------------------------------------ records
    def _base(self, case: Case, guardrail: str) -> dict[str, Any]:
        return {"split": case.split, "row_id": case.row_id, "modality": case.modality,
                "safety": case.safety, "target": self.settings.target, "guardrail": guardrail}

    def skip_record(self, case: Case, reason: str, q: Question | None = None,
                    guardrail: str = "none") -> str:
        """A JSON record for a skipped item."""
        return self._record(case, "skip", reason, q, guardrail=guardrail)

    def error_record(self, case: Case, exc: BaseException, q: Question | None = None,
                     guardrail: str = "none") -> str:
        """A JSON record for an errored item; the error's kind decides the exit code."""
        from pytest_mtmcs.engine import DialogueFailed

        root = exc.__cause__ if isinstance(exc, DialogueFailed) and exc.__cause__ else exc
        kind = "target" if isinstance(root, TargetError) else (
            "data" if isinstance(root, DataError) else "other")
        return self._record(case, "error", f"{type(exc).__name__}: {exc}", q, kind,
                            guardrail=guardrail)

    def _record(self, case: Case, verdict: str, reason: str, q: Question | None,
                error_kind: str | None = None, guardrail: str = "none") -> str:
        from pytest_mtmcs.records import DialogueRecord, QuestionRecord

        rec: Any
        base = self._base(case, guardrail)
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

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """pytest hook (this object is registered as a plugin): aggregate item records."""
        self.collect_report(report)

    def collect_report(self, report: pytest.TestReport) -> None:
        """Count failures, and aggregate the record a (possibly remote) item attached to its
        teardown report."""
        from pytest_mtmcs.items import PROP_DIALOGUE, PROP_QUESTION
        from pytest_mtmcs.records import DialogueRecord, QuestionRecord

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
                (self.dialogues if name == PROP_DIALOGUE else self.questions)[
                    (rec.guardrail, rec.id)] = rec
                continue
            data = json.loads(str(value))
            kind = data.pop("error_kind", None)
            if kind:
                self.error_kinds.add(kind)
            if name == PROP_DIALOGUE:
                d = DialogueRecord.model_validate(data)
                self.dialogues[(d.guardrail, d.id)] = d
            else:
                q = QuestionRecord.model_validate(data)
                self.questions[(q.guardrail, q.id)] = q

    def publish(self, item: pytest.Item, name: str, rec: Any) -> None:
        """Attach an item's finished record to it: as JSON in its user_properties, which carry
        it to the xdist controller and into JUnit XML. In one process the session also keeps
        the record object, so that its report is read back without a second copy (at 30,000
        items the parsed copies cost about 80 MB)."""
        text = rec.model_dump_json()
        item.user_properties.append((name, text))
        if not self.is_worker:
            self._published[id(text)] = (text, rec)

    def raise_if_outage(self) -> None:
        """Raise the engine's OutageError once a server's outage circuit has opened, so the
        next item stops the run instead of waiting on its own failed rollout."""
        if self.engine is not None and self.engine.outage is not None:
            raise self.engine.outage

    def note_outage(self, item: pytest.Item, exc: BaseException) -> None:
        """A model server is down for good (its outage circuit opened): stop the run after
        this item rather than erroring every remaining item one by one."""
        from pytest_mtmcs.engine import DialogueFailed
        from pytest_mtmcs.errors import OutageError

        root = exc.__cause__ if isinstance(exc, DialogueFailed) and exc.__cause__ else exc
        if isinstance(root, OutageError):
            self.outage = str(root)
            item.session.shouldstop = f"pytest-mtmcs stopped the run: {root}"

    def explain(self, case: Case, rec: DialogueRecord) -> str:
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
            lines.append(f"  R{i}: {flag}")
            if t.reply is not None:
                lines.append(f"      user: {_clip(t.user or '')}")
                lines.append(f"      assistant: {_clip(t.reply)}")
        if rec.turns and rec.turns[0].reply is None:
            lines.append("  (pass --mtmcs-save-transcripts to see the replies)")
        return "\n".join(lines)

    # ------------------------------------------------------------------ progress
    def item_started(self) -> None:
        """Called as each item starts (resets the transient progress text)."""
        self._shown = 0

    def show_progress(self, waited: float) -> None:
        """Show the rollout's progress next to a waiting item, on an interactive terminal only."""
        if self.engine is None or waited < 1.0:
            return
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        if tr is None or self.config.get_verbosity() < 0 or not sys.stdout.isatty():
            return
        text = f" [{self.engine.progress.line()}]"
        erase = "\b" * self._shown + " " * self._shown + "\b" * self._shown
        tr.write(erase + text, flush=True)
        self._shown = len(text)

    def clear_progress(self) -> None:
        """Erase the transient progress text before pytest writes the item's outcome."""
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        if self._shown and tr is not None:
            tr.write("\b" * self._shown + " " * self._shown + "\b" * self._shown, flush=True)
        self._shown = 0

    # ------------------------------------------------------------------ the end
    def finish(self, session: pytest.Session) -> None:
        """Stop the engine, write the report, decide the exit code (controller only)."""
        if self.engine is not None:
            self.engine.stop()
        if self.store is not None:
            self.store.close()
        if self.is_worker:
            output = getattr(self.config, "workeroutput", None)
            if output is not None:
                output["mtmcs_calls"] = self.own_call_stats()
            return
        if self.dialogues or self.questions:
            from pytest_mtmcs.metrics import evaluate_gates, summarize

            self.summary = self._in_given_order(
                summarize(self.dialogues.values(), self.questions.values()))
            self.gate_results = evaluate_gates(self.summary, self.settings.gates)
            report = self.build_report()
            # A/B tables, the baseline gate, snapshots (snapshot.check_snapshots) and the
            # JSON / Markdown / HTML / JUnit outputs, all from the one report.
            from pytest_mtmcs.outputs import post_run

            self.checks = post_run(report, self.settings, self.config, baseline=self.baseline,
                                   infra_failed="target" in self.error_kinds)
            self.config.hook.pytest_mtmcs_run_summary(config=self.config, report=report)
        session.exitstatus = self.exit_code(int(session.exitstatus))

    def own_call_stats(self) -> dict[str, dict[str, Any]]:
        """This process's counters of the HTTP model servers it called: role (`target`,
        `judge`) -> calls, requests, retries by reason, failures, replicas."""
        out = {}
        judge_target = self.judge.target if self.judge is not None else None
        for role, target in (("target", self.target), ("judge", judge_target)):
            stats = getattr(target, "stats", None)
            if isinstance(stats, dict) and stats.get("calls"):
                out[role] = stats
        return out

    def call_stats(self) -> dict[str, dict[str, Any]]:
        """The run's counters: this process's and every xdist worker's, added up."""
        from pytest_mtmcs.targets.resilience import merge_stats

        total: dict[str, dict[str, Any]] = {}
        for part in (self.own_call_stats(), *self.worker_calls):
            for role, stats in part.items():
                total[role] = merge_stats(total[role], stats) if role in total else dict(stats)
        return total

    def _in_given_order(self, groups: list[GroupSummary]) -> list[GroupSummary]:
        """Stacks in the order --mtmcs-guardrail named them (`none` first when named first)."""
        order = {name: i for i, (name, _) in enumerate(self.guardrails)}
        return sorted(groups, key=lambda g: (g.target, order.get(g.guardrail, len(order))))

    def exit_code(self, pytest_status: int) -> int:
        """The run's exit code. Infrastructure trouble first (75: a model server failed; 4: bad
        data); then, with gates, 0 exactly when every gate passes (and, with --mtmcs-strict,
        every mtmcs item passed); failing tests that are not mtmcs items always fail the run."""
        if "target" in self.error_kinds:
            return EXIT_INFRA
        if pytest_status not in (0, 1):  # interrupted, internal error, usage error, no tests
            return pytest_status
        if "data" in self.error_kinds:
            return int(pytest.ExitCode.USAGE_ERROR)
        checks_ok = self.checks is None or self.checks.ok
        if self.settings.snapshot and self.checks is None:
            checks_ok = False  # nothing was measured, so nothing was compared
        if not self.settings.gates and not self.settings.baseline:
            return pytest_status if checks_ok else int(pytest.ExitCode.TESTS_FAILED)
        if self.dialogues or self.questions:
            gates_ok = not self.settings.gates or (
                bool(self.gate_results) and all(g.passed for g in self.gate_results))
        else:
            gates_ok = False  # nothing was measured: a gate cannot pass on nothing
        strict_ok = not self.settings.strict or self.failed_items == 0
        return 0 if gates_ok and checks_ok and strict_ok and self.other_failures == 0 else 1

    def build_report(self) -> Any:
        """The run's `RunReport`."""
        from dataclasses import asdict

        from pytest_mtmcs.metrics import summarize
        from pytest_mtmcs.report import RunReport

        dialogues = sorted(self.dialogues.values(), key=lambda d: (d.guardrail, d.id))
        questions = sorted(self.questions.values(), key=lambda q: (q.guardrail, q.id))
        summary = self.summary if self.summary is not None else self._in_given_order(
            summarize(dialogues, questions))
        return RunReport(
            target=self.settings.target, data=self.settings.data,
            settings={k: v for k, v in asdict(self.settings).items()},
            rollout=self.engine.progress.line() if self.engine else None,
            judge=self.settings.judge or None, summary=tuple(summary),
            gates=tuple(self.gate_results), dialogues=tuple(dialogues), questions=tuple(questions),
            calls=self.call_stats(),
        )

    def terminal_summary(self, tr: Any) -> None:
        """The summary table printed at the end of the run."""
        if not self.dialogues and not self.questions:
            return
        from pytest_mtmcs.metrics import summarize
        from pytest_mtmcs.report import gate_lines, quiet_lines, summary_lines

        if self.summary is None:
            self.summary = self._in_given_order(
                summarize(self.dialogues.values(), self.questions.values()))
        quiet = self.config.get_verbosity() < 0
        if quiet:
            tr.write_sep("-", "mtmcs")
            for line in quiet_lines(self.summary):
                tr.write_line(line)
        else:
            tr.section("mtmcs summary")
            if self.engine is not None:
                tr.write_line(self.engine.progress.line())
            from pytest_mtmcs.targets.resilience import stats_line

            for role, stats in self.call_stats().items():  # model servers: requests, retries
                tr.write_line(stats_line(role, stats))
            if self.settings.judge:
                tr.write_line(f"judge {self.settings.judge}, pass score {self.settings.pass_score}")
            for line in summary_lines(self.summary):
                tr.write_line(line)
        for i, line in enumerate(gate_lines(self.gate_results)):
            failed = "FAIL" in line[:8] or (i == 0 and "FAILED" in line)
            if not quiet or i == 0 or failed:
                tr.write_line(line, red=failed, green=not failed and i == 0)
        if self.checks is not None:
            from pytest_mtmcs.outputs import terminal

            terminal(tr, self.checks, quiet=quiet)
        if self.outage:
            tr.write_line(f"run stopped early, the model server is down: {self.outage}", red=True)
        if "target" in self.error_kinds:
            tr.write_line(f"model-server errors: results are incomplete; exit code {EXIT_INFRA} "
                          "(retry the run; cached calls are not repeated)", red=True)
        if self.checks is not None and self.checks.written and not quiet:
            from pytest_mtmcs.report import clip_middle

            for path in self.checks.written:
                tr.write_line("written: " + clip_middle(path, 91))


def _clip(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
