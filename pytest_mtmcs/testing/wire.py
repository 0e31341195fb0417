"""The chat-completions wire format as `MockOpenAIServer` speaks it: pure functions, no I/O.

Bodies are handled as parsed JSON; image parts are skipped, never decoded, so a request
carrying megabytes of base64 costs one `json.loads`.
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Callable
from typing import Any

ReplyFn = Callable[[dict[str, Any]], str]
"""`reply(request_body) -> text` decides what the mock model says."""

MALFORMED_BODY = b'{"id": "chatcmpl-mock", "object": "chat.completion", "choices": [{"index": 0, "mess'
"""The `malformed` fault's 200 body: JSON cut off mid-string."""


def error(message: str, type_: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    """An error body in OpenAI's shape."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


FAULT_ANSWERS: dict[str, tuple[int, dict[str, Any]]] = {
    "http_500": (500, error("Injected fault: internal server error", "server_error", "mock_fault")),
    "http_503": (503, error("Injected fault: server overloaded", "server_error", "mock_fault")),
    "http_429": (429, error("Injected fault: rate limit reached", "requests", "rate_limit_exceeded")),
    "http_400": (400, error("Injected fault: bad request", "invalid_request_error", "mock_fault")),
    "http_401": (401, error("Injected fault: Incorrect API key provided: {key}",
                            "invalid_request_error", "invalid_api_key")),
    "http_403": (403, error("Injected fault: you are not allowed to sample from this model",
                            "invalid_request_error", "model_not_allowed")),
    "http_404": (404, error("Injected fault: The model `{model}` does not exist or you do not have "
                            "access to it.", "invalid_request_error", "model_not_found")),
}
"""Status and body of each HTTP-status fault kind (`{key}`: the bearer token the call presented)."""


HTML_PAGE = (b"<!DOCTYPE html>\n<html><head><title>Sign in - Model Gateway</title></head>"
             b"<body><form action=\"/login\"><input name=\"user\"></form></body></html>\n")
"""The `html` fault's 200 body: a gateway's sign-in page where the API was expected."""


def _completion(content: object, model: str, index: int, finish: str = "stop") -> dict[str, Any]:
    return {"id": f"chatcmpl-mock-{index}", "object": "chat.completion", "created": int(time.time()),
            "model": model, "system_fingerprint": None,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "logprobs": None, "finish_reason": finish}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


def fault_answer(kind: str, body: object, key: str, *, message: str | None, oversized_bytes: int,
                 retry_after_s: float, model: str, index: int) -> tuple[int, bytes, dict[str, str]]:
    """(status, body bytes, extra headers) of an answering fault (not hang, drop, reset, drip).

    `key` is the bearer token the call presented (echoed by http_401, and by `message`'s
    `{key}`); the model asked for fills `{model}`."""
    asked = body.get("model") if isinstance(body, dict) else None
    asked = asked if isinstance(asked, str) else model
    if kind == "malformed":
        return 200, MALFORMED_BODY, {}
    if kind == "html":
        return 200, HTML_PAGE, {"Content-Type": "text/html; charset=utf-8"}
    if kind == "null_content":
        return 200, json.dumps(_completion(None, model, index)).encode(), {}
    if kind == "empty_choices":
        return 200, json.dumps({**_completion("", model, index), "choices": []}).encode(), {}
    if kind in ("oversized", "gzip_bomb"):
        text = ("A" * 63 + " ") * (oversized_bytes // 64) + "A" * (oversized_bytes % 64)
        data = json.dumps(_completion(text, model, index, "length")).encode()
        if kind == "gzip_bomb":
            return 200, gzip.compress(data, 9), {"Content-Encoding": "gzip"}
        return 200, data, {}
    if kind == "non_utf8":
        good = json.dumps(_completion("caf\u00e9 PLACEHOLDER", model, index)).encode()
        return 200, good.replace(b"PLACEHOLDER", b"\xff\xfe\xe9"), {}
    if kind == "text_plain":
        payload = _completion(f"Plain reply to call {index}", model, index)
        return 200, json.dumps(payload).encode(), {"Content-Type": "text/plain"}
    status, err = FAULT_ANSWERS[kind]
    text = message if message is not None else err["error"]["message"]
    text = text.replace("{key}", key).replace("{model}", asked)
    extra = {"Retry-After": f"{retry_after_s:g}"} if kind == "http_429" else {}
    return status, json.dumps({"error": {**err["error"], "message": text}}).encode(), extra


def drip_answer(model: str, index: int) -> bytes:
    """The body of a `drip` answer: a good completion (sent a byte at a time)."""
    return json.dumps(_completion(f"Slow reply to call {index}", model, index)).encode()


def texts(content: object) -> list[str]:
    """The text parts of a message's content (a string or a list of content parts)."""
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [p["text"] for p in content if isinstance(p, dict) and p.get("type") == "text"
                and isinstance(p.get("text"), str)]
    return []


def default_reply(body: dict[str, Any]) -> str:
    """`Mock reply to: <first 40 chars of the last user message's text>`."""
    last = next((m for m in reversed(body["messages"]) if isinstance(m, dict)
                 and m.get("role") == "user"), {})
    return "Mock reply to: " + " ".join(texts(last.get("content")))[:40]


def chat_completion(body: object, reply: ReplyFn, model: str, index: int) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) answering one chat-completions request body.

    400 for a body that is not an object, lacks `messages` or asks to stream; 500 naming the
    exception when `reply` raises or returns a non-string. `max_completion_tokens` (or
    `max_tokens`) cuts the reply to that many words with finish_reason "length". Token counts
    are whitespace-split words of the text parts.
    """
    if not isinstance(body, dict):
        return 400, error("We could not parse the JSON body of your request: expected a JSON object",
                          "invalid_request_error", "invalid_json")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return 400, error("'messages' must be a non-empty list", "invalid_request_error", None, "messages")
    if body.get("stream"):
        return 400, error("stream=true is not supported by MockOpenAIServer", "invalid_request_error",
                          None, "stream")
    try:
        text = reply(body)
        if not isinstance(text, str):
            raise TypeError(f"returned {type(text).__name__}, expected str")
    except Exception as exc:
        return 500, error(f"MockOpenAIServer reply callable raised {type(exc).__name__}: {exc}",
                          "server_error", "mock_reply_error")
    words, finish = text.split(), "stop"
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(limit, int) and 0 < limit < len(words):
        words, finish = words[:limit], "length"
        text = " ".join(words)
    prompt = sum(len(t.split()) for m in messages if isinstance(m, dict) for t in texts(m.get("content")))
    return 200, {
        "id": f"chatcmpl-mock-{index}", "object": "chat.completion", "created": int(time.time()),
        "model": model, "system_fingerprint": None,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "logprobs": None, "finish_reason": finish}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": len(words),
                  "total_tokens": prompt + len(words)},
    }


def model_entry(model: str) -> dict[str, Any]:
    """One entry of GET /v1/models."""
    return {"id": model, "object": "model", "created": 0, "owned_by": "pytest-mtmcs"}
