"""`nemo`: NeMo Guardrails input and output rails around the target under test.

`--mtmcs-guardrail nemo` uses `guardrails/nemo/self_check`; `nemo:NAME` a folder under
`guardrails/nemo/` (`self_check_mm`, `llama_guard`), `nemo:PATH` any NeMo config folder.

Per call: the input rails check the request (`LLMRails.check_async`: rails only, NeMo generates
nothing); blocked -> a refusal, reason `nemo input: <rail>`, the target is not called. Else the
target answers (`ctx.answer()`) and the output rails check the reply (`nemo output: <rail>`).

NeMo's LLM calls: at load, every model entry (embeddings excepted; `main` added if missing) gets
`engine: mtmcs` and a model name unique to this adapter, so NeMo builds our `HelperModel`
(`nemo_models`), whose calls go to the helper model (`--mtmcs-guard-model`, default the target)
via `ctx.extra`: cached in the store, counted in `guard_calls`. Errors of the helper or of our
actions are re-raised, never turned by NeMo into a block.

Scope (`--mtmcs-guard-scope`): `last` (NeMo's own behaviour) passes the conversation as it is and
the rails bind the last user message, so harm only earlier turns reveal slips past; `dialogue`
passes one user message holding the dialogue so far as a transcript ("User: ...", "Assistant:
..."; system messages left out, images in place), so `{{ user_input }}` is all of it and any
prompt text works unchanged.

Images reach NeMo as content parts (`image_url` data URIs). Text prompts see text only: the
filter `mtmcs_text` writes `[image]` for an image, and a bare `{{ user_input }}` in a config's
prompt text gets that filter at load (no Python repr of parts ever lands in a prompt). Image-aware
checks are custom actions: `mtmcs_image_check_input` sends the prompt `mtmcs_self_check_input_image`
WITH the images to the helper; `llama_guard_check(role=user|assistant)` classifies with
`pytest_mtmcs.guardrails.llama_guard` (config: `custom_data: {llama_guard: {model: PATH}}`).

How our messages become NeMo's and back is `nemo_messages`' job; this module loads and checks
the config, runs the rails and holds the custom actions.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_mtmcs.chat import GenParams, ImagePart, ImageRef, Message, Reply, TextPart, assistant
from pytest_mtmcs.dataset.resources import Traversable, as_folder, describe, join
from pytest_mtmcs.errors import GuardrailUnavailable, SpecError
from pytest_mtmcs.guardrails.base import GuardContext, Guardrail
from pytest_mtmcs.guardrails.nemo_messages import mtmcs_text, nemo_parts, protect_prompts, to_nemo
from pytest_mtmcs.guardrails.nemo_models import (
    MAX_TOKENS,
    PROVIDER,
    HelperModel,
    RailsCheck,
    current_check,
    drop_route,
    register_route,
    running,
)

if TYPE_CHECKING:
    from pytest_mtmcs.guardrails import GuardrailOptions
    from pytest_mtmcs.targets.base import Target

SCOPES = ("last", "dialogue")
IMAGE_TASK = "mtmcs_self_check_input_image"
"""The prompt task of the image-aware input check."""
_FAILED = re.compile(r"an internal error has occurred|^Action '.*' not found\.$")
"""The refusal texts NeMo substitutes when a rail's action fails or does not exist."""


