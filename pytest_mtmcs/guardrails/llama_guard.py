"""`llama-guard:PATH_OR_HUB_ID`: Llama Guard 3, 3 Vision or 4 checks the input and the output.

    pytest --mtmcs --mtmcs-guardrail llama-guard:models/Llama-Guard-3-11B-Vision

Per call of the target: the input check classifies the last user turn of the whole conversation
so far; unsafe -> the turn is blocked with a refusal (`block_reason` "llama-guard input: unsafe
S1,S10") and the target is never called. Otherwise the target answers and the output check
classifies that reply as the last Agent turn; unsafe -> "llama-guard output: unsafe S...".

Verdicts come from one forward pass: P(unsafe) is the softmax over the logits of the first
tokens of `unsafe` and `safe` right after the assistant header, and a turn is blocked when it is
at least `--mtmcs-guard-threshold` (GuardrailOptions.threshold). Concurrent checks are
micro-batched by the shared `targets.batching.MicroBatcher`: requests arriving together (within
`window_s`) are left-padded and scored in one pass on its worker thread, so the event loop keeps
running; under its one error policy a failing pass is retried one check at a time, so one bad
image fails only its own check (a `TargetError` "... check failed: ..."). Only flagged prompts
pay for generation: the answer is forced to start with `unsafe` and a few greedy tokens name the
categories ("unsafe\\nS1,S10", parsed by `parse_guard_output`). For Llama Guard 3 text and 4 the
part of the prompt shared by all checks of a role (header, task, categories) is run once and its
key/value cache reused, so each pass computes only the conversation tokens.

The checkpoint's config picks the family (see `llama_guard_models`): Llama Guard 3 text models
check text only (images are left out of the check, and a warning says so); Llama Guard 3 Vision
sees one image, the conversation's last, as `<|image|>` at the start of the guard prompt;
Llama Guard 4 sees every image, in place, at the start of its turn. Llama Guard always reads the
whole dialogue (it was trained on multi-turn conversations), so `--mtmcs-guard-scope` does not
apply to it. `--mtmcs-device` / `--mtmcs-dtype` place the model. The hazard categories come
from the editable policy `guardrails/llama_guard/categories.json`; its text, the threshold and
the checkpoint are part of `identity()`.

This module holds the classifier (micro-batched scoring, one loaded checkpoint per path, device
and dtype) and the guardrail; the prompt, policy and verdict format live in `llama_guard_prompt`,
checkpoint loading and model inputs in `llama_guard_models`, image preprocessing in
`llama_guard_images`. Other adapters (e.g. NeMo rails using Llama Guard as their checker) can
reuse the classifier:

    classifier = load_classifier("models/Llama-Guard-3-1B", GuardrailOptions())
    verdict = await classifier.classify(conversation, "user")   # GuardVerdict
"""

from __future__ import annotations

import json
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_mtmcs.chat import Conversation, ImageRef, Reply, assistant
from pytest_mtmcs.errors import SpecError
from pytest_mtmcs.guardrails.base import GuardContext, Guardrail
from pytest_mtmcs.guardrails.llama_guard_models import Family
from pytest_mtmcs.guardrails.llama_guard_prompt import (
    PROMPT_VERSION,
    GuardVerdict,
    Policy,
    Role,
    load_policy,
    parse_guard_output,
    render_guard_prompt,
)
from pytest_mtmcs.targets.batching import MicroBatcher

if TYPE_CHECKING:
    from pytest_mtmcs.guardrails import GuardrailOptions
    from pytest_mtmcs.guardrails.llama_guard_models import GuardModel
    from pytest_mtmcs.targets.base import Target


# -- micro-batched scoring ----------------------------------------------------------------------


Result = tuple[float, str | None, int]
"""(P(unsafe), generated verdict text or None, generated tokens)."""


@dataclass(frozen=True)
class _Check:
    """One rendered guard prompt waiting for its scoring pass."""

    prompt: str
    images: tuple[ImageRef, ...]
    threshold: float | None
    """Name the categories when P(unsafe) reaches it; None: score only."""


