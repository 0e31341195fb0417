"""The Target contract: one abstract async method, defaults for the rest.

A target is anything that answers a conversation: a model server, a local model, a baseline,
a guardrail wrapping another target, or a judge. Targets are built from a URI-like spec by
`pytest_mtmcs.targets.make_target`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from pytest_mtmcs.chat import Conversation, GenParams, Reply


class TargetOptions(BaseModel):
    """Settings every target factory receives (from the command line or ini)."""

    model_config = ConfigDict(frozen=True)
    cache_dir: str = ".mtmcs"
    """Folder for derived artefacts (e.g. the converted SmolLM2 checkpoint)."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the API key of OpenAI-compatible servers."""
    timeout_s: float = 120.0
    """Per-call timeout."""
    retries: int = 4
    """Retries after the first attempt for transient failures (timeouts, connection errors,
    429, 5xx, malformed 200 bodies); other 4xx answers are never retried."""
    backoff_base_s: float = 0.5
    """First retry delay bound of HTTP targets: retry n waits uniform(0, min(cap, base * 2**n))
    ("full jitter"), unless the server sent Retry-After or another replica can take it."""
    backoff_cap_s: float = 30.0
    """Upper bound of one backoff delay."""
    retry_after_cap_s: float = 60.0
    """Upper bound on a server's Retry-After (seconds or HTTP date) that is honoured."""
    max_outage_s: float = 300.0
    """Once every call to a server (to all its replicas) has failed for longer than this, with
    no success since the first failure, calls fail at once with OutageError and the run stops.
    `inf` never gives up; 0 gives up as soon as a failure is not followed by a success."""
    replica_concurrency: int = 0
    """Most calls in flight to one replica of a replicated target; 0: no limit beyond
    --mtmcs-concurrency."""
    cooldown_base_s: float = 1.0
    """A replica whose call failed (retryably) leaves the rotation for this long, doubling with
    each further consecutive failure; a success brings it back at once."""
    cooldown_cap_s: float = 60.0
    """Upper bound of a replica's cool-down."""
    max_reply_chars: int = 100_000
    """Most characters of one reply an HTTP target keeps; a longer reply is cut to this many
    and the cut is recorded (`Reply.cut_at`, counted as `cut_replies`). The body is read only
    that far (about 4 bytes a character), so a runaway server cannot fill memory or the store.
    Far above what any answer of a few hundred tokens needs."""
    batch_size: int = 16
    """Largest batch a local model generates at once."""
    caption_for_text: bool = False
    """Text-only targets read the image caption in place of the image."""
    device: str = "cpu"
    """Where local (hf:) models run: cpu, cuda, cuda:N, mps, or auto (the first GPU when torch
    sees one, else the CPU). Anything else is a SpecError when the target is built."""
    dtype: str = "auto"
    """Weight dtype of local (hf:) models: float32, bfloat16, float16, or auto (float32 on the
    CPU; on a GPU the checkpoint's own dtype when it is 16-bit, else float32)."""


def qualified_name(code: object) -> str:
    """`module.QualName` of a class or function: the same code imported again (a conftest
    re-imported, another process) has the same name."""
    module = getattr(code, "__module__", None) or "?"
    return f"{module}.{getattr(code, '__qualname__', type(code).__qualname__)}"


def code_identity(obj: object) -> str:
    """`module.QualName` of the object's class, with `@version` when the object has a `version`
    that is not None: the part of a cache identity that changes when the code does.

    Deterministic across processes (no ids, no hashes of code objects), so xdist workers and
    later runs compute the same keys."""
    name = qualified_name(type(obj))
    version = getattr(obj, "version", None)
    return name if version is None else f"{name}@{version}"


class Target(ABC):
    """Answers conversations. Subclasses implement `respond`; everything else has a default.

    A custom target in a user's conftest.py is a subclass with `respond` and a factory
    registered with `pytest_mtmcs.register_target`; see the README, "Extend it"."""

    spec: str = "?"
    """The spec this target was built from; part of every cache key."""
    version: str | None = None
    """The version of this class's behaviour, part of the default `identity()`: bump it when
    `respond` changes, and replies cached by the old code are never replayed."""
    supports_images: bool = True
    """False for text-only models: multimodal dialogues are skipped (or captioned)."""

    @abstractmethod
    async def respond(self, conversation: Conversation, params: GenParams) -> Reply:
        """Answer the conversation's last user message, given the whole history."""

    def identity(self) -> str:
        """What distinguishes this target's replies in the cache: by default the class
        (`module.QualName`), its `version` and the spec, e.g.
        `conftest.InHouseTarget@2|inhouse:demo`.

        Override it to add configuration that changes replies but is not in the spec; build
        on `super().identity()` so the class and version stay in it. Never put secrets in it:
        it is stored beside every cached reply."""
        return f"{code_identity(self)}|{self.spec}"

    def cache_identity(self) -> str:
        """The identity the store keys this target's replies by: `identity()` with the class and
        `version` always in front, even when an override of `identity()` leaves them out. The
        engine uses this, never `identity()` directly; do not override it."""
        own = self.identity()
        code = code_identity(self)
        return own if own.startswith(code + "|") else f"{code}|{own}"

    def describe(self) -> str:
        """One line for the terminal summary."""
        return self.spec

    async def respond_many(self, conversations: Sequence[Conversation],
                           params: GenParams) -> list[Reply]:
        """Answer several independent conversations; local models override this to batch."""
        return [await self.respond(c, params) for c in conversations]

    async def aclose(self) -> None:  # noqa: B027 (a default: most hold nothing to release)
        """Release connections, threads and models."""
