"""OpenAI-compatible chat-completions target (OpenAI, vLLM, TGI, Ollama, LM Studio, ...).

Specs (parsed in `openai_spec.py`):
    openai:MODEL                          base URL from $OPENAI_BASE_URL, else OpenAI's
    openai+http://host:port/v1:MODEL      any compatible server; MODEL may contain ':' and '/'
    openai+http://[::1]:8000/v1:MODEL     an IPv6 literal in brackets
    openai+URL1|URL2|URL3:MODEL           replicas of one model (quote it in a shell: `|`)
    openai+file:replicas.txt:MODEL        replicas listed in a file, one URL a line (`#` comments)
    ...:MODEL?images=no                   the model is text-only (captions or skips, never images)
    ...:MODEL?images=probe                ask the server once, before the run, if it sees images
    ...:MODEL?adaptive=no                 no fewer calls in flight for a slow server (`adaptive.py`)

Images travel as base64 `data:` URIs in `image_url` parts; the history keeps the model's own
replies as `assistant` messages. The API key is read, when the target is built, from the
environment variable named by `--mtmcs-api-key-env` (default OPENAI_API_KEY) and registered with
`textsafety`, so no fragment of it survives in any text the run keeps or shows. A variable
named by `--mtmcs-api-key-env` that is not set is a SpecError (exit 4); so is an unset key for
OpenAI's own API. Self-hosted servers without a key are sent `EMPTY`.

The HTTP exchange is ours (httpx, no SDK retries, so nothing is counted twice), and every body
is read within a bound (`openai_http.py`): a reply longer than `max_reply_chars` is cut and
the cut recorded on the Reply. Timeouts (`timeout_s` bounds each whole attempt, body included),
connection errors, 429 (Retry-After honoured up to `retry_after_cap_s`), 5xx and 200 bodies
that are not a usable chat completion (HTML, not JSON, no choices, null content) are retried up
to `retries` times with full-jitter backoff. 401, 403 and 404 mean the run's key or model is
wrong: `ServerRefused` (exit 4) at once, and every later call of the run fails with it without
a request; so does a 400 or 422 whose words reject the model name (`transformers serve`: "Server
is pinned to '...'"), and the message lists the server's models (GET /models) when it can. Any
other 4xx fails at once. The server's words are read from every common error shape
(`openai_http.error_text`). A replica that fails sits out a cool-down while its retry goes to
another (see `replicas.py`). When no call has succeeded for longer than `max_outage_s`, calls
raise OutageError at once (see `resilience.py`). Counters are in `target.stats`.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from typing import Any

from pytest_mtmcs.chat import Conversation, GenParams, Reply
from pytest_mtmcs.errors import OutageError, ServerRefused, SpecError, TargetError
from pytest_mtmcs.targets.base import Target, TargetOptions
from pytest_mtmcs.targets.openai_http import (
    ERROR_BODY_BYTES,
    BadBody,
    Parsed,
    body_limit,
    error_text,
    parse_completion,
    quote,
    read_bounded,
    rejects_model,
    served_models,
    to_openai_messages,
    within,
)
from pytest_mtmcs.targets.openai_images import ImageProbe, probe_images
from pytest_mtmcs.targets.openai_spec import check_options, parse_rest, read_key, split_options
from pytest_mtmcs.targets.replicas import Replica, ReplicaPool
from pytest_mtmcs.targets.resilience import (
    CallStats,
    OutageCircuit,
    backoff_delay,
    retry_after_s,
    retry_reason,
    sent_settings,
)

__all__ = ["OPENAI_URL", "OpenAICompatTarget", "from_spec", "parse_rest", "to_openai_messages"]

OPENAI_URL = "https://api.openai.com/v1"


class _Failed(Exception):
    """One attempt failed retryably: `reason` (stats key), text for the final message."""

    def __init__(self, reason: str, detail: str, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.reason, self.detail, self.status, self.retry_after = reason, detail, status, retry_after


class OpenAICompatTarget(Target):
    """A model behind one or more chat-completions endpoints.

    `base_url`: None (OpenAI's API), one URL, or several replica URLs of the same model joined
    by '|'. Counters: `stats`. Raises TargetError when a call fails for good (naming the URL,
    the status and the retries made), ServerRefused (a TargetError of kind `config`) when the
    server rejects the key or the model, OutageError (a TargetError) once the server has
    failed continuously for longer than `options.max_outage_s`. SpecError at construction for
    bad options or a needed key that is not set.
    """

    def __init__(self, model: str, base_url: str | None, options: TargetOptions, *,
                 clock: Callable[[], float] = time.monotonic, images: str = "yes",
                 adaptive: bool = True) -> None:
        """`clock`: the monotonic clock of the outage circuit and the replicas' cool-downs
        (tests inject one). `images`: `yes` (send them), `no` (the model is text-only) or
        `probe` (ask the server, once, before the first image is needed; `openai_images.py`)."""
        check_options(options)
        if images not in ("yes", "no", "probe"):
            raise SpecError(f"images={images!r}: expected yes, no or probe")
        self.images = images  # yes, no (text-only) or probe
        self.probe: ImageProbe | None = None  # the image probe's verdict once it ran
        self.model = model
        self.base_url = base_url
        self.options = options
        self._key = read_key(options, base_url)
        self.replicas: tuple[str, ...] = tuple(base_url.split("|")) if base_url else (OPENAI_URL,)
        """The replica URLs (one for a plain spec)."""
        self._pool = ReplicaPool(self.replicas, per_replica_limit=options.replica_concurrency,
                                 cooldown_base_s=options.cooldown_base_s,
                                 cooldown_cap_s=options.cooldown_cap_s, clock=clock,
                                 adaptive=adaptive)
        self._circuit = OutageCircuit(options.max_outage_s, clock=clock)
        self._stats = CallStats()
        self._rng = random.Random()
        self._refused: ServerRefused | None = None

    @property
    def supports_images(self) -> bool:
        """False when the spec declares the model text-only (`?images=no`) or the image probe
        (`?images=probe`, run here on first use: two one-token requests) found the server
        rejecting or dropping images; True otherwise (an inconclusive probe included)."""
        if self.images == "no":
            return False
        if self.images == "probe":
            return self.image_probe().sees_images is not False
        return True

    @supports_images.setter
    def supports_images(self, value: bool) -> None:
        self.images, self.probe = ("yes" if value else "no"), None

    @property
    def text_only_reason(self) -> str | None:
        """Why this target reads no images (for skip reasons), or None when it reads them."""
        if self.images == "no":
            return f"{self.describe()} is declared text-only (?images=no)"
        if self.images == "probe" and self.probe is not None and self.probe.sees_images is False:
            return f"the server at {self.replicas[0]} {self.probe.detail}"
        return None

    def image_probe(self) -> ImageProbe:
        """The image probe's verdict, asking the (first replica's) server on first use."""
        if self.probe is None:
            headers = {"Authorization": f"Bearer {self._key}", "User-Agent": "pytest-mtmcs",
                       "Accept-Encoding": "identity"}
            self.probe = probe_images(self.replicas[0], self.model, headers, self._limit_name(),
                                      self.options.timeout_s)
        return self.probe

    def _blind(self) -> bool:
        """Known text-only (without probing)."""
        return self.images == "no" or (self.probe is not None and self.probe.sees_images is False)

    @property
    def url(self) -> str:
        """The endpoint's base URL (replicas joined by '|'), for messages."""
        return self.base_url or OPENAI_URL

    @property
    def stats(self) -> dict[str, Any]:
        """A JSON-ready snapshot of the counters: calls, ok, failed, attempts, retries,
        retries_by_reason (e.g. {"http_503": 2, "timeout": 1}), failures_by_reason,
        outage_errors, cut_replies, sent (generation settings as sent -> calls), replicas
        (url -> attempts, failures, cooldowns, max_in_flight), images (the mode, and the
        probe's finding) and lowered (when and why the calls in flight were, if they were)."""
        images = {"mode": self.images}
        if self.probe is not None:
            images["probe"] = self.probe.detail
        lowered = {"lowered": text} if (text := self._pool.lowered()) else {}
        return {**self._stats.as_dict(), "replicas": self._pool.as_dict(), "images": images, **lowered}

    def _client_for(self, r: Replica) -> Any:
        if r.client is None:
            import httpx

            # No retries below ours (counted, jittered, failing over replicas); no redirects
            # followed (a redirect means the base URL is wrong, and would carry the key away).
            r.client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.options.timeout_s), follow_redirects=False,
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=256),
                headers={"Authorization": f"Bearer {self._key}", "User-Agent": "pytest-mtmcs",
                         "Accept-Encoding": "identity"})
        return r.client

    def client(self) -> Any:
        """The HTTP client of the first replica (httpx.AsyncClient), created on first use
        (inside the running loop)."""
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
        if any(m.images for m in conversation):
            if self.images == "probe" and self.probe is None:
                await asyncio.to_thread(self.image_probe)
            if self._blind():
                # Never let a dialogue be scored as if the model had seen an image it cannot.
                raise SpecError(f"{self.text_only_reason}, but a request carried an image: pass "
                                "--mtmcs-caption-for-text to send the caption instead")
        body: dict[str, Any] = {"model": self.model, "messages": to_openai_messages(conversation),
                                "temperature": params.temperature,
                                self._limit_name(): params.max_tokens}
        if params.seed is not None:
            body["seed"] = params.seed
        data = json.dumps(body).encode()
        stats, pool, circuit, opts = self._stats, self._pool, self._circuit, self.options
        stats.calls += 1
        stats.sent[sent_settings(body)] += 1
        last: _Failed | None = None
        replica: Replica | None = None
        try:
            for attempt in range(opts.retries + 1):
                if self._refused is not None:  # the key or model was refused: no more requests
                    raise self._refused
                circuit.check(self.url)
                replica = pool.take(retry=last is not None)
                while replica is None:  # every replica cooling down or at its limit
                    replica = await pool.wait_take(circuit.time_left(), retry=last is not None)
                    if replica is None:
                        circuit.check(self.url)  # other calls' failures may have opened it
                if last is not None:
                    stats.retries[last.reason] += 1
                stats.attempts += 1
                sent_at = time.perf_counter()
                try:
                    parsed = await self._attempt(replica, data)
                except _Failed as failed:
                    pool.release(replica, ok=False, retry_after_s=failed.retry_after,
                                 timed_out=failed.reason == "timeout")
                    circuit.failure()
                    stats.failures[failed.reason] += 1
                    last = failed
                except BaseException:  # a non-retryable answer, or the call was cancelled
                    pool.release(replica, ok=None)
                    raise
                else:
                    pool.release(replica, ok=True, latency_s=time.perf_counter() - sent_at,
                                 size=params.max_tokens, tokens=parsed.completion_tokens)
                    circuit.success()
                    stats.ok += 1
                    stats.cut += parsed.cut_at is not None
                    return Reply(text=parsed.text, prompt_tokens=parsed.prompt_tokens,
                                 completion_tokens=parsed.completion_tokens,
                                 latency_s=time.perf_counter() - started, cut_at=parsed.cut_at)
                if attempt < opts.retries:
                    await asyncio.sleep(min(self._delay(attempt, replica, last), circuit.time_left()))
        except OutageError:
            stats.outage_errors += 1
            stats.failed += 1
            raise
        except ServerRefused as refused:
            stats.failed += 1
            self._refused = refused
            raise
        except BaseException:
            stats.failed += 1
            raise
        stats.failed += 1
        assert last is not None and replica is not None
        raise self._give_up(replica.url, last, opts.retries)

    async def _attempt(self, replica: Replica, data: bytes) -> Parsed:
        """One HTTP request, its body read within bounds; raises _Failed (retryable),
        ServerRefused or TargetError (not retryable)."""
        import httpx

        error: Exception
        try:
            status, ctype, retry_after, body, whole = await within(
                self._exchange(replica, data), self.options.timeout_s)
        except (asyncio.TimeoutError, httpx.TimeoutException):
            error = _Failed("timeout", "")
        except httpx.HTTPError as exc:  # refused, reset, dropped, a broken answer
            error = _Failed("connection", quote(f"{type(exc).__name__}: {exc}"))
        except BadBody as bad:  # a body in an encoding that cannot be read within bounds
            error = _Failed(bad.reason, bad.detail)
        else:
            if 200 <= status < 300:
                try:
                    return parse_completion(body, ctype, self.options.max_reply_chars, whole=whole)
                except BadBody as bad:
                    error = _Failed(bad.reason, bad.detail)
            else:
                message = error_text(body, ctype)
                models = None
                if status == 404 or rejects_model(status, message, self.model):
                    models = await self._served_models(replica)
                error = self._status_error(replica.url, status, message, retry_after, models)
        raise error

    async def _served_models(self, replica: Replica) -> str:
        """What GET <url>/models says the server serves, as a phrase for an error message."""
        return await served_models(self._client_for(replica), replica.url,
                                   min(10.0, self.options.timeout_s))

    async def _exchange(self, replica: Replica, data: bytes) -> tuple[int, str, float | None, bytes,
                                                                      bool]:
        """(status, content type, Retry-After, body start, whether the body is whole): the
        body is read up to the bound of its kind, never further."""
        client = self._client_for(replica)
        async with client.stream("POST", f"{replica.url}/chat/completions", content=data,
                                 headers={"Content-Type": "application/json"}) as resp:
            ok = 200 <= resp.status_code < 300
            limit = body_limit(self.options.max_reply_chars) if ok else ERROR_BODY_BYTES
            # Raw bytes, decoded here within the bound; leaving early drops the connection.
            body, whole = await read_bounded(resp.aiter_raw(), resp.headers.get(
                "content-encoding", ""), limit)
            return (resp.status_code, resp.headers.get("content-type", ""),
                    retry_after_s(resp.headers), body, whole)

    def _status_error(self, url: str, status: int, message: str, retry_after: float | None,
                      models: str | None = None) -> Exception:
        """The error of a non-2xx answer: _Failed when worth a retry, else ServerRefused or
        TargetError naming the URL, the status and what the server said; `models`: what the
        server's GET /models said, for a rejected model name."""
        reason = retry_reason(status)
        if reason is not None:
            return _Failed(reason, message, status, retry_after)
        env = self.options.api_key_env
        said = f"HTTP {status} for model {self.model!r}"
        if status in (401, 403):
            sent = (f"the key in ${env}" if self._key != "EMPTY" else
                    f"no API key (${env} is not set)")
            return ServerRefused(
                f"{url} refused {sent}: {said}: {message}. Check the key in ${env} (or name the "
                "variable that holds it with --mtmcs-api-key-env); retrying will not help",
                url=url, status=status)
        if status == 404 or models is not None:
            listed = f" ({models})" if models else ""
            return ServerRefused(
                f"{url} answered {said}: {message}{listed}. Check the model name and the base URL "
                "in --mtmcs-target (e.g. openai+http://127.0.0.1:8000/v1:MODEL; GET <url>/models "
                "lists the models a server serves)", url=url, status=status)
        if 300 <= status < 400:
            return ServerRefused(f"{url} answered {said} (a redirect, not followed): use the URL it "
                                 "redirects to as the base in --mtmcs-target", url=url, status=status)
        return TargetError(f"{url} answered {said} (a client error, not retried): {message}",
                           url=url, status=status)

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

    async def aclose(self) -> None:
        for r in self._pool.replicas:
            if r.client is not None:
                client, r.client = r.client, None
                await client.aclose()


def from_spec(rest: str, options: TargetOptions) -> OpenAICompatTarget:
    """Factory for `openai:MODEL`, `openai+URL:MODEL`, `openai+URL1|URL2:MODEL` and
    `openai+file:PATH:MODEL`, each optionally ending in `?images=yes|no|probe&adaptive=yes|no`."""
    rest, images, adaptive = split_options(rest)
    base_url, model = parse_rest(rest)
    return OpenAICompatTarget(model, base_url, options, images=images, adaptive=adaptive)