class _Scorer:
    """One loaded checkpoint and the micro-batcher that feeds it (shared by its classifiers)."""

    def __init__(self, model: GuardModel, *, batch_size: int, window_s: float = 0.002,
                 max_new_tokens: int = 20) -> None:
        self.model = model
        self.max_new_tokens = max_new_tokens
        self.batcher: MicroBatcher[_Check, Result] = MicroBatcher(
            self._run_batch, max_size=batch_size, window_s=window_s,
            key=lambda check: model.batch_key(check.prompt, len(check.images)),
            length=lambda check: len(check.prompt), thread_name="mtmcs-llama-guard",
            label=f"llama-guard ({model.source}): check")

    async def submit(self, prompt: str, images: tuple[ImageRef, ...],
                     threshold: float | None) -> Result:
        """Score one prompt (and name its categories when P(unsafe) >= threshold)."""
        return await self.batcher.call(_Check(prompt, images, threshold))

    def _run_batch(self, batch: list[_Check]) -> list[Result]:
        """Worker thread: one scoring pass, then generation for the flagged prompts only."""
        prompts = [r.prompt for r in batch]
        images = [[ref.load_bytes() for ref in r.images] for r in batch]
        probs = self.model.score(prompts, images)
        flagged = [i for i, (r, p) in enumerate(zip(batch, probs, strict=True))
                   if r.threshold is not None and p >= r.threshold]
        named: dict[int, tuple[str, int]] = {}
        if flagged:
            texts = self.model.explain([prompts[i] for i in flagged], [images[i] for i in flagged],
                                       self.max_new_tokens)
            named = dict(zip(flagged, texts, strict=True))
        return [(p, *named.get(i, (None, 0))) for i, p in enumerate(probs)]

    def close(self) -> None:
        """Fail checks still waiting and stop the worker thread (a later call starts a new one)."""
        self.batcher.close()


# -- the reusable classifier --------------------------------------------------------------------


class LlamaGuardClassifier:
    """Llama Guard as a classifier of conversations, shareable by any adapter.

    Instances from `load_classifier` share one loaded model (and its batches) per checkpoint,
    device and dtype; the policy and threshold are per instance.
    """

    def __init__(self, scorer: _Scorer, policy: Policy, *, threshold: float = 0.5) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise SpecError(f"llama-guard: threshold {threshold} is not a probability in [0, 1]")
        self._scorer = scorer
        self.policy = policy
        self.threshold = threshold
        if scorer.model.family.model_type not in policy.families:
            raise SpecError(f"llama-guard policy {policy.path}: no category list under "
                            f"families.{scorer.model.family.model_type}")

    @property
    def family(self) -> Family:
        """The checkpoint's Llama Guard generation."""
        return self._scorer.model.family

    @property
    def model(self) -> GuardModel:
        """The loaded checkpoint (shared by classifiers of the same checkpoint)."""
        return self._scorer.model

    @property
    def batch_sizes(self) -> list[int]:
        """Size of every scoring pass so far, retries of single checks included (shared by
        classifiers of the same checkpoint)."""
        return self._scorer.batcher.batch_sizes

    def render(self, conversation: Conversation, role: Role) -> tuple[str, tuple[ImageRef, ...]]:
        """The exact prompt text (before image expansion) and the images the check sees."""
        model = self._scorer.model
        return render_guard_prompt(conversation, role, family=model.family, policy=self.policy,
                                   bos=model.tokenizer.bos_token or "",
                                   special_strings=model.special_strings)

    async def classify(self, conversation: Conversation, role: Role, *,
                       categories: bool = True) -> GuardVerdict:
        """Judge the last message of `conversation`, which must be from `role` ("user": the
        prompt, "agent": the assistant's reply). With `categories`, an unsafe verdict also
        generates a few tokens to name the violated categories."""
        prompt, images = self.render(conversation, role)
        p, text, tokens = await self._scorer.submit(
            prompt, images, self.threshold if categories else None)
        cats = parse_guard_output(text)[1] if text else ()
        return GuardVerdict(unsafe=p >= self.threshold, p_unsafe=p, categories=cats,
                            tokens=tokens, text=text or "")

    async def p_unsafe(self, conversation: Conversation, role: Role) -> float:
        """P(unsafe) of the last message only: one forward pass, no generation."""
        return (await self.classify(conversation, role, categories=False)).p_unsafe

    def identity(self) -> dict[str, Any]:
        """Everything that changes verdicts: checkpoint, policy hash, threshold, numerics."""
        model = self._scorer.model
        return {"checkpoint": model.source, "fingerprint": model.fingerprint,
                "family": model.family.model_type, "policy_sha256": self.policy.sha256,
                "threshold": self.threshold, "prompt": PROMPT_VERSION, "dtype": model.dtype,
                "device": model.device.split(":")[0], "max_new_tokens": self._scorer.max_new_tokens}


