"""Resuming from the store: what an earlier run already rolled out for the queued jobs.

Before the engine's loop starts, one bulk read of the store's dialogue table and one of its
answer table fill in every job whose rollout is stored (its replies, the refusal detector's
verdicts when the detector has not changed since, and the answers to its questions), so a
cache-warm re-run costs a lookup, not three calls, per dialogue.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from pytest_mtmcs.chat import GenParams
from pytest_mtmcs.rollout.jobs import Job, stored_answer_key
from pytest_mtmcs.rollout.store import Store
from pytest_mtmcs.scoring.prompts import DEFAULT_PROMPTS, PromptTemplates
from pytest_mtmcs.scoring.refusal import DETECTOR_VERSION, RefusalVerdict

__all__ = ["load_stored"]


def load_stored(jobs: Iterable[Job], store: Store, rollout_key: Callable[[Job], str],
                params: GenParams, prompts: PromptTemplates = DEFAULT_PROMPTS, *,
                fresh_for: str | None = None) -> list[Job]:
    """Fill `replies`, `verdicts` and `stored_answers` (and when each was stored) of each job
    (not given up front) whose rollout is in `store` under `rollout_key(job)`, with the answers
    asked in `prompts`' wording; return those jobs, in store order. `fresh_for`: a run id, to
    read only what that run stored (`--mtmcs-refresh`). A job whose key cannot be computed (an
    unreadable image) is left for the rollout to report."""
    keys: dict[str, Job] = {}
    for job in jobs:
        if job.given:
            continue
        try:
            keys[rollout_key(job)] = job
        except (OSError, ValueError, KeyError):
            continue  # an unreadable image: the rollout reports it on the item
    found = store.get_dialogues_dated(list(keys), DETECTOR_VERSION, fresh_for=fresh_for)
    asked: dict[str, list[tuple[Job, str]]] = {}  # two questions may share a prompt
    for key, (replies, verdicts, created) in found.items():
        job = keys[key]
        job.replies = replies
        job.stored_at = created
        if verdicts:
            job.verdicts = [RefusalVerdict.model_construct(**v) for v in verdicts]
        texts = [r.text for r in replies]
        for q in job.case.questions:
            if q.suffix in job.questions:
                akey = stored_answer_key(job, q, texts, key, params, prompts)
                asked.setdefault(akey, []).append((job, q.suffix))
    for akey, (answer, created) in store.get_answers_dated(list(asked),
                                                           fresh_for=fresh_for).items():
        for job, suffix in asked[akey]:
            job.stored_answers[suffix] = answer
            job.stored_answers_at[suffix] = created
    return [keys[key] for key in found]
