"""The prompt-level defenses MTMCS-Bench evaluated: DPP, AdaShield (static and adaptive),
self-reflection and safety chain-of-thought. Their texts live in `<config_dir>/prompts/`.

- `dpp` (Defensive Prompt Patch): `dpp.txt` is appended, after a blank line, to the text of EVERY
  user message of the request (the history too, so the model always saw patched turns); image
  parts stay where they are. Then one call to the target.
- `adashield-s` (AdaShield static): `adashield_static.txt` is prepended, before a blank line, to
  the text of every user message that carries an image; messages without images are unchanged,
  so text-only dialogues are sent as they are (AdaShield defends against image-borne attacks).
- `adashield-a` / `adashield` (AdaShield adaptive): `adashield_table.json` lists scenarios, each a
  description and a defense prompt. The text of all user turns is compared with every description
  (`choose_scenario`): TF-IDF cosine over word stems (`tfidf_similarity`, pure Python), or with
  `adashield-a:/path/to/sentence-model` the cosine of sentence-transformers embeddings. The best
  scenario's defense is prepended like the static prompt when its similarity reaches the table's
  threshold for the method in use; below it the query looks benign and NO defense is added, as in
  AdaShield-A, which only defends queries that resemble its stored malicious ones. When
  sentence-transformers is not installed the guardrail warns and uses TF-IDF (its identity says
  which). Images are not embedded: the original compares CLIP embeddings of image and text.
- `self-reflection`: draft (the request as it came), critique, revision, all by the target (or
  the critic `--mtmcs-guard-model` names, for the critique only). The critique and revision
  requests are one user message, the conversation's images first, then the template filled with
  the dialogue as text (`User [image]: ...` / `Assistant: ...`), the draft and, for the revision,
  the critique; the request's system messages are kept. The revision is ALWAYS made, as in the classic
  draft-critique-revise loop; its prompt asks to keep a draft the review approves. The final
  reply is the revision (the draft if the revision came back empty). 2 extra calls.
- `cot`: `cot.txt` becomes the system message (appended to an existing leading system message,
  so the model still sees one), asking for `<reasoning>...</reasoning>` before the reply.
  `max_tokens` grows by a reasoning budget (256, or `cot:N`). The reply is what follows the last
  `</reasoning>`, with a leading "Answer:"/"Final answer:"/"Reply:"/"Response:" label removed; a
  reply without tags is kept whole. An unfinished reasoning (an opening tag with no closing one:
  the budget ran out) or nothing after it is recorded as a block by `cot`, with the reason, rather
  than shown as an empty reply. The engine passes the stripped replies as history.

Every guardrail's `identity()` hashes its prompt texts and settings. The shared prompt helpers
live in `prompt_edits`, AdaShield-A's scenario matching in `adashield_scenarios`; the guardrail
classes stay in this module because a guarded stack's cache identity holds each class's
`module.QualName` (`code_identity`): moving one would orphan every cached reply of its stacks.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import Path

from pytest_mtmcs.chat import Conversation, GenParams, Message, Reply
from pytest_mtmcs.errors import SpecError
from pytest_mtmcs.guardrails import GuardrailOptions
from pytest_mtmcs.guardrails.adashield_scenarios import (
    EmbeddingSimilarity,
    Scenario,
    Similarity,
    choose_scenario,
    load_table,
    tfidf_similarity,
    user_text,
)
from pytest_mtmcs.guardrails.base import GuardContext, Guardrail
from pytest_mtmcs.guardrails.prompt_edits import (
    append_to_users,
    fill,
    fingerprint,
    no_arg,
    prepend_to_image_turns,
    read_prompt,
    review_request,
    transcript,
)
from pytest_mtmcs.targets.base import Target

VERSION = 1
"""Bump when code changes what these guardrails send (part of every identity)."""

# ------------------------------------------------------------------------- DPP, AdaShield-S


class PromptPatch(Guardrail):
    """A defense that rewrites the request (`patch`) and asks the target once."""

    def patch(self, conversation: Conversation) -> Conversation:
        """The request the target gets."""
        raise NotImplementedError

    def settings(self) -> tuple[object, ...]:
        """Every text and setting that changes `patch` (hashed into the identity)."""
        raise NotImplementedError

    async def respond(self, ctx: GuardContext) -> Reply:
        return await ctx.answer(self.patch(ctx.conversation))

    def identity(self) -> str:
        return f"{self.name}|{fingerprint(type(self).__name__, VERSION, *self.settings())}"


class DefensivePromptPatch(PromptPatch):
    """Appends a fixed defensive suffix to every user message."""

    name = "dpp"

    def __init__(self, suffix: str) -> None:
        self.suffix = suffix

    def patch(self, conversation: Conversation) -> Conversation:
        return append_to_users(conversation, self.suffix)

    def settings(self) -> tuple[object, ...]:
        return (self.suffix,)


class AdaShieldStatic(PromptPatch):
    """Prepends one defense prompt to every image-bearing user message."""

    name = "adashield-s"

    def __init__(self, defense: str) -> None:
        self.defense = defense

    def patch(self, conversation: Conversation) -> Conversation:
        return prepend_to_image_turns(conversation, self.defense)

    def settings(self) -> tuple[object, ...]:
        return (self.defense,)


def dpp(arg: str | None, options: GuardrailOptions, target: Target) -> Guardrail:
    """Factory for `dpp` (prompt: prompts/dpp.txt)."""
    no_arg("dpp", arg)
    return DefensivePromptPatch(read_prompt(options, "dpp.txt"))


def adashield_static(arg: str | None, options: GuardrailOptions, target: Target) -> Guardrail:
    """Factory for `adashield-s` (prompt: prompts/adashield_static.txt)."""
    no_arg("adashield-s", arg)
    return AdaShieldStatic(read_prompt(options, "adashield_static.txt"))


# ------------------------------------------------------------------------------ AdaShield-A


class AdaShieldAdaptive(PromptPatch):
    """Prepends the defense prompt of the scenario the dialogue resembles, if any."""

    name = "adashield-a"

    def __init__(self, scenarios: Sequence[Scenario], threshold: float, similarity: Similarity,
                 method: str) -> None:
        self.scenarios = tuple(scenarios)
        self.threshold = threshold
        self.similarity = similarity
        self.method = method
        """`tfidf` or `embedding:<model path>`."""

    def choose(self, conversation: Conversation) -> Scenario | None:
        """The scenario whose defense this request gets (None: no defense)."""
        return choose_scenario(user_text(conversation), self.scenarios, self.similarity,
                               self.threshold)[0]

    def patch(self, conversation: Conversation) -> Conversation:
        if not any(m.images for m in conversation if m.role == "user"):
            return conversation
        scenario = self.choose(conversation)
        return conversation if scenario is None else prepend_to_image_turns(conversation,
                                                                            scenario.defense)

    def settings(self) -> tuple[object, ...]:
        table = [(s.name, s.description, s.defense) for s in self.scenarios]
        return (self.method, self.threshold, table)


def adashield_adaptive(arg: str | None, options: GuardrailOptions, target: Target) -> Guardrail:
    """Factory for `adashield-a[:/path/to/sentence-model]` (table: prompts/adashield_table.json)."""
    scenarios, thresholds = load_table(options.config("prompts", "adashield_table.json"))
    if arg is not None:
        if not Path(arg).expanduser().exists():
            raise SpecError(f"adashield-a: sentence-embedding model folder {arg} does not exist")
        try:
            emb = EmbeddingSimilarity(str(Path(arg).expanduser()), options.device)
        except ImportError:  # sentence-transformers is not installed
            warnings.warn("adashield-a: sentence-transformers is not installed; choosing "
                          "scenarios by TF-IDF similarity instead of embeddings of " + arg,
                          RuntimeWarning, stacklevel=2)
        except (OSError, ValueError) as exc:
            raise SpecError(f"adashield-a: cannot load the sentence-embedding model {arg}: "
                            f"{type(exc).__name__}: {exc}") from exc
        else:
            return AdaShieldAdaptive(scenarios, thresholds["embedding"], emb, f"embedding:{arg}")
    return AdaShieldAdaptive(scenarios, thresholds["tfidf"], tfidf_similarity, "tfidf")


# ------------------------------------------------------------------------- self-reflection


class SelfReflection(Guardrail):
    """Draft, critique, revise; the reply is the revision."""

    name = "self-reflection"

    def __init__(self, critique: str, revise: str, critic: Target | None = None,
                 critique_tokens: int = 256) -> None:
        self.critique_template = critique
        self.revise_template = revise
        self.critic = critic
        """A separate critic model; None: the target critiques itself."""
        self.critique_tokens = critique_tokens

    def critique_request(self, conversation: Conversation, draft: str) -> Conversation:
        return review_request(conversation, fill(self.critique_template,
                                                 dialogue=transcript(conversation), draft=draft))

    def revise_request(self, conversation: Conversation, draft: str, critique: str) -> Conversation:
        return review_request(conversation, fill(self.revise_template,
                                                 dialogue=transcript(conversation), draft=draft,
                                                 critique=critique))

    async def respond(self, ctx: GuardContext) -> Reply:
        draft = await ctx.answer()
        params = ctx.params.model_copy(
            update={"max_tokens": max(ctx.params.max_tokens, self.critique_tokens)})
        request = self.critique_request(ctx.conversation, draft.text)
        critique = await (ctx.answer(request, params) if self.critic is None
                          else ctx.extra(self.critic, request, params))
        final = await ctx.answer(self.revise_request(ctx.conversation, draft.text, critique.text))
        return final if final.text.strip() else draft

    def identity(self) -> str:
        critic = None if self.critic is None else self.critic.cache_identity()
        print_ = fingerprint("self-reflection", VERSION, self.critique_template, self.revise_template,
                             critic, self.critique_tokens)
        return f"{self.name}|{print_}"

    async def aclose(self) -> None:
        if self.critic is not None:
            await self.critic.aclose()


def self_reflection(arg: str | None, options: GuardrailOptions, target: Target) -> Guardrail:
    """Factory for `self-reflection` (prompts: self_reflection_critique.txt and
    self_reflection_revise.txt; critic: --mtmcs-guard-model, else the target)."""
    no_arg("self-reflection", arg)
    critic = options.helper(target)
    return SelfReflection(read_prompt(options, "self_reflection_critique.txt", "dialogue", "draft"),
                          read_prompt(options, "self_reflection_revise.txt", "dialogue", "draft",
                                      "critique"),
                          critic=None if critic is target else critic)


# ------------------------------------------------------------------------------------ CoT

_CLOSE = re.compile(r"</\s*reasoning\s*>", re.IGNORECASE)
_OPEN = re.compile(r"<\s*reasoning\s*>", re.IGNORECASE)
_LABEL = re.compile(r"^(?:\*\*|__)?\s*(?:final\s+answer|answer|final\s+reply|reply|response)"
                    r"\s*(?:\*\*|__)?\s*:\s*(?:\*\*|__)?\s*", re.IGNORECASE)


def strip_reasoning(text: str) -> str | None:
    """The reply after the last `</reasoning>` (the whole text when there is no tag), a leading
    answer label removed; None when a `<reasoning>` was opened and never closed."""
    closes = list(_CLOSE.finditer(text))
    if closes:
        text = text[closes[-1].end():]
    elif _OPEN.search(text):
        return None
    return _LABEL.sub("", text.strip(), count=1).strip()


class SafetyCoT(Guardrail):
    """Asks for safety reasoning before the reply, and shows only the reply."""

    name = "cot"

    def __init__(self, instruction: str, budget: int = 256) -> None:
        self.instruction = instruction
        self.budget = budget

    def request(self, conversation: Conversation, params: GenParams) -> tuple[Conversation, GenParams]:
        """The request the target gets and its parameters."""
        if conversation and conversation[0].role == "system":
            first = Message(role="system", content=f"{conversation[0].text}\n\n{self.instruction}")
            patched = (first, *conversation[1:])
        else:
            patched = (Message(role="system", content=self.instruction), *conversation)
        return patched, params.model_copy(update={"max_tokens": params.max_tokens + self.budget})

    async def respond(self, ctx: GuardContext) -> Reply:
        reply = await ctx.answer(*self.request(ctx.conversation, ctx.params))
        text = strip_reasoning(reply.text)
        if text is None:
            return ctx.block("cot: the reasoning did not finish within the token limit")
        if not text:
            return ctx.block("cot: the model wrote no reply after its reasoning")
        return reply.model_copy(update={"text": text})

    def identity(self) -> str:
        return f"{self.name}|{fingerprint('cot', VERSION, self.instruction, self.budget)}"


def cot(arg: str | None, options: GuardrailOptions, target: Target) -> Guardrail:
    """Factory for `cot[:BUDGET]` (prompt: prompts/cot.txt; BUDGET extra tokens, default 256)."""
    budget = 256
    if arg is not None:
        try:
            budget = int(arg)
        except ValueError:
            budget = -1
        if budget < 0:
            raise SpecError(f"cot: expected a reasoning budget in tokens (cot:256), got {arg!r}")
    return SafetyCoT(read_prompt(options, "cot.txt"), budget)
