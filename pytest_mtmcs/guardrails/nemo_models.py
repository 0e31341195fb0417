"""Our models as NeMo Guardrails' LLM: the `HelperModel` provider NeMo builds from a config, and
the rails check in flight that its calls (and our custom actions) report to.

NeMo, not we, builds `HelperModel` from the YAML, so a model finds its guard by model name
(`register_route`, one unique name per guard) and the check it serves through a context
variable (`running`: per asyncio task, so NeMo may check many dialogues at once). Its calls go
to the guard's helper target via `ctx.extra` (cached in the store, counted in `guard_calls`);
errors are recorded on the check and re-raised after it, never turned by NeMo into a block.
NeMo is imported inside the methods NeMo calls only.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pytest_mtmcs.chat import Conversation, GenParams, ImageRef, Reply
from pytest_mtmcs.errors import SpecError
from pytest_mtmcs.guardrails.base import GuardContext
from pytest_mtmcs.guardrails.nemo_messages import from_nemo

if TYPE_CHECKING:
    from pytest_mtmcs.targets.base import Target

PROVIDER = "mtmcs"
"""The NeMo provider (`engine`) name of `HelperModel`."""
MAX_TOKENS = 16
"""`max_tokens` of a check request when NeMo's task sets none."""


class RouteOwner(Protocol):
    """What a rails check needs of the guard running it (`NemoGuard`)."""

    @property
    def folder(self) -> Path:
        """The NeMo config folder (for error messages)."""
        ...

    @property
    def helper(self) -> Target:
        """The model that answers the rails' LLM calls."""
        ...


_ROUTES: weakref.WeakValueDictionary[str, RouteOwner] = weakref.WeakValueDictionary()
"""Model name in a loaded config -> its adapter. Module-level because NeMo, not we, builds
`HelperModel` from the YAML; an entry goes with its adapter."""
_CHECK: ContextVar[RailsCheck | None] = ContextVar("mtmcs_nemo_check", default=None)


def register_route(key: str, guard: RouteOwner) -> None:
    """Route the calls of NeMo models named `key` to `guard` (for as long as it lives)."""
    _ROUTES[key] = guard


def drop_route(key: str) -> None:
    """Forget the route of `key` (its guard is closed)."""
    _ROUTES.pop(key, None)


@dataclass
class RailsCheck:
    """One rails check in flight: the guarded call and what happened inside NeMo."""

    guard: RouteOwner
    ctx: GuardContext
    images: dict[str, ImageRef]
    """Data URI sent to NeMo -> the image it encodes (no decoding on the way back)."""
    error: Exception | None = None
    """The first error our code raised inside NeMo (re-raised after the check)."""
    details: list[str] = field(default_factory=list)
    """Extra words for the block reason (e.g. Llama Guard categories)."""

    async def ask(self, conversation: Conversation, params: GenParams) -> Reply:
        """Send a check request to the helper model through the store (counted)."""
        helper = self.guard.helper
        if not helper.supports_images and any(m.images for m in conversation):
            raise SpecError(f"the NeMo config {self.guard.folder} sends images to its checker, "
                            f"but the helper model {helper.spec!r} cannot read images; pick a "
                            "vision model with --mtmcs-guard-model or a text-only config")
        return await self.ctx.extra(helper, conversation, params)

    def record(self, exc: Exception) -> None:
        """Keep the first error our code raised inside NeMo."""
        self.error = self.error or exc


@contextmanager
def running(check: RailsCheck) -> Iterator[RailsCheck]:
    """Make `check` the current one (`current_check`) in this task while the block runs."""
    token = _CHECK.set(check)
    try:
        yield check
    finally:
        _CHECK.reset(token)


def current_check(key: str | None = None) -> RailsCheck:
    """The check running in this task; RuntimeError when none is, or when the NeMo model named
    `key` belongs to another guard."""
    check = _CHECK.get()
    if check is None:
        raise RuntimeError("NeMo called a pytest-mtmcs model or action outside a rails check")
    if key is not None and _ROUTES.get(key) is not check.guard:
        raise RuntimeError(f"NeMo model {key!r} does not belong to the guard running this check")
    return check


class HelperModel:
    """NeMo's LLM in the configs `NemoGuard` loads (implements `nemoguardrails.types.LLMModel`).

    NeMo builds it as `HelperModel(model=<route key>, **parameters)`; `parameters` are ignored
    (the helper target has its own settings). `generate_async` turns NeMo's prompt (a string or
    chat messages, image parts included) into a Conversation and has the helper target answer it
    through the current check's `ctx.extra`; `temperature` and `max_tokens` become GenParams,
    `stop` is ignored."""

    provider_name: str = PROVIDER
    provider_url: str | None = None

    def __init__(self, model: str, **parameters: Any) -> None:
        self.model_name = self._key = model

    async def generate_async(self, prompt: Any, *, stop: list[str] | None = None,
                             **kwargs: Any) -> Any:
        from nemoguardrails.types import LLMResponse, UsageInfo

        check = current_check(self._key)
        try:
            params = GenParams(temperature=float(kwargs.get("temperature") or 0.0),
                               max_tokens=int(kwargs.get("max_tokens") or MAX_TOKENS))
            reply = await check.ask(from_nemo(prompt, check.images), params)
        except Exception as exc:
            check.record(exc)
            raise
        used, made = reply.prompt_tokens or 0, reply.completion_tokens or 0
        return LLMResponse(content=reply.text, model=self._key,
                           usage=UsageInfo(input_tokens=used, output_tokens=made,
                                           total_tokens=used + made))

    async def stream_async(self, prompt: Any, *, stop: list[str] | None = None,
                           **kwargs: Any) -> Any:
        from nemoguardrails.types import LLMResponseChunk

        response = await self.generate_async(prompt, stop=stop, **kwargs)
        yield LLMResponseChunk(delta_content=response.content)
