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

Every guardrail's `identity()` hashes its prompt texts and settings.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_mtmcs.chat import (
    Conversation,
    GenParams,
    ImagePart,
    ImageRef,
    Message,
    Reply,
    TextPart,
)
from pytest_mtmcs.errors import SpecError
from pytest_mtmcs.guardrails import GuardrailOptions
from pytest_mtmcs.guardrails.base import GuardContext, Guardrail
from pytest_mtmcs.targets.base import Target

VERSION = 1
"""Bump when code changes what these guardrails send (part of every identity)."""

# --------------------------------------------------------------------------- shared helpers


def read_prompt(options: GuardrailOptions, name: str, *placeholders: str) -> str:
    """The text of `prompts/<name>`, stripped; SpecError when it is missing, empty or lacks a
    `{placeholder}` the guardrail fills."""
    path = options.config("prompts", name)
    text = path.read_text(encoding="utf-8").strip()
    if not text:
        raise SpecError(f"guardrail prompt {path} is empty")
    missing = [p for p in placeholders if "{" + p + "}" not in text]
    if missing:
        raise SpecError(f"guardrail prompt {path} lacks the placeholder(s) "
                        f"{', '.join('{' + p + '}' for p in missing)}")
    return text


def fill(template: str, **values: str) -> str:
    """`template` with each `{name}` of `values` replaced in one pass (other braces, e.g. a JSON
    example, and braces inside the values are left alone)."""
    pattern = re.compile("|".join(re.escape("{" + k + "}") for k in values))
    return pattern.sub(lambda m: values[m.group(0)[1:-1]], template)


def fingerprint(*parts: object) -> str:
    """A short hash of texts and settings, for identities."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


def transcript(conversation: Conversation) -> str:
    """The non-system messages as `User: ...` / `Assistant: ...` lines; a user message that
    carried an image is `User [image]: ...`."""
    lines = []
    for m in conversation:
        if m.role == "system":
            continue
        who = "User" if m.role == "user" else "Assistant"
        lines.append(f"{who}{' [image]' if m.images else ''}: {m.text}")
    return "\n".join(lines)


def images_of(conversation: Conversation) -> tuple[ImageRef, ...]:
    """Every image of the conversation, in order, each once."""
    out: list[ImageRef] = []
    for m in conversation:
        out.extend(i for i in m.images if i not in out)
    return tuple(out)


def review_request(conversation: Conversation, text: str, *, images: bool = True) -> Conversation:
    """A fresh request about `conversation`: its system messages, then one user message
    with the conversation's images (when `images`) followed by `text`."""
    systems = tuple(m for m in conversation if m.role == "system")
    pics = images_of(conversation) if images else ()
    content: str | tuple[ImagePart | TextPart, ...] = (
        (*(ImagePart(image=i) for i in pics), TextPart(text=text)) if pics else text)
    return (*systems, Message(role="user", content=content))


def _edit_text(m: Message, edit: Callable[[str], str], *, last: bool) -> Message:
    """`m` with its first (or last) text part edited; images stay in place."""
    if isinstance(m.content, str):
        return Message(role=m.role, content=edit(m.content))
    parts = list(m.content)
    where = [i for i, p in enumerate(parts) if isinstance(p, TextPart)]
    if not where:
        parts.append(TextPart(text=edit("")))
    else:
        i = where[-1] if last else where[0]
        old = parts[i]
        assert isinstance(old, TextPart)
        parts[i] = TextPart(text=edit(old.text))
    return Message(role=m.role, content=tuple(parts))


def append_to_users(conversation: Conversation, suffix: str) -> Conversation:
    """Every user message with `suffix` after its text (a blank line between)."""
    edit = (lambda t: f"{t}\n\n{suffix}" if t else suffix)
    return tuple(_edit_text(m, edit, last=True) if m.role == "user" else m for m in conversation)


def prepend_to_image_turns(conversation: Conversation, prefix: str) -> Conversation:
    """Every user message carrying an image with `prefix` before its text (a blank line between)."""
    edit = (lambda t: f"{prefix}\n\n{t}" if t else prefix)
    return tuple(_edit_text(m, edit, last=False) if m.role == "user" and m.images else m
                 for m in conversation)


def _no_arg(name: str, arg: str | None) -> None:
    if arg is not None:
        raise SpecError(f"guardrail {name!r} takes no argument, got {name}:{arg}")


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
    _no_arg("dpp", arg)
    return DefensivePromptPatch(read_prompt(options, "dpp.txt"))


def adashield_static(arg: str | None, options: GuardrailOptions, target: Target) -> Guardrail:
    """Factory for `adashield-s` (prompt: prompts/adashield_static.txt)."""
    _no_arg("adashield-s", arg)
    return AdaShieldStatic(read_prompt(options, "adashield_static.txt"))


# ------------------------------------------------------------------------------ AdaShield-A


@dataclass(frozen=True)
class Scenario:
    """One row of the AdaShield-A table."""

    name: str
    description: str
    """What risky requests of this scenario say; compared with the dialogue's user text."""
    defense: str
    """The defense prompt prepended when this scenario is chosen."""


Similarity = Callable[[str, Sequence[str]], list[float]]
"""(query, documents) -> one similarity per document, higher is more similar."""

