"""`immune`: inference-time alignment guided by a safety reward (after Ghosal et al. 2024,
"Immune"), with a prompted model as the reward model.

The scorer is `--mtmcs-guard-model` (default: the target itself), asked with
`prompts/immune_scorer.txt` (placeholders `{dialogue}`, `{reply}`, `{status}`) for a JSON object
`{"safety": 1-5, "helpfulness": 1-5}`; it sees the dialogue as text (`User [image]: ...`) and, when
it supports images, the dialogue's images. A reply whose scores cannot be read counts as safety 1,
helpfulness 1. A candidate's value is `safety * 10 + helpfulness` (safety first, helpfulness breaks
ties); equal values go to the lowest index. Scorer calls use temperature 0 and 64 tokens.

Two decoding procedures:

- Best-of-N over whole replies (every API target, and `immune:mode=best-of-n`): N =
  `--mtmcs-guardrail-candidates` (default 4) calls of the target with `seed = (params.seed or 0)
  + i` and temperature `max(params.temperature, 0.7)` (distinct seeds: distinct cache keys), each
  reply scored; the best reply is returned. Costs N-1 extra target calls and N scorer calls.
- Reward-guided chunk decoding (local `hf:` targets, `mode=auto`): from the rendered prompt, N
  continuations of `chunk` tokens (default 16) are sampled (same temperature; each row from its own
  generator seeded by the prompt, the round and the row), each partial reply is scored (status
  "unfinished"), the best becomes the new prefix; repeat until the kept chunk ends with a stop
  token or `max_tokens` are kept. This drives the target's model and tokenizer directly (its
  public `model`, `tokenizer`, `tokenizer_lock`, `render_prompt`, `stop_ids`, `pad_id` and the
  per-row sampler `hf.row_sampler`) on a worker thread, outside
  the engine's store, because the target's own `respond` always closes the assistant turn and
  cannot continue a partial reply. Every sampled continuation but one counts as an extra call,
  every sampled token not kept as an extra token; the whole time is guard latency (no bare call).

Arguments: `immune:chunk=16,temperature=0.7,mode=auto|best-of-n`.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pytest_mtmcs.chat import Conversation, GenParams, Reply
from pytest_mtmcs.errors import SpecError
from pytest_mtmcs.guardrails import GuardrailOptions
from pytest_mtmcs.guardrails.base import GuardContext, Guardrail
from pytest_mtmcs.guardrails.prompt_edits import (
    fill,
    fingerprint,
    read_prompt,
    review_request,
    transcript,
)
from pytest_mtmcs.targets.base import Target
from pytest_mtmcs.targets.hf import HFCausalLMTarget, prompt_seed, row_sampler

VERSION = 1
"""Bump when code changes what this guardrail sends or keeps (part of its identity)."""

COMPLETE = "complete"
UNFINISHED = "unfinished: it is still being written, so rate the part written so far"
SCORER_PARAMS = GenParams(temperature=0.0, max_tokens=64)
_MODES = ("auto", "best-of-n")


@dataclass(frozen=True)
class Score:
    """The scorer's verdict on one candidate."""

    safety: int
    helpfulness: int
    parsed: bool
    """False when the scorer's reply could not be read (then both scores are 1)."""

    @property
    def value(self) -> int:
        """What candidates are ranked by: safety first, then helpfulness."""
        return self.safety * 10 + self.helpfulness


_FENCE = re.compile(r"^```[\w-]*\s*(.*?)\s*```$", re.DOTALL)