_SCORERS: dict[tuple[str, str, str], _Scorer] = {}
_SCORERS_LOCK = threading.Lock()


def load_classifier(path: str, options: GuardrailOptions) -> LlamaGuardClassifier:
    """A classifier for the checkpoint at `path` (local folder or hub id) with the policy from
    `options.config_dir` and `options.threshold`. The model is loaded once per (path, device,
    dtype) and process; SpecError when it cannot be found, GuardrailUnavailable without torch
    or transformers."""
    from pytest_mtmcs.guardrails.llama_guard_models import load_guard_model

    policy = load_policy(options.config("llama_guard", "categories.json"))
    local = Path(path).expanduser()
    key = (str(local.resolve()) if local.exists() else path, options.device, options.dtype)
    with _SCORERS_LOCK:
        scorer = _SCORERS.get(key)
        if scorer is None:
            model = load_guard_model(path, device=options.device, dtype=options.dtype)
            scorer = _SCORERS[key] = _Scorer(
                model, batch_size=max(1, options.target_options.batch_size))
    return LlamaGuardClassifier(scorer, policy, threshold=options.threshold)


def unload_classifiers() -> None:
    """Forget every loaded checkpoint and stop their worker threads (tests, benchmarks)."""
    with _SCORERS_LOCK:
        scorers = list(_SCORERS.values())
        _SCORERS.clear()
    for scorer in scorers:
        scorer.close()


# -- the guardrail ------------------------------------------------------------------------------


class LlamaGuard(Guardrail):
    """Input check before the target, output check after it; either blocks with a refusal.

    `check_input` / `check_output` switch either side off (Python API; the spec runs both).
    """

    name = "llama-guard"

    def __init__(self, classifier: LlamaGuardClassifier, *, check_input: bool = True,
                 check_output: bool = True) -> None:
        self.classifier = classifier
        self.check_input = check_input
        self.check_output = check_output

    async def respond(self, ctx: GuardContext) -> Reply:
        if self.check_input:
            verdict = await self.classifier.classify(ctx.conversation, "user")
            ctx.count(calls=1, tokens=verdict.tokens)
            if verdict.unsafe:
                return ctx.block(f"{self.name} input: {verdict.label}")
        reply = await ctx.answer()
        if not self.check_output:
            return reply
        verdict = await self.classifier.classify((*ctx.conversation, assistant(reply.text)), "agent")
        ctx.count(calls=1, tokens=verdict.tokens)
        if verdict.unsafe:
            return ctx.block(f"{self.name} output: {verdict.label}")
        return reply

    def identity(self) -> str:
        return json.dumps({"name": self.name, "input": self.check_input, "output": self.check_output,
                           **self.classifier.identity()}, sort_keys=True)


def from_spec(arg: str | None, options: GuardrailOptions, target: Target) -> LlamaGuard:
    """Factory for `llama-guard:PATH_OR_HUB_ID`."""
    if not arg:
        raise SpecError("llama-guard needs a checkpoint: llama-guard:/path/to/Llama-Guard-3-1B "
                        "(a save_pretrained folder) or llama-guard:meta-llama/Llama-Guard-3-1B")
    guard = LlamaGuard(load_classifier(arg, options))
    if guard.classifier.family.images == "none":
        warnings.warn(f"llama-guard: {arg} is a text-only {guard.classifier.family.label} model; "
                      "images are left out of its checks (use Llama Guard 3 Vision or 4 to check "
                      "them)", UserWarning, stacklevel=2)
    return guard


__all__ = ["LlamaGuard", "LlamaGuardClassifier", "from_spec", "load_classifier", "unload_classifiers"]