_WORD = re.compile(r"[a-z]+")
_STOP = frozenset(re.findall(r"[a-z]+", """
a about after again all also am an and any are as at be been before being both but by can could did do does doing for from had has have having he her here hers him his
how i if in into is it its just me more most my no nor not of off on once only or other our out
over own same she should so some such than that the their them then there these they this those
through to too under until up very was we were what when where which while who whom why will
with would you your yours one ones thing things get gets got getting make makes made making want
wants know knows tell really like down back away find someone something anything people person
take takes taking took keep keeps real go goes going went come comes came use uses using used
way ways time times day days every ever never much many look looks looking need needs help
try see say think put let give good best first new old long sure yes okay lot kind sort"""))


def stem(word: str) -> str:
    """A crude suffix stripper, the same on both sides of a comparison: poisoning, poisoned,
    poisons -> poison; fires, fire -> fir."""
    for suffix in ("ing", "ed", "s"):
        if word.endswith(suffix) and not word.endswith("ss") and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    return word[:-1] if word.endswith("e") and len(word) >= 4 else word


def terms(text: str) -> list[str]:
    """Lower-cased word stems of `text`, stop words left out."""
    return [stem(w) for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 2]


def tfidf_similarity(query: str, documents: Sequence[str]) -> list[float]:
    """Cosine between TF-IDF vectors of `query` and each document. Fitted on the documents:
    idf = ln((1 + n) / (1 + df)) + 1, tf = 1 + ln(count); query words no document uses are
    ignored (so a long dialogue is not penalised for its everyday words)."""
    docs = [Counter(terms(d)) for d in documents]
    n = len(docs)
    df = Counter(t for d in docs for t in d)
    idf = {t: math.log((1 + n) / (1 + c)) + 1 for t, c in df.items()}

    def vector(counts: Counter[str]) -> dict[str, float]:
        return {t: (1 + math.log(c)) * idf[t] for t, c in counts.items() if t in idf}

    q = vector(Counter(terms(query)))
    q_norm = math.sqrt(sum(v * v for v in q.values()))
    out = []
    for d in docs:
        v = vector(d)
        norm = math.sqrt(sum(x * x for x in v.values()))
        dot = sum(w * v.get(t, 0.0) for t, w in q.items())
        out.append(dot / (q_norm * norm) if q_norm and norm else 0.0)
    return out


class EmbeddingSimilarity:
    """Cosine of sentence-transformers embeddings (a local model folder); descriptions are
    embedded once."""

    def __init__(self, path: str, device: str = "cpu") -> None:
        from sentence_transformers import SentenceTransformer

        self.model: Any = SentenceTransformer(path, device=device)
        self._docs: dict[tuple[str, ...], Any] = {}

    def __call__(self, query: str, documents: Sequence[str]) -> list[float]:
        key = tuple(documents)
        if key not in self._docs:
            self._docs[key] = self.model.encode(list(key), normalize_embeddings=True)
        q = self.model.encode([query], normalize_embeddings=True)[0]
        return [float(q @ d) for d in self._docs[key]]


def choose_scenario(text: str, scenarios: Sequence[Scenario], similarity: Similarity,
                    threshold: float) -> tuple[Scenario | None, float]:
    """(the scenario most similar to `text` (the first on ties), its similarity); the scenario
    is None when that similarity is below `threshold`."""
    if not scenarios:
        return None, 0.0
    sims = similarity(text, [s.description for s in scenarios])
    best = max(range(len(sims)), key=lambda i: (sims[i], -i))
    return (scenarios[best] if sims[best] >= threshold else None), sims[best]


def user_text(conversation: Conversation) -> str:
    """The text of every user turn, one per line."""
    return "\n".join(m.text for m in conversation if m.role == "user")


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


def load_table(path: Path) -> tuple[list[Scenario], dict[str, float]]:
    """(scenarios, thresholds by method) from an AdaShield-A table file."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        scenarios = [Scenario(str(s["name"]), str(s["description"]), str(s["defense"]))
                     for s in raw["scenarios"]]
        thresholds = {k: float(v) for k, v in raw["threshold"].items()}
        _ = thresholds["tfidf"], thresholds["embedding"]
    except (ValueError, KeyError, TypeError) as exc:
        raise SpecError(f"AdaShield-A table {path}: expected JSON with 'threshold' "
                        "{'tfidf': float, 'embedding': float} and 'scenarios' [{'name', "
                        f"'description', 'defense'}}, ...]: {type(exc).__name__}: {exc}") from None
    if not scenarios:
        raise SpecError(f"AdaShield-A table {path} has no scenarios")
    return scenarios, thresholds


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
        critic = None if self.critic is None else self.critic.identity()
        return f"{self.name}|{fingerprint('self-reflection', VERSION, self.critique_template, self.revise_template, critic, self.critique_tokens)}"

    async def aclose(self) -> None:
        if self.critic is not None:
            await self.critic.aclose()


def self_reflection(arg: str | None, options: GuardrailOptions, target: Target) -> Guardrail:
    """Factory for `self-reflection` (prompts: self_reflection_critique.txt and
    self_reflection_revise.txt; critic: --mtmcs-guard-model, else the target)."""
    _no_arg("self-reflection", arg)
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
