"""OpenAI-compatible chat-completions target (OpenAI, vLLM, TGI, Ollama, LM Studio, ...).

Specs:
    openai:MODEL                          base URL from $OPENAI_BASE_URL, else OpenAI's
    openai+http://host:port/v1:MODEL      any compatible server; MODEL may contain ':' and '/'
    openai+URL1|URL2|URL3:MODEL           replicas of one model (quote it in a shell: `|`)
    openai+file:replicas.txt:MODEL        replicas listed in a file, one URL a line (`#` comments)

Images travel as base64 `data:` URIs in `image_url` parts; the history keeps the model's own
replies as `assistant` messages. The API key is read from the environment variable named by
`--mtmcs-api-key-env` (default OPENAI_API_KEY) and never appears in specs, keys, messages or
reports.

Failures are handled here, not by the SDK (its own retries are off, so nothing is counted
twice): timeouts (`timeout_s` bounds each whole attempt), connection errors, 429 (Retry-After
honoured up to `retry_after_cap_s`), 5xx and malformed 200 bodies are retried up to `retries`
times with full-jitter backoff; any other 4xx fails at once. A replica that fails sits out a
cool-down while its retry goes to another (see `replicas.py`). When no call has succeeded for
longer than `max_outage_s`, calls raise OutageError at once (see `resilience.py`). Counters are
in `target.stats`.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import sys
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

from pytest_mtmcs.chat import Conversation, GenParams, ImagePart, Reply, data_uri
from pytest_mtmcs.errors import OutageError, SpecError, TargetError
from pytest_mtmcs.targets.base import Target, TargetOptions
from pytest_mtmcs.targets.replicas import Replica, ReplicaPool
from pytest_mtmcs.targets.resilience import (
    CallStats,
    OutageCircuit,
    backoff_delay,
    retry_after_s,
    retry_reason,
)

# A URL cannot hold a raw '|' (RFC 3986 wants it percent-encoded) and its path holds no ':'
# here, so '|' separates replicas and the first ':' after the last URL starts the model.
_URL = r"https?://[^/\s:|]+(?::\d+)?(?:/[^:\s|]*)?"
_URL_ONLY = re.compile(rf"^{_URL}$")
_URLS_MODEL = re.compile(rf"^(?P<urls>{_URL}(?:\|{_URL})*):(?P<model>\S.*)$")
OPENAI_URL = "https://api.openai.com/v1"
_T = TypeVar("_T")


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


if sys.version_info >= (3, 11):
    async def _within(aw: Awaitable[_T], seconds: float) -> _T:
        """`aw`, cut after `seconds` with TimeoutError (the whole attempt, not one socket read)."""
        async with asyncio.timeout(seconds):
            return await aw
else:  # pragma: no cover - Python 3.10
    async def _within(aw: Awaitable[_T], seconds: float) -> _T:
        return await asyncio.wait_for(aw, seconds)


class _Failed(Exception):
    """One attempt failed retryably: `reason` (stats key), text for the final message."""

    def __init__(self, reason: str, detail: str, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.reason, self.detail, self.status, self.retry_after = reason, detail, status, retry_after


class OpenAICompatTarget(Target):
    """A model behind one or more chat-completions endpoints, called through the `openai` SDK.

    `base_url`: None (the SDK's default, OpenAI's API), one URL, or several replica URLs of
    the same model joined by '|'. Counters: `stats`. Raises TargetError when a call fails
    for good (naming the URL, the status and the retries made), OutageError (a TargetError)
    once the server has failed continuously for longer than `options.max_outage_s`.
    """

    def __init__(self, model: str, base_url: str | None, options: TargetOptions) -> None:
        _check_options(options)
        self.model = model
        self.base_url = base_url
        self.options = options
        self.replicas: tuple[str, ...] = tuple(base_url.split("|")) if base_url else (OPENAI_URL,)
        """The replica URLs (one for a plain spec)."""
        self._pool = ReplicaPool(self.replicas, per_replica_limit=options.replica_concurrency,
                                 cooldown_base_s=options.cooldown_base_s,
                                 cooldown_cap_s=options.cooldown_cap_s)
        self._circuit = OutageCircuit(options.max_outage_s)
        self._stats = CallStats()
        self._rng = random.Random()

    @property
    def url(self) -> str:
        """The endpoint's base URL (replicas joined by '|'), for messages."""
        return self.base_url or OPENAI_URL

    @property
    def stats(self) -> dict[str, Any]:
        """A JSON-ready snapshot of the counters: calls, ok, failed, attempts, retries,
        retries_by_reason (e.g. {"http_503": 2, "timeout": 1}), failures_by_reason,
        outage_errors, and replicas (url -> attempts, failures, cooldowns, max_in_flight)."""
        return {**self._stats.as_dict(), "replicas": self._pool.as_dict()}

    def _api_key(self) -> str:
        key = os.environ.get(self.options.api_key_env, "")
        if key:
            return key
        if self.base_url is None:
            raise TargetError(f"no API key: set the environment variable {self.options.api_key_env} "
                              "(or name another one with --mtmcs-api-key-env)", url=self.url)
        return "EMPTY"  # self-hosted servers (vLLM, TGI, Ollama) usually accept any key

    def _client_for(self, r: Replica) -> Any:
        if r.client is None:
            import openai

            # max_retries=0: the retry loop is ours (counted, jittered, fails over replicas).
            r.client = openai.AsyncOpenAI(
                base_url=self.base_url and r.url, api_key=self._api_key(),
                timeout=self.options.timeout_s, max_retries=0)
        return r.client

    def client(self) -> Any:
        """The SDK client of the first replica, created on first use (inside the running loop)."""
        return self._client_for(self._pool.replicas[0])

    def identity(self) -> str:
        # Replicas serve one model, so which one answered, and how many there are, must not
        # split the cache. A single URL keeps its URL in the identity: servers that name every
        # model alike (TGI answers to "tgi") must not share replies.
        if len(self.replicas) > 1:
            return f"openai|replicas|{self.model}"
        return f"openai|{self.url}|{self.model}"

    def describe(self) -> str:
        n = len(self.replicas)
        return self.spec if n == 1 else f"{self.spec} ({n} replicas)"

    def _limit_name(self) -> str:
        """OpenAI's own API takes `max_completion_tokens` (its reasoning models, e.g. the GPT-5
        family, reject `max_tokens`); self-hosted servers are sent `max_tokens`, which every
        OpenAI-compatible server (vLLM, TGI, Ollama, LM Studio) reads."""
        return "max_completion_tokens" if "api.openai.com" in self.url else "max_tokens"

    async def respond(self, conversation: Conversation, params: GenParams) -> Reply:
        started = time.perf_counter()
        body: dict[str, Any] = {"model": self.model, "messages": to_openai_messages(conversation),
                                "temperature": params.temperature,
                                self._limit_name(): params.max_tokens}
        if params.seed is not None:
            body["seed"] = params.seed
        stats, pool, circuit, opts = self._stats, self._pool, self._circuit, self.options
        stats.calls += 1
        last: _Failed | None = None
        replica: Replica | None = None
        try:
            for attempt in range(opts.retries + 1):
                circuit.check(self.url)
                replica = pool.take()
                while replica is None:  # every replica cooling down or at its limit
                    replica = await pool.wait_take(circuit.time_left())
                    if replica is None:
                        circuit.check(self.url)  # other calls' failures may have opened it
                if last is not None:
                    stats.retries[last.reason] += 1
                stats.attempts += 1
                try:
                    resp = await self._attempt(replica, body)
                except _Failed as failed:
                    pool.release(replica, ok=False, retry_after_s=failed.retry_after)
                    circuit.failure()
                    stats.failures[failed.reason] += 1
                    last = failed
                except BaseException:  # a non-retryable answer, or the call was cancelled
                    pool.release(replica, ok=None)
                    raise
                else:
                    pool.release(replica, ok=True)
                    circuit.success()
                    stats.ok += 1
                    return _reply(resp, started)
                if attempt < opts.retries:
                    await asyncio.sleep(min(self._delay(attempt, replica, last), circuit.time_left()))
        except OutageError:
            stats.outage_errors += 1
            stats.failed += 1
            raise
        except BaseException:
            stats.failed += 1
            raise
        stats.failed += 1
        assert last is not None and replica is not None
        raise self._give_up(replica.url, last, opts.retries)

    async def _attempt(self, replica: Replica, body: dict[str, Any]) -> Any:
        """One HTTP request; raises _Failed (retryable) or TargetError (not retryable).

        Errors are raised after the `except` blocks, so they do not chain the SDK's exception
        (whose message may quote the key a careless server echoed) as their __context__.
        """
        import openai
        from openai.types.chat import ChatCompletion

        error: Exception
        try:
            # `post` is the SDK's documented way to send a body as it is: `create()` would first
            # walk every message through its TypedDict transform, which costs more CPU than
            # the rest of the call (measured in bench/rollout_speed.py). Errors and parsing
            # into ChatCompletion are the same.
            resp = await _within(self._client_for(replica).post(
                "/chat/completions", cast_to=ChatCompletion, body=body), self.options.timeout_s)
        except openai.APIStatusError as exc:
            status = exc.status_code
            reason = retry_reason(status)
            message = _short(self._redact(exc.message.removeprefix(f"Error code: {status} - ")))
            if reason is None:
                error = TargetError(f"{replica.url} answered HTTP {status} for model {self.model!r} "
                                    f"(a client error, not retried): {message}",
                                    url=replica.url, status=status)
            else:
                error = _Failed(reason, message, status, retry_after_s(exc.response.headers))
        except (asyncio.TimeoutError, openai.APITimeoutError):
            error = _Failed("timeout", "")
        except openai.APIConnectionError as exc:
            error = _Failed("connection", _short(self._redact(str(exc.__cause__ or exc))))
        except openai.OpenAIError as exc:
            error = TargetError(f"{replica.url}: {_short(self._redact(str(exc)))}", url=replica.url)
        except ValueError as exc:  # the SDK lets a malformed JSON body through as JSONDecodeError
            error = _Failed("malformed", f"a body that is not valid JSON: {_short(str(exc))}")
        else:
            if getattr(resp, "choices", None):
                return resp
            error = _Failed("malformed", "a chat completion without choices")
        raise error

    def _delay(self, attempt: int, failed_on: Replica, failed: _Failed) -> float:
        """Seconds before retry number `attempt`: none when another replica can take it at
        once; else the server's Retry-After (capped), else full-jitter backoff."""
        if self._pool.can_fail_over(failed_on):
            return 0.0
        if failed.retry_after is not None:
            return min(failed.retry_after, self.options.retry_after_cap_s)
        return backoff_delay(attempt, self.options.backoff_base_s, self.options.backoff_cap_s,
                             self._rng)

    def _give_up(self, url: str, last: _Failed, retries: int) -> TargetError:
        """The error of a call whose every attempt failed (the wording names URL and cause)."""
        if last.status is not None:
            text = (f"{url} answered HTTP {last.status} for model {self.model!r} after {retries} "
                    f"retries: {last.detail}")
        elif last.reason == "timeout":
            text = f"{url} did not answer within {self.options.timeout_s:g} s (after {retries} retries)"
        elif last.reason == "connection":
            text = f"could not reach {url} after {retries} retries: {last.detail}"
        else:
            text = f"{url} answered with {last.detail} (after {retries} retries)"
        return TargetError(text, url=url, status=last.status)

    def _redact(self, text: str) -> str:
        """`text` without the API key (some servers echo the key they were sent)."""
        key = os.environ.get(self.options.api_key_env, "")
        return text.replace(key, "***") if len(key) >= 4 else text

    async def aclose(self) -> None:
        for r in self._pool.replicas:
            if r.client is not None:
                client, r.client = r.client, None
                await client.close()


