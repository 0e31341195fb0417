"""OpenAI-compatible chat-completions target (OpenAI, vLLM, TGI, Ollama, LM Studio, ...).

Specs:
    openai:MODEL                          base URL from $OPENAI_BASE_URL, else OpenAI's
    openai+http://host:port/v1:MODEL      any compatible server; MODEL may contain ':' and '/'

Images travel as base64 `data:` URIs in `image_url` parts; the history keeps the model's own
replies as `assistant` messages. The API key is read from the environment variable named by
`--mtmcs-api-key-env` (default OPENAI_API_KEY) and never appears in specs, keys or reports.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

from pytest_mtmcs.chat import Conversation, GenParams, ImagePart, Reply, data_uri
from pytest_mtmcs.errors import SpecError, TargetError
from pytest_mtmcs.targets.base import Target, TargetOptions

_URL_MODEL = re.compile(r"^(?P<url>https?://[^/\s:]+(?::\d+)?(?:/[^:\s]*)?):(?P<model>\S.*)$")


def to_openai_messages(conversation: Conversation) -> list[dict[str, Any]]:
    """The conversation in the chat-completions wire format."""
    out: list[dict[str, Any]] = []
    for m in conversation:
        if isinstance(m.content, str):
            out.append({"role": m.role, "content": m.content})
            continue
        parts: list[dict[str, Any]] = []
        for p in m.content:
            if isinstance(p, ImagePart):
                parts.append({"type": "image_url", "image_url": {"url": data_uri(p.image)}})
            else:
                parts.append({"type": "text", "text": p.text})
        out.append({"role": m.role, "content": parts})
    return out


class OpenAICompatTarget(Target):
    """A model behind a chat-completions endpoint, called through the `openai` SDK's async client."""

    def __init__(self, model: str, base_url: str | None, options: TargetOptions) -> None:
        self.model = model
        self.base_url = base_url
        self.options = options
        self._client: Any = None

    @property
    def url(self) -> str:
        """The endpoint's base URL, for messages."""
        return self.base_url or "https://api.openai.com/v1"

    def _api_key(self) -> str:
        key = os.environ.get(self.options.api_key_env, "")
        if key:
            return key
        if self.base_url is None:
            raise TargetError(f"no API key: set the environment variable {self.options.api_key_env} "
                              "(or name another one with --mtmcs-api-key-env)", url=self.url)
        return "EMPTY"  # self-hosted servers (vLLM, TGI, Ollama) usually accept any key

    def client(self) -> Any:
        """The SDK client, created on first use (inside the running event loop)."""
        if self._client is None:
            import openai

            self._client = openai.AsyncOpenAI(
                base_url=self.base_url, api_key=self._api_key(),
                timeout=self.options.timeout_s, max_retries=self.options.retries,
            )
        return self._client

    def identity(self) -> str:
        return f"openai|{self.url}|{self.model}"

    def _limit_name(self) -> str:
        """OpenAI's own API takes `max_completion_tokens` (its reasoning models, e.g. the GPT-5
        family, reject `max_tokens`); self-hosted servers are sent `max_tokens`, which every
        OpenAI-compatible server (vLLM, TGI, Ollama, LM Studio) reads."""
        return "max_completion_tokens" if "api.openai.com" in self.url else "max_tokens"

    async def respond(self, conversation: Conversation, params: GenParams) -> Reply:
        import openai
        from openai.types.chat import ChatCompletion

        started = time.perf_counter()
        try:
            # `post` is the SDK's documented way to send a body as it is: `create()` would first
            # walk every message through its TypedDict transform, which costs more CPU than
            # the rest of the call (measured in bench/rollout_speed.py). Retries, timeouts,
            # errors and parsing into ChatCompletion are the same.
            body = {"model": self.model, "messages": to_openai_messages(conversation),
                    "temperature": params.temperature, self._limit_name(): params.max_tokens}
            if params.seed is not None:
                body["seed"] = params.seed
            resp = await self.client().post("/chat/completions", cast_to=ChatCompletion, body=body)
        except openai.APIStatusError as exc:
            raise TargetError(f"{self.url} answered HTTP {exc.status_code} for model {self.model!r} "
                              f"after {self.options.retries} retries: {_short(exc.message)}",
                              url=self.url, status=exc.status_code) from None
        except openai.APITimeoutError:
            raise TargetError(f"{self.url} did not answer within {self.options.timeout_s:g} s "
                              f"(after {self.options.retries} retries)", url=self.url) from None
        except openai.APIConnectionError as exc:
            raise TargetError(f"could not reach {self.url} after {self.options.retries} retries: "
                              f"{_short(str(exc.__cause__ or exc))}", url=self.url) from None
        except openai.OpenAIError as exc:
            raise TargetError(f"{self.url}: {_short(str(exc))}", url=self.url) from None
        except ValueError as exc:  # the SDK lets a malformed JSON body through as JSONDecodeError
            raise TargetError(f"{self.url} answered with a body that is not valid JSON: "
                              f"{_short(str(exc))}", url=self.url) from None
        if not getattr(resp, "choices", None):
            raise TargetError(f"{self.url} answered without choices", url=self.url)
        msg = resp.choices[0].message
        text = msg.content if msg.content is not None else (getattr(msg, "refusal", None) or "")
        usage = getattr(resp, "usage", None)
        return Reply(
            text=text,
            prompt_tokens=getattr(usage, "prompt_tokens", None),
            completion_tokens=getattr(usage, "completion_tokens", None),
            latency_s=time.perf_counter() - started,
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_rest(rest: str) -> tuple[str | None, str]:
    """(base_url or None, model) from the part of the spec after `openai`."""
    if rest.startswith("+"):
        m = _URL_MODEL.match(rest[1:])
        if not m:
            raise SpecError(f"cannot parse target spec 'openai{rest}': expected "
                            "openai+http(s)://HOST[:PORT]/PATH:MODEL, e.g. "
                            "openai+http://127.0.0.1:8000/v1:Qwen/Qwen3-VL-8B-Instruct")
        return m.group("url").rstrip("/"), m.group("model")
    if not rest.strip():
        raise SpecError("cannot parse target spec 'openai:': the model name is missing, "
                        "e.g. openai:gpt-4o")
    return os.environ.get("OPENAI_BASE_URL") or None, rest.strip()



def from_spec(rest: str, options: TargetOptions) -> OpenAICompatTarget:
    """Factory for `openai:MODEL` and `openai+URL:MODEL`."""
    base_url, model = parse_rest(rest)
    return OpenAICompatTarget(model, base_url, options)