def folder_hash(folder: Path) -> str:
    """sha256 over the config folder's files (relative paths and bytes), caches left out."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if "__pycache__" not in path.parts and path.suffix != ".pyc":
            digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _nemo() -> Any:
    try:
        import nemoguardrails
    except ImportError as exc:
        raise GuardrailUnavailable("NeMo Guardrails", "nemo", "nemoguardrails") from exc
    return nemoguardrails


class NemoGuard(Guardrail):
    """NeMo Guardrails input rails before and output rails after the target (see the module).

    The config is loaded and validated here; NeMo's runtime (about 0.4 s: it parses its Colang
    library) is built on the first call. The scope is `options.scope`. `owns_helper`: close the
    helper in `aclose` (it was built for this guard)."""

    name = "nemo"

    def __init__(self, folder: Traversable, helper: Target, options: GuardrailOptions,
                 owns_helper: bool = False) -> None:
        # NeMo reads a real folder (at load, and actions.py when the rails are built): the
        # shipped config is one in a normal install; a copy is made otherwise, kept until aclose.
        self._files = ExitStack()
        try:
            self._load(self._files.enter_context(as_folder(folder)), helper, options, owns_helper)
        except BaseException:
            self._files.close()
            raise

    def _load(self, folder: Path, helper: Target, options: GuardrailOptions,
              owns_helper: bool) -> None:
        if options.scope not in SCOPES:
            raise SpecError(f"NeMo guard scope {options.scope!r}: expected one of "
                            f"{', '.join(SCOPES)}")
        nemo = _nemo()
        from nemoguardrails.rails.llm.config import Model

        self.folder, self.helper, self.scope, self.options = folder, helper, options.scope, options
        self._owns_helper = owns_helper
        self._hash = folder_hash(folder)
        self._key = f"mtmcs-{uuid.uuid4().hex}"
        try:
            config = nemo.RailsConfig.from_path(str(folder))
        except Exception as exc:
            raise SpecError(f"NeMo config {folder} does not load: {exc}") from exc
        for model in config.models:
            if model.type not in ("embeddings", "jailbreak_detection"):
                model.engine, model.model, model.parameters = PROVIDER, self._key, {}
                model.api_key_env_var = None
        if not any(m.type == "main" for m in config.models):
            config.models.append(Model(type="main", engine=PROVIDER, model=self._key))
        protect_prompts(config)
        self._config = config
        self._kinds = [k for k in ("input", "output") if getattr(config.rails, k).flows]
        self._rails: Any = None
        self._classifier: Any = None
        if "llama_guard" in config.custom_data:
            self._classifier = self._load_classifier(config.custom_data["llama_guard"] or {})

    def identity(self) -> str:
        checker = self._classifier.identity() if self._classifier is not None else None
        return json.dumps({"name": self.name, "config": self._hash, "scope": self.scope,
                           "helper": self.helper.cache_identity(), "llama_guard": checker},
                          sort_keys=True, default=str)

    def _runtime(self) -> Any:
        if self._rails is None:  # no await in here: concurrent first calls build it once
            from nemoguardrails.llm.providers import register_provider

            register_provider(PROVIDER, HelperModel)
            register_route(self._key, self)
            rails = _nemo().LLMRails(self._config)
            rails.register_filter(mtmcs_text, "mtmcs_text")
            rails.register_action(self._image_check, "mtmcs_image_check_input")
            rails.register_action(self._llama_guard_check, "llama_guard_check")
            self._rails = rails
        return self._rails

    async def respond(self, ctx: GuardContext) -> Reply:
        images: dict[str, ImageRef] = {}
        messages = to_nemo(ctx.conversation, self.scope, images)
        if "input" in self._kinds:
            rail = await self._check(ctx, messages, images, "input")
            if rail is not None:
                return ctx.block(f"nemo input: {rail}")
        reply = await ctx.answer()
        if "output" in self._kinds:
            checked = [*messages, {"role": "assistant", "content": reply.text}]
            rail = await self._check(ctx, checked, images, "output")
            if rail is not None:
                return ctx.block(f"nemo output: {rail}")
        return reply

    async def _check(self, ctx: GuardContext, messages: list[dict[str, Any]],
                     images: dict[str, ImageRef], kind: str) -> str | None:
        """Run the `kind` rails; the blocking rail's name (with details) or None."""
        from nemoguardrails.rails.llm.options import RailStatus, RailType

        rails = self._runtime()
        check = RailsCheck(self, ctx, images)
        with running(check):
            try:
                result = await rails.check_async(messages, rail_types=[RailType(kind)])
            except Exception as exc:  # NeMo wraps model errors (LLMCallException): raise ours
                if check.error is not None:
                    raise check.error from exc
                raise
        if check.error is not None:  # an action's error, which NeMo turned into a refusal
            raise check.error
        if result.status != RailStatus.BLOCKED:
            return None
        if _FAILED.search(str(result.content)):
            raise SpecError(f"NeMo {kind} rail {result.rail!r} of {self.folder} failed inside "
                            "NeMo (see the nemoguardrails log); no verdict was reached")
        rail = result.rail or "?"
        return f"{rail} ({'; '.join(check.details)})" if check.details else rail

    async def _image_check(self, context: dict[str, Any] | None = None,
                           llm_task_manager: Any = None) -> Any:
        """Action `mtmcs_image_check_input`: the IMAGE_TASK prompt with the user message's
        images attached, answered by the helper; blocks when the parsed answer is unsafe
        (the prompt's `output_parser`, else NeMo's `is_content_safe`: "Yes" blocks)."""
        from nemoguardrails.actions.rail_outcome import RailOutcome

        check, tasks = current_check(), llm_task_manager
        try:
            content = (context or {}).get("user_message")
            prompt = tasks.render_task_prompt(task=IMAGE_TASK, context={"user_input": content})
            if not isinstance(prompt, str):
                raise SpecError(f"NeMo config {self.folder}: prompt {IMAGE_TASK!r} must be a "
                                "`content` prompt (pytest-mtmcs attaches the images)")
            shown = nemo_parts(content, check.images) if isinstance(content, list) else ()
            parts: tuple[ImagePart | TextPart, ...] = (
                *(p for p in shown if isinstance(p, ImagePart)), TextPart(text=prompt))
            params = GenParams(temperature=0.0,
                               max_tokens=int(tasks.get_max_tokens(task=IMAGE_TASK) or MAX_TOKENS))
            reply = await check.ask((Message(role="user", content=parts),), params)
            parser = None if tasks.has_output_parser(IMAGE_TASK) else "is_content_safe"
            verdict = tasks.parse_task_output(IMAGE_TASK, output=reply.text,
                                              forced_output_parser=parser)
        except Exception as exc:
            check.record(exc)
            raise
        return RailOutcome.allow() if verdict[0] else RailOutcome.block()

    def _load_classifier(self, settings: dict[str, Any]) -> Any:
        try:
            from pytest_mtmcs.guardrails.llama_guard import load_classifier
        except ImportError as exc:
            raise SpecError(f"NeMo config {self.folder} uses Llama Guard, but "
                            f"pytest_mtmcs.guardrails.llama_guard is not importable: {exc}") from exc
        path = settings.get("model")
        if not path:
            raise SpecError(f"NeMo config {self.folder}: set `custom_data.llama_guard.model` in "
                            "its config.yml to a Llama Guard checkpoint (folder or hub id)")
        local = Path(str(path)).expanduser()
        if not local.is_absolute() and (self.folder / local).exists():
            path = str(self.folder / local)  # relative to the config folder
        return load_classifier(str(path), self.options)

    async def _llama_guard_check(self, role: str = "user",
                                 context: dict[str, Any] | None = None) -> Any:
        """Action `llama_guard_check(role=user|assistant)`: Llama Guard on the last user message
        (scope `last`) or the whole dialogue (`dialogue`), plus the reply for `assistant`; one
        counted guard call (with the tokens it generated); unsafe -> block, categories in the
        block reason."""
        from nemoguardrails.actions.rail_outcome import RailOutcome

        check = current_check()
        try:
            if self._classifier is None:
                raise SpecError(f"NeMo config {self.folder} calls llama_guard_check but has no "
                                "`custom_data: {llama_guard: {model: PATH}}`")
            turns = [m for m in check.ctx.conversation if m.role != "system"]
            if self.scope == "last":
                turns = [m for m in turns if m.role == "user"][-1:]
            if role in ("assistant", "agent"):
                turns.append(assistant(str((context or {}).get("bot_message") or "")))
            verdict = await self._classifier.classify(
                tuple(turns), "user" if role == "user" else "agent")
            check.ctx.count(1, tokens=int(getattr(verdict, "tokens", 0) or 0))
        except Exception as exc:
            check.record(exc)
            raise
        if not verdict.unsafe:
            return RailOutcome.allow()
        categories = [str(c) for c in (getattr(verdict, "categories", None) or [])]
        if categories:
            check.details.append(", ".join(categories))
        return RailOutcome.block(metadata={"categories": categories,
                                           "p_unsafe": getattr(verdict, "p_unsafe", None)})

    async def aclose(self) -> None:
        drop_route(self._key)
        self._rails = None
        self._files.close()
        if self._owns_helper:
            await self.helper.aclose()


def _folder(arg: str | None, options: GuardrailOptions) -> Traversable:
    if arg is None:
        return options.config("nemo", "self_check")
    path: Traversable = Path(arg).expanduser()
    if not path.is_dir():
        named = join(options.config_dir, "nemo", arg)
        if not named.is_dir():
            raise SpecError(f"NeMo config {arg!r}: no such folder (nor {describe(named)}); expected "
                            "nemo:PATH to a NeMo Guardrails config folder or the name of one "
                            f"under {describe(join(options.config_dir, 'nemo'))}")
        path = named
    if not any(join(path, n).is_file() for n in ("config.yml", "config.yaml")):
        raise SpecError(f"NeMo config folder {describe(path)} has no config.yml")
    return path


def from_spec(arg: str | None, options: GuardrailOptions, target: Target) -> NemoGuard:
    """Factory for `nemo` and `nemo:CONFIG` (a folder path or a name under guardrails/nemo/)."""
    _nemo()
    return NemoGuard(_folder(arg, options), options.helper(target), options,
                     owns_helper=options.model is not None)