def _reply(resp: Any, started: float) -> Reply:
    msg = resp.choices[0].message
    text = msg.content if msg.content is not None else (getattr(msg, "refusal", None) or "")
    usage = getattr(resp, "usage", None)
    return Reply(text=text, prompt_tokens=getattr(usage, "prompt_tokens", None),
                 completion_tokens=getattr(usage, "completion_tokens", None),
                 latency_s=time.perf_counter() - started)


def _check_options(options: TargetOptions) -> None:
    """SpecError naming the first retry/replica setting that cannot work."""
    for name in ("timeout_s", "backoff_base_s", "backoff_cap_s", "retry_after_cap_s",
                 "max_outage_s", "cooldown_base_s", "cooldown_cap_s"):
        value = getattr(options, name)
        if not value >= 0 or (name == "timeout_s" and value == 0):  # NaN fails too
            raise SpecError(f"TargetOptions.{name} must be a number of seconds "
                            f"{'> 0' if name == 'timeout_s' else '>= 0'}, got {value!r}")
    if options.retries < 0 or options.replica_concurrency < 0:
        raise SpecError("TargetOptions.retries and replica_concurrency must be >= 0, got "
                        f"{options.retries!r} and {options.replica_concurrency!r}")


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _replica_file(rest: str) -> tuple[str, str]:
    """(URLs joined by '|', model) from `file:PATH:MODEL`; PATH holds no ':'."""
    path, sep, model = rest[len("file:"):].partition(":")
    if not path or not sep or not model.strip():
        raise SpecError(f"cannot parse target spec 'openai+{rest}': expected "
                        "openai+file:PATH:MODEL, e.g. openai+file:replicas.txt:Qwen/Qwen3-VL-8B-Instruct")
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise SpecError(f"target spec 'openai+{rest}': cannot read the replica file {path}: "
                        f"{exc.strerror or exc}") from None
    urls = []
    for n, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if not _URL_ONLY.match(line):
            raise SpecError(f"replica file {path}, line {n}: {line!r} is not a base URL; "
                            "expected one http(s)://HOST[:PORT]/PATH a line, e.g. "
                            "http://10.0.0.1:8000/v1")
        urls.append(line.rstrip("/"))
    if not urls:
        raise SpecError(f"replica file {path} lists no URL: expected one http(s)://HOST[:PORT]/PATH "
                        "a line")
    return _unique(urls, f"replica file {path}"), model.strip()


