"""The engine sends the run's templates and keys its store by them: a changed caption prefix or
question template is asked again, the same one is replayed from the store."""

from __future__ import annotations

from pathlib import Path

from pytest_mtmcs.chat import GenParams
from pytest_mtmcs.dataset import DataSelection, load_cases
from pytest_mtmcs.rollout.engine import Engine
from pytest_mtmcs.rollout.store import Store
from pytest_mtmcs.scoring.prompts import DEFAULT_PROMPTS, PromptTemplates
from pytest_mtmcs.targets.scripted import ScriptedTarget

CUSTOM = PromptTemplates(caption_prefix="(photo: {caption})\n{text}",
                         tf="Statement: {question}\nTranscript:\n{transcript}\nTrue or False?")


def _run(dataset: Path, store: Path, prompts: PromptTemplates) -> ScriptedTarget:
    cases = load_cases(DataSelection(data=str(dataset), modalities=("multimodal",)))
    target = ScriptedTarget(default="Of course.")
    eng = Engine(target, Store(store), params=GenParams(), concurrency=4, prompts=prompts)
    for c in cases:
        eng.add(c, use_caption=True)
    eng.start()
    for c in cases:
        eng.dialogue(c.id).result(timeout=30)
        for q in c.questions:
            eng.question(c.id, q.suffix).result(timeout=30)
    eng.stop()
    return target


def test_templates_reach_the_target_and_key_the_store(dataset: Path, tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite"
    ours = _run(dataset, store, DEFAULT_PROMPTS)
    assert ours.calls and all(c[-1].text.startswith("[Image description: ") for c in ours.calls)
    custom = _run(dataset, store, CUSTOM)
    assert len(custom.calls) == len(ours.calls)  # every turn and question asked again
    assert all(c[-1].text.startswith("(photo: A plain test picture number ") for c in custom.calls)
    tf = [c[-1].text for c in custom.calls if "True or False?" in c[-1].text]
    assert tf and all("\nStatement: " in t for t in tf)
    assert _run(dataset, store, CUSTOM).calls == []  # the same templates: all from the store
    assert _run(dataset, store, DEFAULT_PROMPTS).calls == []  # ours are still stored too
