"""What a chat-completions answer means (pure functions of its bytes), and a reply read within
bounds from a real mock server that sends far more than the cap."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from pytest_mtmcs.chat import GenParams, user
from pytest_mtmcs.targets import TargetOptions
from pytest_mtmcs.targets.openai_compat import OpenAICompatTarget
from pytest_mtmcs.targets.openai_http import (
    BadBody,
    body_limit,
    error_text,
    parse_completion,
)
from pytest_mtmcs.testing import FaultPlan, MockOpenAIServer
from pytest_mtmcs.textsafety import forget_secrets, register_secret

KEY = "sk-unit-http-Qv7Rk2Lm9Tx"


def completion(content: Any, **message: Any) -> bytes:
    return json.dumps({"choices": [{"index": 0, "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": content, **message}}],
                       "usage": {"prompt_tokens": 3, "completion_tokens": 2}}).encode()


@pytest.fixture
def secret() -> Any:
    register_secret(KEY)
    yield KEY
    forget_secrets()


def test_a_good_completion() -> None:
    parsed = parse_completion(completion("No."), "application/json", 100, whole=True)
    assert (parsed.text, parsed.prompt_tokens, parsed.completion_tokens, parsed.cut_at) == \
        ("No.", 3, 2, None)


def test_content_parts_and_a_refusal_field_are_text() -> None:
    parts = completion([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}])
    assert parse_completion(parts, "", 100, whole=True).text == "ab"
    refused = completion(None, refusal="I can't help with that.")
    assert parse_completion(refused, "", 100, whole=True).text == "I can't help with that."


@pytest.mark.parametrize(("body", "ctype", "reason", "words"), [
    (b"<!doctype html><title>Login</title>", "text/html", "html", "an HTML page titled 'Login'"),
    (b'{"choices": [{"message": {"content": "x"}}]}', "text/html", "html", "HTML page"),
    (b"  <html>", "application/json", "html", "not a chat completion"),
    (completion(None), "", "null_content", "message content is null"),
    (completion(None, refusal=""), "", "null_content", "no answer to score"),
    (b'{"choices": []}', "", "malformed", "without choices"),
    (b'{"object": "list"}', "", "malformed", "without choices"),
    (b'[1, 2]', "", "malformed", "without choices"),
    (b'{"choices": [{"message": "hi"}]}', "", "malformed", "has no message"),
    (completion(42), "", "malformed", "of type int"),
    (b'{"error": {"message": "overloaded"}}', "", "malformed", "an error inside a 200 answer"),
    (b'{"choices": [{"mess', "", "malformed", "not valid JSON"),
    (b'{"choices": "\xff\xfe"}', "", "malformed", "not UTF-8 text (byte 13)"),
    (b"", "", "malformed", "not valid JSON"),
])
def test_bodies_that_are_not_replies(body: bytes, ctype: str, reason: str, words: str) -> None:
    with pytest.raises(BadBody) as info:
        parse_completion(body, ctype, 100, whole=True)
    assert info.value.reason == reason and words in info.value.detail, info.value.detail


def test_a_long_reply_is_cut_and_the_cut_recorded() -> None:
    parsed = parse_completion(completion("x" * 500), "", 100, whole=True)
    assert parsed.text == "x" * 100 and parsed.cut_at == 100
    assert parse_completion(completion("x" * 100), "", 100, whole=True).cut_at is None


@pytest.mark.parametrize("cut", [40, 41, 42, 43, 44, 45, 46, 47])
def test_the_start_of_an_over_long_body_is_salvaged(cut: int) -> None:
    text = 'ab\\"c\u00e9\n\u4e2d' * 20  # escapes, accents and CJK: a cut may fall inside any
    body = completion(text)
    start = body[:body.index(b'"content"') + cut]
    parsed = parse_completion(start, "", 10_000, whole=False)
    assert text.startswith(parsed.text) and parsed.cut_at == 10_000 and len(parsed.text) >= 5


def test_an_over_long_body_that_is_no_completion_is_an_error() -> None:
    with pytest.raises(BadBody, match="that is not a chat completion"):
        parse_completion(b"A" * 1000, "", 10, whole=False)
    with pytest.raises(BadBody) as info:
        parse_completion(b"<html>" + b"A" * 1000, "", 10, whole=False)
    assert info.value.reason == "html"


def test_server_text_is_redacted_and_inert(secret: str) -> None:
    echo = f"key {secret[:-1].upper()} \x1b]0;title\x07 done"
    parsed = parse_completion(completion(echo), "", 1000, whole=True)
    assert parsed.text == "key [redacted] \x1b]0;title\x07 done"  # the reply itself stays verbatim
    said = error_text(json.dumps({"error": {"message": echo}}).encode(), "application/json")
    assert said == "key [redacted] \\x1b]0;title\\x07 done"
    assert error_text(b"\xff plain text", "text/plain") == "\ufffd plain text"
    assert error_text(b"", "") == "(an empty body)"
    assert error_text(b'{"detail": "Not Found"}', "") == "Not Found"


def _ask_once(srv: MockOpenAIServer, cap: int) -> tuple[OpenAICompatTarget, Any]:
    """One call, without retries, to a target that keeps `cap` characters of a reply."""
    t = OpenAICompatTarget("m", srv.base_url, TargetOptions(max_reply_chars=cap, retries=0))

    async def go() -> Any:
        try:
            return await t.respond((user("q"),), GenParams(temperature=0.0, max_tokens=8))
        finally:
            await t.aclose()
    return t, asyncio.run(go())


def test_the_body_is_read_only_up_to_its_bound() -> None:
    """A server sending 20 MB for a cap of 1,000 characters: the reply is cut at the cap, and
    the client hung up long before the body's end (the server could not finish writing it)."""
    cap = 1000
    plan = FaultPlan.always("oversized", oversized_bytes=20 * 1024 * 1024)
    with MockOpenAIServer(faults=plan) as srv:
        t, reply = _ask_once(srv, cap)
        srv.wait_for_calls(1)
        srv.stop()  # every handler done: the call's outcome is final
        [call] = srv.calls
    assert reply.cut_at == cap and reply.text == ("A" * 63 + " ") * 15 + "A" * 40
    assert t.stats["cut_replies"] == 1 and t.stats["ok"] == 1
    assert not call.completed  # the 20 MB were never all read
    assert body_limit(cap) < 100_000


