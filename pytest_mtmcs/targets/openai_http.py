"""One chat-completions exchange over HTTP, read within bounds, and what its answer means.

Nothing a server sends is trusted: the body of a 200 is read up to `body_limit(cap)` bytes and
an error body up to `ERROR_BODY_BYTES`, so a 10 MB (or endless) answer costs a bounded amount
of memory; a reply longer than the cap is cut to `cap` characters and the cut is recorded
(`Parsed.cut_at`), and a body that ran past the bound is salvaged from its start. Every text
taken from a server is redacted (`textsafety.redact`: no fragment of a registered API key
survives) before it is returned; text for messages is neutralised too (`for_terminal`), so an
error body cannot act on a terminal wherever the message is shown.

`parse_completion` raises `BadBody` (the reason it is counted under, and a message detail) for
a 200 that is not a usable chat completion: HTML, not UTF-8, not JSON, no choices, a message
whose content is null (and no refusal). `error_text` reads the message of an error answer in
every common shape; `rejects_model` tells an answer that rejects the model name (a
configuration error) and `model_ids` reads the list of a GET /models (`served_models` asks
for it). `to_openai_messages` is a conversation in the wire format; `within` bounds a whole
attempt in time.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import zlib
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

from pytest_mtmcs.chat import Conversation, ImagePart, data_uri
from pytest_mtmcs.textsafety import for_terminal, redact

__all__ = ["ERROR_BODY_BYTES", "BadBody", "Parsed", "body_limit", "body_message", "error_text",
           "model_ids", "parse_completion", "quote", "read_bounded", "rejects_model", "served_models",
           "to_openai_messages", "within"]

_T = TypeVar("_T")
ERROR_BODY_BYTES = 16 * 1024
"""Most bytes read of an error answer's body (its message is all that is kept)."""
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title", re.IGNORECASE | re.DOTALL)
_CONTENT = re.compile(r'"content"\s*:\s*"')
_STRING = json.JSONDecoder(strict=False)
_PARTIAL_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{0,3})?$")


def body_limit(cap_chars: int) -> int:
    """Bytes read of a 200 body for replies of up to `cap_chars` characters: room for the cap
    in UTF-8 (at most 4 bytes a character) and the JSON around it."""
    return 4 * cap_chars + 16 * 1024


