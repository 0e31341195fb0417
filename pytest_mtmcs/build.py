"""Building a run's machinery from its settings: the target, the judge, the guardrail stacks and
the rollout engine (with the xdist work queue on a worker).

Every builder turns a bad spec or a missing optional dependency into a `pytest.UsageError` that
names the option. Heavy modules (targets, guardrails, the engine) are imported inside the
builders, so importing this module costs nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_mtmcs.errors import MtmcsError

if TYPE_CHECKING:
    from pytest_mtmcs.dataset import Case
    from pytest_mtmcs.guardrails import GuardedTarget
    from pytest_mtmcs.rollout.engine import Engine
    from pytest_mtmcs.rollout.progress import CacheMode
    from pytest_mtmcs.rollout.store import Store
    from pytest_mtmcs.scoring.judge import Judge
    from pytest_mtmcs.scoring.prompts import PromptTemplates
    from pytest_mtmcs.settings import Settings
    from pytest_mtmcs.targets import Target, TargetOptions

__all__ = ["build_engine", "build_judge", "build_prompts", "build_stacks", "build_target",
           "cache_mode", "prompts_record", "skip_reason", "target_options"]


def build_prompts(settings: Settings) -> PromptTemplates:
    """The run's prompt templates: our wording, with the fields of `--mtmcs-prompts` replaced.
    A file that cannot be used is a usage error (exit 4) naming the file and the field."""
    from pytest_mtmcs.scoring.prompts import DEFAULT_PROMPTS, load_prompts

    if not settings.prompts:
        return DEFAULT_PROMPTS
    try:
        return load_prompts(settings.prompts)
    except MtmcsError as exc:
        raise pytest.UsageError(f"--mtmcs-prompts: {exc}") from None


def prompts_record(settings: Settings, prompts: PromptTemplates) -> dict[str, Any]:
    """What the report records of the templates in force: the file (None: our wording) and
    the templates' fingerprint, so two runs' wording can be told apart."""
    return {"file": settings.prompts, "sha256": prompts.fingerprint()}


def target_options(settings: Settings, **overrides: Any) -> TargetOptions:
    """The `TargetOptions` of this run's models (target, judge, guardrail helpers)."""
    from pytest_mtmcs.targets import TargetOptions

    s = settings
    fields: dict[str, Any] = {
        "cache_dir": os.path.dirname(os.path.abspath(s.store)) or ".",
        "api_key_env": s.api_key_env, "timeout_s": s.timeout, "retries": s.retries,
        "max_reply_chars": s.max_reply_chars,
        "max_outage_s": s.max_outage, "replica_concurrency": s.replica_concurrency,
        "batch_size": s.batch_size, "device": s.device, "dtype": s.dtype}
    fields.update(overrides)
    return TargetOptions(**fields)


def build_target(settings: Settings) -> Target:
    """The target under test (`--mtmcs-target`)."""
    from pytest_mtmcs.targets import make_target

    s = settings
    opts = target_options(s, caption_for_text=s.caption_for_text)
    try:
        return make_target(s.target, opts)
    except MtmcsError as exc:
        raise pytest.UsageError(f"--mtmcs-target {s.target!r}: {exc}") from None


def build_judge(settings: Settings, prompts: PromptTemplates | None = None) -> Judge | None:
    """The LLM judge (`--mtmcs-judge`), asked with `prompts` (default: `--mtmcs-prompts`'s); None
    without one."""
    s = settings
    if not s.judge:
        return None
    from pytest_mtmcs.chat import GenParams
    from pytest_mtmcs.scoring.judge import Judge
    from pytest_mtmcs.targets import make_target

    try:
        target = make_target(s.judge, target_options(s))
    except MtmcsError as exc:
        raise pytest.UsageError(f"--mtmcs-judge {s.judge!r}: {exc}") from None
    if s.judge_sees_image and not target.supports_images:
        raise pytest.UsageError(f"--mtmcs-judge-sees-image: the judge {s.judge} is "
                                "text-only and cannot be sent images")
    return Judge(target, sees_image=s.judge_sees_image, params=GenParams(
        temperature=s.judge_temperature, max_tokens=s.judge_max_tokens),
        prompts=prompts if prompts is not None else build_prompts(s))


