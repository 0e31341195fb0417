"""The run's state in one object, kept in the pytest stash; the exit code is decided here.

`MtmcsSession` holds what one run knows (settings, cases, target, engine, the items' records,
the results) and steps it through its life: load the cases, start the rollout, stop it and
finish the results. The pieces live beside it: option checks in settings.py, building the
models and the engine in build.py, the items' records in item_records.py, the progress next to
a waiting item in progress_text.py, the end-of-run summary in terminal_summary.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pytest

from pytest_mtmcs.errors import EXIT_INFRA, MtmcsError
from pytest_mtmcs.item_records import ItemRecords
from pytest_mtmcs.progress_text import ProgressText
from pytest_mtmcs.settings import Settings, check_settings, read_settings
from pytest_mtmcs.textsafety import for_terminal

__all__ = ["INCOMPLETE_KINDS", "STASH_KEY", "MtmcsSession"]

INCOMPLETE_KINDS = frozenset({"target", "store", "engine"})
"""Error kinds that leave the run's results incomplete (a server, the store, the engine)."""

if TYPE_CHECKING:
    from pytest_mtmcs.dataset import Case
    from pytest_mtmcs.reporting.coverage import RunCoverage
    from pytest_mtmcs.reporting.post_run import RunChecks
    from pytest_mtmcs.reporting.report import RunReport
    from pytest_mtmcs.rollout.engine import Engine
    from pytest_mtmcs.rollout.store import Store
    from pytest_mtmcs.scoring.gates import GateResult
    from pytest_mtmcs.scoring.judge import Judge
    from pytest_mtmcs.scoring.metrics import GroupSummary
    from pytest_mtmcs.scoring.prompts import PromptTemplates
    from pytest_mtmcs.scoring.records import DialogueRecord, QuestionRecord
    from pytest_mtmcs.scoring.robustness import RobustnessSummary
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
        self.judge: Judge | None = None
        self.records = ItemRecords(keep_published=not self.is_worker)
        """The items' records and failure counts, from every report this process sees."""
        self.progress_text = ProgressText(
            config, lambda: self.engine.progress if self.engine is not None else None)
        self.outage: str | None = None
        """Why the run stopped early: a model server down longer than --mtmcs-max-outage."""
        self.worker_calls: list[dict[str, dict[str, Any]]] = []
        """Call counters sent by xdist workers as they finish (controller only)."""
        self.worker_progress: list[dict[str, object]] = []
        """Rollout counters sent by xdist workers as they finish (controller only)."""
        self.coverage: RunCoverage | None = None
        """The selected benchmark's size (set by `load_cases`), then what of it ran."""
        self.summary: list[GroupSummary] | None = None
        self.robustness: list[RobustnessSummary] | None = None
        self.gate_results: list[GateResult] = []
        self.baseline: RunReport | None = None
        """The `--mtmcs-baseline` run (loaded on the controller only)."""
        self.checks: RunChecks | None = None
        """A/B comparisons, baseline checks and snapshots of the finished run."""
        self.guardrails: list[tuple[str, str | None]] = check_settings(self.settings)
        """(name, argument) of each guardrail stack, in the order given; `none` is the bare target."""
        from pytest_mtmcs.build import build_prompts

        self.prompts: PromptTemplates = build_prompts(self.settings)
        """The prompt templates in force (`--mtmcs-prompts`), read and checked once, up front."""
        if self.settings.baseline and not self.is_worker:
            from pytest_mtmcs.reporting.post_run import load_baseline

            self.baseline = load_baseline(self.settings.baseline)

    # ------------------------------------------------------------------ set-up
    def load_cases(self) -> list[Case]:
        """Load and assemble the selected dialogues; bad data is a usage error naming the row."""
        from pytest_mtmcs.dataset import DataSelection, load_cases

        s = self.settings
        sel = DataSelection(
            data=s.data, splits=s.split, modalities=s.modality,  # type: ignore[arg-type]
            limit=s.limit, sample=s.sample, seed=s.seed, captions=s.captions,
            fallback=s.allow_fallback, rootdir=str(self.config.rootpath),
            variants=s.variant_count,
        )
        try:
            cases = load_cases(sel)
        except MtmcsError as exc:
            raise pytest.UsageError(f"pytest-mtmcs could not load the benchmark data.\n{exc}") from None
        chosen = self.config.hook.pytest_mtmcs_select_cases(config=self.config, cases=list(cases))
        self.cases = cases if chosen is None else list(chosen)
        if not self.cases:
            why = ("the pytest_mtmcs_select_cases hook returned no dialogue" if chosen is not None
                   else "the data options select no dialogue")
            raise pytest.UsageError(
                f"pytest-mtmcs is on but selects no benchmark dialogue: {why} (data {s.data}, "
                f"splits {','.join(s.split)}, modalities {','.join(s.modality)}); nothing would "
                "be measured. Check the data options, or turn the benchmark off (-o mtmcs=false)")
        from pytest_mtmcs.reporting.coverage import RunCoverage

        self.coverage = RunCoverage.expected(self.cases, len(self.guardrails),
                                             questions=not s.skip_questions)
        return self.cases

    def build_target(self) -> Target:
        """The target under test, built once."""
        if self.target is None:
            from pytest_mtmcs.build import build_target

            self.target = build_target(self.settings)
        return self.target

    def build_judge(self) -> Judge | None:
        """The LLM judge (`--mtmcs-judge`), built once; None without one."""
        if self.judge is None and self.settings.judge:
            from pytest_mtmcs.build import build_judge

            self.judge = build_judge(self.settings, self.prompts)
        return self.judge

    def skip_reason(self, case: Case) -> str | None:
        """Why a case is not run with this target, or None."""
        from pytest_mtmcs.build import skip_reason

        return skip_reason(case, self.build_target(), self.settings.caption_for_text)

    def open_store(self) -> Store:
        """Open the store (`--mtmcs-store`) once, before anything is collected or called: a
        path that cannot be our store (a directory, a file that is not sqlite, a corrupt store,
        a read-only folder) is a usage error naming it and the fix, and is left untouched."""
        if self.store is None:
            from pytest_mtmcs.rollout.store import Store
            from pytest_mtmcs.rollout.store_errors import StoreUnusable

            try:
                self.store = Store(self.settings.store)
            except StoreUnusable as exc:
                raise pytest.UsageError(f"--mtmcs-store: {for_terminal(str(exc))}") from None
        return self.store

    def start(self, jobs: Iterable[tuple[str, Case, set[str]]]) -> None:
        """Queue the selected items' jobs, (guardrail stack, case, question suffixes) in run
        order (see `items.rollout_jobs`), and start rolling out. A store that fails as the
        rollout starts ends the run at once (exit 75, naming the store)."""
        from pytest_mtmcs.rollout.store_errors import StoreError

        try:
            self._start(jobs)
        except StoreError as exc:
            pytest.exit(f"pytest-mtmcs stopped the run: {for_terminal(str(exc))}",
                        returncode=EXIT_INFRA)

    def _start(self, jobs: Iterable[tuple[str, Case, set[str]]]) -> None:
        from pytest_mtmcs.build import build_engine, build_stacks

        target = self.build_target()
        store = self.open_store()
        self.engine = build_engine(
            self.settings, target, store, judge=self.build_judge(),
            stacks=build_stacks(self.settings, target, self.guardrails, self.config.rootpath),
            run_id=self.run_id, workerinput=getattr(self.config, "workerinput", None),
            prompts=self.prompts)
        for guardrail, case, suffixes in jobs:
            if self.skip_reason(case) is None:
                use_caption = case.modality == "multimodal" and not target.supports_images
                self.engine.add(case, use_caption=use_caption, questions=suffixes,
                                guardrail=guardrail)
        self.engine.start()

    def engine_for(self) -> Engine:
        """The running engine (items call this in setup)."""
        assert self.engine is not None, "the mtmcs engine was not started"
        return self.engine

    # ------------------------------------------------------------------ while items run
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """pytest hook (this object is registered as a plugin): aggregate item records."""
        self.records.collect(report)

    def raise_if_stopped(self) -> None:
        """Raise the engine's OutageError once a server's outage circuit has opened, or the
        reason the engine stopped on its own, so the next item stops the run instead of
        waiting on its own rollout."""
        engine = self.engine
        if engine is None:
            return
        if engine.outage is not None:
            raise engine.outage
        if engine.failure is not None:
            raise engine.stopped_error()

    def note_stop(self, item: pytest.Item, exc: BaseException) -> None:
        """A model server is down for good (its outage circuit opened), or the rollout engine
        stopped (the store failed, or a bug): stop the run after this item rather than
        erroring every remaining item one by one."""
        from pytest_mtmcs.errors import OutageError
        from pytest_mtmcs.item_records import root_cause
        from pytest_mtmcs.rollout.jobs import EngineStopped

        root = root_cause(exc)
        if isinstance(root, OutageError):
            self.outage = str(root)
            item.session.shouldstop = f"pytest-mtmcs stopped the run: {for_terminal(str(root))}"
        elif isinstance(exc, EngineStopped):
            item.session.shouldstop = f"pytest-mtmcs stopped the run: {for_terminal(str(exc))}"

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
                if self.engine is not None:
                    output["mtmcs_progress"] = self.engine.progress.counts()
            return
        self._count_coverage()
        if self.records.measured:
            from pytest_mtmcs.scoring.gates import evaluate_gates

            self.summary = self._ordered_summary(self.records.dialogues.values(),
                                                 self.records.questions.values())
            self.robustness = self._ordered_robustness(self.records.dialogues.values())
            self.gate_results = evaluate_gates(
                self.summary, self.settings.gates, self.settings.gate_on,
                dialogues=self.records.dialogues.values(),
                questions=self.records.questions.values(), robustness=self.robustness)
            if self.refuses_partial():
                from pytest_mtmcs.reporting.coverage import coverage_gate

                assert self.coverage is not None
                self.gate_results.append(coverage_gate(self.coverage, self.settings.target))
            report = self.build_report()
            # A/B tables, the baseline gate, snapshots (snapshot.check_snapshots) and the
            # JSON / Markdown / HTML / JUnit outputs, all from the one report.
            from pytest_mtmcs.reporting.post_run import post_run

            self.checks = post_run(report, self.settings, self.config, baseline=self.baseline,
                                   infra_failed=bool(INCOMPLETE_KINDS & self.records.error_kinds))
            self.config.hook.pytest_mtmcs_run_summary(config=self.config, report=report)
        session.exitstatus = self.exit_code(int(session.exitstatus))

    def _count_coverage(self) -> None:
        """What of the selected benchmark ran: the records that arrived, against its size."""
        from pytest_mtmcs.run_coverage import selection_reasons

        if self.coverage is not None:
            self.coverage = self.coverage.model_copy(update={
                "dialogues_run": len(self.records.dialogues),
                "questions_run": len(self.records.questions),
                "reasons": selection_reasons(self.config)})

    def refuses_partial(self) -> bool:
        """Whether the gates refuse this run: part of the selected benchmark did not run, gates
        (or a baseline) are set and --mtmcs-allow-partial is not."""
        s = self.settings
        return (self.coverage is not None and self.coverage.partial and not s.allow_partial
                and bool(s.gates or s.baseline))

    def rollout_line(self) -> str | None:
        """The rollout line: this process's engine's, or on the xdist controller the workers'
        counters added up; None when nothing was rolled out."""
        if self.engine is not None:
            return self.engine.progress.line()
        if self.worker_progress:
            from pytest_mtmcs.rollout.progress import merged_line

            return merged_line(self.worker_progress)
        return None

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

    def _ordered_summary(self, dialogues: Iterable[DialogueRecord],
                         questions: Iterable[QuestionRecord]) -> list[GroupSummary]:
        """The metrics per group, stacks in the order --mtmcs-guardrail named them (`none`
        first when named first)."""
        from pytest_mtmcs.scoring.metrics import summarize

        order = {name: i for i, (name, _) in enumerate(self.guardrails)}
        return sorted(summarize(dialogues, questions),
                      key=lambda g: (g.target, order.get(g.guardrail, len(order))))

    def _ordered_robustness(self, dialogues: Iterable[DialogueRecord]) -> list[RobustnessSummary]:
        """The variant-image robustness figures, stacks in the order of `_ordered_summary`."""
        from pytest_mtmcs.scoring.robustness import robustness

        order = {name: i for i, (name, _) in enumerate(self.guardrails)}
        return sorted(robustness(dialogues),
                      key=lambda g: (g.target, order.get(g.guardrail, len(order))))

    def summarize(self) -> list[GroupSummary]:
        """The run's metrics per (target, guardrail, slice) group, computed once."""
        if self.summary is None:
            self.summary = self._ordered_summary(self.records.dialogues.values(),
                                                 self.records.questions.values())
        return self.summary

    def exit_code(self, pytest_status: int) -> int:
        """The run's exit code. Trouble first, whatever the gates say, and the same whether a
        dialogue or an intent question met it: 4 when a server refused the run's
        configuration (its key, its model); 75 when a model server failed or the store could
        not be read or written (retry: cached calls are not repeated); 3 when the rollout
        engine stopped on a bug; 4 for bad data. Then, with gates, 0 exactly when every gate
        passes (and, with --mtmcs-strict, every mtmcs item passed); failing tests that are not
        mtmcs items always fail the run."""
        records = self.records
        kinds = records.error_kinds
        if "config" in kinds:
            return int(pytest.ExitCode.USAGE_ERROR)
        if "target" in kinds or "store" in kinds:
            return EXIT_INFRA
        if "engine" in kinds:
            return int(pytest.ExitCode.INTERNAL_ERROR)
        if pytest_status not in (0, 1):  # interrupted, internal error, usage error, no tests
            return pytest_status
        if "data" in records.error_kinds:
            return int(pytest.ExitCode.USAGE_ERROR)
        checks_ok = self.checks is None or self.checks.ok
        if self.settings.snapshot and self.checks is None:
            checks_ok = False  # nothing was measured, so nothing was compared
        if not self.settings.gates and not self.settings.baseline:
            return pytest_status if checks_ok else int(pytest.ExitCode.TESTS_FAILED)
        if records.measured:
            # A partial run's gates hold a failed coverage gate (see refuses_partial).
            gates_ok = all(g.passed for g in self.gate_results) and (
                not self.settings.gates or bool(self.gate_results))
        else:
            gates_ok = False  # nothing was measured: a gate cannot pass on nothing
        strict_ok = not self.settings.strict or records.failed_items == 0
        return 0 if gates_ok and checks_ok and strict_ok and records.other_failures == 0 else 1

    def build_report(self) -> RunReport:
        """The run's `RunReport`."""
        from dataclasses import asdict

        from pytest_mtmcs.build import prompts_record
        from pytest_mtmcs.reporting.report import RunReport

        dialogues = sorted(self.records.dialogues.values(), key=lambda d: (d.guardrail, d.id))
        questions = sorted(self.records.questions.values(), key=lambda q: (q.guardrail, q.id))
        summary = self.summary if self.summary is not None else self._ordered_summary(
            dialogues, questions)
        robust = self.robustness if self.robustness is not None else self._ordered_robustness(
            dialogues)
        return RunReport(
            target=self.settings.target, data=self.settings.data,
            settings={**asdict(self.settings),
                      "prompts": prompts_record(self.settings, self.prompts)},
            rollout=self.rollout_line(),
            judge=self.settings.judge or None, summary=tuple(summary),
            robustness=tuple(robust),
            gates=tuple(self.gate_results), dialogues=tuple(dialogues), questions=tuple(questions),
            calls=self.call_stats(), coverage=self.coverage,
        )


STASH_KEY: pytest.StashKey[MtmcsSession] = pytest.StashKey()
"""Where the run's `MtmcsSession` lives in `config.stash` (only when --mtmcs is on)."""