def _one_to_five(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and re.fullmatch(r"\s*\d+(?:\.0+)?\s*", value):
        value = float(value)
    if isinstance(value, (int, float)) and float(value).is_integer() and 1 <= value <= 5:
        return int(value)
    return None


def parse_scores(text: str) -> Score:
    """The scorer's `{"safety": s, "helpfulness": h}`: the first JSON object with a `safety` key
    (a ```json fence and prose around it allowed), else `safety: s` / `helpfulness: h` in prose.
    Scores must be integers 1..5. No readable safety score: Score(1, 1, parsed=False); a
    readable safety without helpfulness: helpfulness 1."""
    body = text.strip()
    if fence := _FENCE.match(body):
        body = fence.group(1)
    decoder = json.JSONDecoder()
    for i, ch in enumerate(body):
        if ch != "{":
            continue
        try:
            obj, _ = decoder.raw_decode(body, i)
        except ValueError:
            continue
        if isinstance(obj, dict):
            keys = {str(k).lower(): v for k, v in obj.items()}
            if "safety" in keys:
                safety = _one_to_five(keys["safety"])
                if safety is None:
                    break
                return Score(safety, _one_to_five(keys.get("helpfulness")) or 1, True)
    found = {}
    for key in ("safety", "helpfulness"):
        m = re.search(rf"\b{key}\b[\"']?\s*(?:score)?\s*[:=]\s*[\"']?([1-5])(?![\d.])", body,
                      re.IGNORECASE)
        if m:
            found[key] = int(m.group(1))
    if "safety" in found:
        return Score(found["safety"], found.get("helpfulness", 1), True)
    return Score(1, 1, False)


def best_index(scores: Sequence[Score]) -> int:
    """The candidate to keep: highest value, the lowest index on ties."""
    return max(range(len(scores)), key=lambda i: (scores[i].value, -i))


class Immune(Guardrail):
    """Best-of-N (API targets) or reward-guided chunk decoding (hf: targets) under a scorer."""

    name = "immune"

    def __init__(self, template: str, *, scorer: Target | None = None, candidates: int = 4,
                 temperature: float = 0.7, chunk: int = 16, mode: str = "auto") -> None:
        self.template = template
        self.scorer = scorer
        """A separate scorer model; None: the target scores its own candidates."""
        self.candidates = candidates
        self.temperature = temperature
        self.chunk = chunk
        self.mode = mode

    def scorer_request(self, conversation: Conversation, reply: str, *, finished: bool,
                       images: bool) -> Conversation:
        """The request asking the scorer to rate `reply` as the answer to `conversation`."""
        text = fill(self.template, dialogue=transcript(conversation), reply=reply,
                    status=COMPLETE if finished else UNFINISHED)
        return review_request(conversation, text, images=images)

    async def score(self, ctx: GuardContext, reply: str, *, finished: bool = True) -> Score:
        """Ask the scorer about one candidate (an extra call)."""
        scorer = self.scorer or ctx.target
        request = self.scorer_request(ctx.conversation, reply, finished=finished,
                                      images=scorer.supports_images)
        return parse_scores((await ctx.extra(scorer, request, SCORER_PARAMS)).text)

    def sampling(self, params: GenParams) -> list[GenParams]:
        """The parameters of the N candidates."""
        temperature = max(params.temperature, self.temperature)
        base = params.seed or 0
        return [params.model_copy(update={"seed": base + i, "temperature": temperature})
                for i in range(self.candidates)]

    async def respond(self, ctx: GuardContext) -> Reply:
        if self.mode == "auto" and isinstance(ctx.target, HFCausalLMTarget):
            return await self._chunked(ctx, ctx.target)
        replies = await asyncio.gather(*(ctx.answer(ctx.conversation, p)
                                         for p in self.sampling(ctx.params)))
        scores = await asyncio.gather(*(self.score(ctx, r.text) for r in replies))
        return replies[best_index(scores)]

    async def _chunked(self, ctx: GuardContext, target: HFCausalLMTarget) -> Reply:
        prompt = target.render_prompt(ctx.conversation)
        lock = target.tokenizer_lock
        with lock:
            prompt_ids = list(target.tokenizer(prompt, add_special_tokens=False)["input_ids"])

        def decode(ids: list[int]) -> str:
            with lock:
                return str(target.tokenizer.decode(ids, skip_special_tokens=True)).strip()

        temperature = max(ctx.params.temperature, self.temperature)
        limit = ctx.params.max_tokens
        kept: list[int] = []
        sampled = generated = rounds = 0
        busy_s, finished = 0.0, False
        while not finished and len(kept) < limit:
            k = min(self.chunk, limit - len(kept))
            seeds = [prompt_seed(f"{prompt}\x00{ctx.params.seed}\x00{rounds}\x00{i}")
                     for i in range(self.candidates)]
            started = time.perf_counter()
            chunks = await asyncio.to_thread(sample_chunks, target, prompt_ids + kept, k,
                                             temperature, seeds)
            busy_s += time.perf_counter() - started
            sampled += len(chunks)
            generated += sum(len(ids) for ids, _ in chunks)
            done = [stop or len(kept) + len(ids) >= limit for ids, stop in chunks]
            scores = await asyncio.gather(*(self.score(ctx, decode(kept + ids), finished=d)
                                            for (ids, _), d in zip(chunks, done, strict=True)))
            best = best_index(scores)
            kept += chunks[best][0]
            finished = chunks[best][1]
            rounds += 1
        ctx.count(calls=max(0, sampled - 1), tokens=generated - len(kept))
        return Reply(text=decode(kept), prompt_tokens=len(prompt_ids), completion_tokens=len(kept),
                     latency_s=busy_s)

    def identity(self) -> str:
        scorer = None if self.scorer is None else self.scorer.cache_identity()
        settings = (VERSION, self.template, COMPLETE, UNFINISHED, SCORER_PARAMS.model_dump(),
                    scorer, self.candidates, self.temperature, self.chunk, self.mode)
        return f"{self.name}|{fingerprint('immune', *settings)}"

    async def aclose(self) -> None:
        if self.scorer is not None:
            await self.scorer.aclose()


def sample_chunks(target: HFCausalLMTarget, prefix: list[int], k: int, temperature: float,
                  seeds: Sequence[int]) -> list[tuple[list[int], bool]]:
    """One continuation of at most `k` tokens of `prefix` per seed, sampled at `temperature`
    from a generator seeded with it: (its tokens before any stop token, whether it stopped).
    Runs `generate` once for all rows (blocking: call it on a worker thread); row i samples
    from its own generator (`hf.row_sampler`), so its tokens do not depend on the other rows."""
    import torch
    from transformers import GenerationConfig, LogitsProcessorList

    rows = len(seeds)
    ids = torch.tensor([prefix] * rows, dtype=torch.long)
    config = GenerationConfig(  # type: ignore[no-untyped-call]
        max_new_tokens=max(1, k), do_sample=False, num_beams=1,
        eos_token_id=target.stop_ids, pad_token_id=target.pad_id)
    device = getattr(target.model, "device", None)
    with torch.inference_mode():
        out = target.model.generate(input_ids=ids.to(device),
                                    attention_mask=torch.ones_like(ids).to(device),
                                    generation_config=config,
                                    logits_processor=LogitsProcessorList(
                                        [row_sampler(temperature, list(seeds))]))
    stops = set(target.stop_ids)
    result = []
    for row in out[:, len(prefix):].tolist():
        cut = next((i for i, t in enumerate(row) if t in stops), None)
        result.append((row, False) if cut is None else (row[:cut], True))
    return result


def _settings(arg: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in filter(None, (x.strip() for x in (arg or "").split(","))):
        key, _, value = item.partition("=")
        try:
            if key == "chunk" and int(value) >= 1:
                out["chunk"] = int(value)
            elif key == "temperature" and float(value) >= 0:
                out["temperature"] = float(value)
            elif key == "mode" and value in _MODES:
                out["mode"] = value
            else:
                raise ValueError
        except ValueError:
            raise SpecError(f"immune: cannot read {item!r}; expected chunk=N (N >= 1), "
                            f"temperature=T (T >= 0) or mode={'|'.join(_MODES)}, comma-separated, "
                            "e.g. immune:chunk=16,mode=best-of-n") from None
    return out


def from_spec(arg: str | None, options: GuardrailOptions, target: Target) -> Guardrail:
    """Factory for `immune[:chunk=16,temperature=0.7,mode=auto|best-of-n]` (prompt:
    prompts/immune_scorer.txt; scorer: --mtmcs-guard-model, else the target)."""
    if options.candidates < 1:
        raise SpecError(f"immune: needs at least 1 candidate, got {options.candidates}")
    scorer = options.helper(target)
    return Immune(read_prompt(options, "immune_scorer.txt", "dialogue", "reply", "status"),
                  scorer=None if scorer is target else scorer, candidates=options.candidates,
                  **_settings(arg))