def quote(text: str, limit: int = 300) -> str:
    """Server text as it may appear in a message: redacted, control characters shown as
    escapes, whitespace collapsed, at most `limit` characters."""
    text = " ".join(for_terminal(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class BadBody(Exception):
    """A 200 answer that is not a usable chat completion: `reason` is its counter name
    (`malformed`, `html`, `null_content`), `detail` the message's words."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class Parsed:
    """A usable reply: its text (redacted, at most the cap), token counts, and `cut_at` (the
    cap) when the server's text was longer and was cut."""

    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cut_at: int | None = None


async def read_bounded(chunks: AsyncIterator[bytes], encoding: str, limit: int) -> tuple[bytes, bool]:
    """(the body's first `limit` bytes, whether that is the whole body) from its raw chunks as
    they arrive, decoded from `encoding` (the Content-Encoding: none, gzip or deflate) with the
    output bounded too, so a small compressed body cannot expand past the limit in memory.
    Stops reading as soon as the limit is passed. BadBody for an encoding it cannot read."""
    encoding = encoding.strip().lower()
    inflate = None
    if encoding in ("gzip", "x-gzip", "deflate"):
        inflate = zlib.decompressobj(wbits=47)  # gzip or zlib header, told apart by the header
    elif encoding not in ("", "identity"):
        raise BadBody("malformed", f"a body in Content-Encoding {quote(encoding, 40)!r}, which "
                      "was not asked for (identity was)")
    parts: list[bytes] = []
    size = 0
    async for raw in chunks:
        if inflate is None:
            piece, more = raw, False
        else:
            try:
                piece = inflate.decompress(raw, limit + 1 - size)
            except zlib.error as exc:
                raise BadBody("malformed", f"a {encoding} body that does not decompress ({exc})"
                              ) from None
            more = bool(inflate.unconsumed_tail)  # the output bound was hit
        parts.append(piece)
        size += len(piece)
        if size > limit or more:
            return b"".join(parts)[:limit], False
    return b"".join(parts), True


def _looks_html(body: bytes, content_type: str) -> bool:
    return "html" in content_type.lower() or body.lstrip()[:1] == b"<"


def _html(body: bytes, content_type: str) -> BadBody:
    m = _TITLE.search(body)
    title = quote(m.group(1).decode("utf-8", "replace"), 80) if m else ""
    what = f"an HTML page{f' titled {title!r}' if title else ''}"
    ct = f" (Content-Type {quote(content_type, 60)})" if content_type else ""
    return BadBody("html", f"{what}{ct}, not a chat completion; is the URL the API's base "
                   "(e.g. http://HOST:8000/v1)?")


def _detail_text(detail: Any) -> str | None:
    """A FastAPI-style `detail`: a string, or a list of validation errors ({loc, msg})."""
    if isinstance(detail, str) and detail.strip():
        return detail
    if isinstance(detail, list):
        msgs = []
        for d in detail[:5]:
            if isinstance(d, dict) and isinstance(d.get("msg"), str):
                loc = d.get("loc")
                where = ".".join(str(x) for x in loc) if isinstance(loc, list) else ""
                msgs.append(f"{where}: {d['msg']}" if where else d["msg"])
            elif isinstance(d, str):
                msgs.append(d)
        return "; ".join(msgs) or None
    return None


def body_message(data: Any) -> str | None:
    """The server's own words in a parsed JSON error body, in any of the common shapes:
    `{"error": {"message": ...}}` (OpenAI, llama.cpp), `{"error": "..."}` (TGI, Ollama),
    `{"message": ...}` (vLLM, SGLang), `{"detail": "..."}` or `{"detail": [{loc, msg}]}`
    (FastAPI servers such as `transformers serve`). Unquoted; None when there are none."""
    if not isinstance(data, dict):
        return None
    err = data.get("error")
    if isinstance(err, dict):
        for key in ("message", "detail", "msg"):
            found = err.get(key)
            text = _detail_text(found) if key == "detail" else found
            if isinstance(text, str) and text.strip():
                return text
    if isinstance(err, str) and err.strip():
        return err
    for key in ("message", "detail", "msg"):
        found = data.get(key)
        text = _detail_text(found) if key == "detail" else found
        if isinstance(text, str) and text.strip():
            return text
    return None


def error_text(body: bytes, content_type: str) -> str:
    """The message of an error answer, quoted: the server's words in any common JSON shape
    (`body_message`), else the body's start (plain text); an HTML page is named as one."""
    if _looks_html(body, content_type):
        return _html(body, content_type).detail
    text = body.decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except ValueError:
        return quote(text) or "(an empty body)"
    msg = body_message(data)
    return quote(msg) if msg is not None else quote(text) or "(an empty body)"


_MODEL_WORDS = re.compile(r"\b(pinned|not found|does not exist|doesn't exist|unknown model|not "
                          r"served|not available|not loaded|no such model|invalid model)\b",
                          re.IGNORECASE)


def rejects_model(status: int, message: str, model: str) -> bool:
    """Whether an error answer (400, 404 or 422) rejects the model name itself, not this one
    request: it speaks of the model (or names the one asked for) in words like "not found",
    "does not exist", "pinned", "unknown". A configuration error: no later call can succeed."""
    if status not in (400, 404, 422):
        return False
    low = message.lower()
    names_model = "model" in low or (len(model) > 2 and model.lower() in low)
    return names_model and _MODEL_WORDS.search(message) is not None


def model_ids(body: bytes) -> list[str]:
    """The model ids of a GET /models answer (`{"data": [{"id": ...}]}`, or Ollama's
    `{"models": [{"name": ...}]}`), quoted; [] when it lists none or cannot be read."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return []
    items = data.get("data", data.get("models")) if isinstance(data, dict) else None
    ids = []
    for m in items if isinstance(items, list) else []:
        name = m.get("id", m.get("name")) if isinstance(m, dict) else None
        if isinstance(name, str) and name:
            ids.append(quote(name, 120))
    return ids


def _count(usage: Any, name: str) -> int | None:
    value = usage.get(name) if isinstance(usage, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _cut(text: str, cap: int, cut: bool = False) -> Parsed:
    if len(text) > cap or cut:
        return Parsed(redact(text[:cap]), cut_at=cap)
    return Parsed(redact(text))


def parse_completion(body: bytes, content_type: str, cap: int, *, whole: bool) -> Parsed:
    """The reply in a 200 body. `whole`: False when the body ran past `body_limit(cap)` and
    `body` is only its start (then the reply's text is salvaged and recorded as cut).
    Raises BadBody."""
    if _looks_html(body, content_type):
        raise _html(body, content_type)
    if not whole:
        return _salvage(body, cap)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadBody("malformed", f"a body that is not UTF-8 text (byte {exc.start})") from None
    try:
        data = json.loads(text)
    except ValueError:
        raise BadBody("malformed", f"a body that is not valid JSON: {quote(text, 80)!r}") from None
    if isinstance(data, dict) and isinstance(data.get("error"), (dict, str)):
        raise BadBody("malformed", f"an error inside a 200 answer: {error_text(body, '')}")
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise BadBody("malformed", "a chat completion without choices")
    message = choices[0].get("message")
    if not isinstance(message, dict):
        raise BadBody("malformed", "a chat completion whose first choice has no message")
    content = message.get("content")
    if isinstance(content, list):  # content parts, as some servers send them
        content = "".join(p.get("text", "") for p in content
                          if isinstance(p, dict) and isinstance(p.get("text"), str))
    if content is None:
        refusal = message.get("refusal")
        if isinstance(refusal, str) and refusal.strip():
            content = refusal  # OpenAI's own refusal field: the model declined
        else:
            finish = choices[0].get("finish_reason")
            raise BadBody("null_content", "a chat completion whose message content is null "
                          f"(finish_reason {quote(str(finish), 40)!r}): no answer to score")
    if not isinstance(content, str):
        raise BadBody("malformed", f"a message content of type {type(content).__name__}, not text")
    parsed = _cut(content, cap)
    usage = data.get("usage")
    return Parsed(parsed.text, _count(usage, "prompt_tokens"), _count(usage, "completion_tokens"),
                  parsed.cut_at)


def _salvage(start: bytes, cap: int) -> Parsed:
    """The reply text at the start of an over-long body, cut at `cap` (at most)."""
    text = start.decode("utf-8", "ignore")
    m = _CONTENT.search(text) if text.lstrip().startswith("{") and '"choices"' in text else None
    if m is None:
        raise BadBody("malformed", f"a body of more than {len(start):,} bytes that is not a chat "
                      f"completion: {quote(text, 80)!r}")
    head = text[m.end() - 1:m.end() - 1 + 6 * cap + 2]  # from the opening quote
    try:
        value, _ = _STRING.raw_decode(head)
    except ValueError:  # cut inside the string: close it after the last whole character
        body = _PARTIAL_ESCAPE.sub("", head[1:])
        if (len(body) - len(body.rstrip("\\"))) % 2:
            body = body[:-1]
        try:
            value, _ = _STRING.raw_decode('"' + body + '"')
        except ValueError:
            raise BadBody("malformed", "an over-long reply whose text cannot be read") from None
    return _cut(value, cap, cut=True)


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
    async def within(aw: Awaitable[_T], seconds: float) -> _T:
        """`aw`, cut after `seconds` with TimeoutError (the whole attempt, not one socket read)."""
        async with asyncio.timeout(seconds):
            return await aw
else:  # pragma: no cover - Python 3.10
    async def within(aw: Awaitable[_T], seconds: float) -> _T:
        return await asyncio.wait_for(aw, seconds)

async def served_models(client: Any, url: str, timeout_s: float) -> str:
    """What GET <url>/models says the server at `url` serves, as a phrase for an error message
    (e.g. "the server serves 'a', 'b'"); never raises."""
    import httpx

    async def get() -> tuple[int, bytes]:
        async with client.stream("GET", f"{url}/models") as resp:
            body, _ = await read_bounded(resp.aiter_raw(), resp.headers.get("content-encoding", ""),
                                         ERROR_BODY_BYTES * 4)
            return int(resp.status_code), body

    try:
        status, body = await within(get(), timeout_s)
    except (asyncio.TimeoutError, httpx.HTTPError, BadBody):
        return "GET <url>/models did not answer"
    ids = model_ids(body) if status == 200 else []
    if not ids:
        return f"GET <url>/models lists no model (HTTP {status})"
    more = f" and {len(ids) - 10} more" if len(ids) > 10 else ""
    return "the server serves " + ", ".join(repr(i) for i in ids[:10]) + more