def build_stacks(settings: Settings, target: Target, guardrails: list[tuple[str, str | None]],
                 rootpath: Path) -> dict[str, GuardedTarget]:
    """The guarded stacks (guardrail name -> GuardedTarget) of `guardrails`, `none` excluded;
    guardrail configs are read from `--mtmcs-guardrails-dir`, else from `rootpath`'s."""
    from pytest_mtmcs.guardrails import (
        GuardedTarget,
        GuardrailOptions,
        default_config_dir,
        make_guardrail,
    )

    s = settings
    options = GuardrailOptions(
        config_dir=Path(s.guardrails_dir) if s.guardrails_dir else default_config_dir(rootpath),
        model=s.guard_model, threshold=s.guard_threshold, scope=s.guard_scope,
        candidates=s.immune_candidates, device=s.device, dtype=s.dtype,
        target_options=target_options(s))
    stacks = {}
    for name, arg in guardrails:
        if name == "none":
            continue
        try:
            stacks[name] = GuardedTarget(target, make_guardrail(name, arg, options, target))
        except MtmcsError as exc:
            raise pytest.UsageError(f"--mtmcs-guardrail {name}: {exc}") from None
    return stacks


def skip_reason(case: Case, target: Target, caption_for_text: bool) -> str | None:
    """Why a case is not run with `target`, or None. A multimodal case is skipped when the
    target reads no images (`supports_images` False: a text-only model, a spec declaring it
    text-only, or a server whose image probe found it rejecting or dropping images, the
    target's `text_only_reason` saying which) and the caption may not stand in for them. A
    variant-image case is skipped whenever the caption stands in for the image: the row's one
    caption would make it the base dialogue again."""
    if case.modality == "multimodal" and not target.supports_images:
        if case.variant and caption_for_text:
            why = getattr(target, "text_only_reason", None) or f"{target.spec} is text-only"
            return (f"{why}: it reads the row's caption in place of the image, so variant image "
                    f"{case.variant} would change nothing; skipped")
        if not caption_for_text:
            why = getattr(target, "text_only_reason", None) or f"{target.spec} is text-only"
            return (f"{why}: multimodal dialogue skipped "
                    "(pass --mtmcs-caption-for-text to give it the caption instead)")
        if not case.caption:
            return None  # the engine reports the missing caption as a data error
    return None


def build_engine(settings: Settings, target: Target, store: Store, *, judge: Judge | None,
                 stacks: dict[str, GuardedTarget], run_id: str,
                 workerinput: dict[str, Any] | None,
                 prompts: PromptTemplates | None = None) -> Engine:
    """The run's rollout engine. `workerinput`: the xdist worker's input (None outside a
    worker); a worker of a controller that handed out a run id shares the rows with the other
    workers through the store's work queue, and `--mtmcs-concurrency` with them too.
    `prompts`: the templates of the intent questions and the caption prefix.

    `--mtmcs-refresh` asks every call again and overwrites the stored answers (xdist workers
    still share the rows and make each call once: the run id marks the answers this run made);
    `--mtmcs-no-cache` neither reads nor writes them, and then workers do not share rows (a row
    rolled out by one could not be read by another), each rolls out what its own items need.
    Both at once is a usage error."""
    from pytest_mtmcs.chat import GenParams
    from pytest_mtmcs.rollout.engine import Engine
    from pytest_mtmcs.rollout.workqueue import WorkQueue

    s = settings
    cache = cache_mode(s)
    queue = None
    concurrency = s.concurrency
    if workerinput is not None and "mtmcs_run" in workerinput and cache != "off":
        # Workers share the rows through the store, and --mtmcs-concurrency between them:
        # the server sees the same number of requests in flight as with -n 0.
        queue = WorkQueue(store, run_id, str(workerinput.get("workerid", os.getpid())))
        workers = int(workerinput.get("workercount", 1) or 1)
        concurrency = max(1, -(-s.concurrency // workers))
    return Engine(
        target, store, params=GenParams(temperature=s.temperature, max_tokens=s.max_tokens),
        concurrency=concurrency, keep_text=s.save_transcripts,
        prefetch=workerinput is None or queue is not None, judge=judge,
        pass_score=s.pass_score, stacks=stacks, queue=queue,
        prompts=prompts if prompts is not None else build_prompts(s),
        cache=cache, run=run_id,
    )


def cache_mode(settings: Settings) -> CacheMode:
    """How the run uses the store's answers: `refresh` (--mtmcs-refresh), `off`
    (--mtmcs-no-cache) or `use` (`settings.check_settings` refuses both at once)."""
    return "refresh" if settings.refresh else "off" if settings.no_cache else "use"