def _unique(urls: list[str], where: str) -> str:
    seen = set()
    for u in urls:
        if u in seen:
            raise SpecError(f"{where}: replica {u} is listed twice; list each replica once")
        seen.add(u)
    return "|".join(urls)


def parse_rest(rest: str) -> tuple[str | None, str]:
    """(base_url or None, model) from the part of the spec after `openai`.

    base_url holds several replica URLs joined by '|' for `+URL1|URL2:MODEL` and `+file:..`.
    """
    if rest.startswith("+file:"):
        return _replica_file(rest[1:])
    if rest.startswith("+"):
        m = _URLS_MODEL.match(rest[1:])
        if not m:
            raise SpecError(f"cannot parse target spec 'openai{rest}': expected "
                            "openai+http(s)://HOST[:PORT]/PATH:MODEL, e.g. "
                            "openai+http://127.0.0.1:8000/v1:Qwen/Qwen3-VL-8B-Instruct, or replicas "
                            "joined by '|': openai+http://10.0.0.1:8000/v1|http://10.0.0.2:8000/v1:MODEL")
        urls = [u.rstrip("/") for u in m.group("urls").split("|")]
        return _unique(urls, f"target spec 'openai{rest}'"), m.group("model")
    if not rest.strip():
        raise SpecError("cannot parse target spec 'openai:': the model name is missing, "
                        "e.g. openai:gpt-4o")
    return os.environ.get("OPENAI_BASE_URL") or None, rest.strip()


def from_spec(rest: str, options: TargetOptions) -> OpenAICompatTarget:
    """Factory for `openai:MODEL`, `openai+URL:MODEL`, `openai+URL1|URL2:MODEL` and
    `openai+file:PATH:MODEL`."""
    base_url, model = parse_rest(rest)
    return OpenAICompatTarget(model, base_url, options)