def test_a_compressed_bomb_is_inflated_only_up_to_the_bound() -> None:
    """20 MB of reply gzip-compressed to a few kB, sent although identity was asked: the reply
    is inflated only up to the bound and cut at the cap, never expanded whole in memory."""
    cap = 1000
    plan = FaultPlan.always("gzip_bomb", oversized_bytes=20 * 1024 * 1024)
    with MockOpenAIServer(faults=plan) as srv:
        _, reply = _ask_once(srv, cap)
        [call] = srv.calls
    assert call.headers["accept-encoding"] == "identity"
    assert reply.cut_at == cap and reply.text.startswith("A" * 63 + " ")


@pytest.mark.parametrize(("encoding", "body", "words"), [
    ("br", b"\x0b\x02\x80hi\x03", "Content-Encoding 'br', which was not asked for"),
    ("gzip", b"not gzip at all", "a gzip body that does not decompress"),
])
def test_bodies_that_cannot_be_read_within_bounds(encoding: str, body: bytes, words: str) -> None:
    from pytest_mtmcs.targets.openai_http import read_bounded

    async def chunks() -> Any:
        yield body

    with pytest.raises(BadBody, match=words):
        asyncio.run(read_bounded(chunks(), encoding, 100))


def test_reading_stops_at_the_bound() -> None:
    from pytest_mtmcs.targets.openai_http import read_bounded

    pulled = []

    async def endless() -> Any:
        while True:
            pulled.append(1)
            yield b"x" * 10

    body, whole = asyncio.run(read_bounded(endless(), "", 95))
    assert (len(body), whole, len(pulled)) == (95, False, 10)
