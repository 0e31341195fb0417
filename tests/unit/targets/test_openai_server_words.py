"""What a server said, kept: error bodies in every common shape, a rejected model name as a
configuration error listing the served models, and the generation settings actually sent."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pytest_mtmcs.chat import GenParams, user
from pytest_mtmcs.errors import ServerRefused, TargetError, error_kind
from pytest_mtmcs.targets import TargetOptions, make_target
from pytest_mtmcs.targets.openai_http import error_text, model_ids, rejects_model
from pytest_mtmcs.testing import FaultPlan, MockOpenAIServer
from pytest_mtmcs.textsafety import forget_secrets, register_secret

PINNED = b'{"detail": "Server is pinned to \'/models/smollm2\'; requested \'smollm2\'."}'


@pytest.mark.parametrize(("body", "ctype", "words"), [
    (b'{"error": {"message": "bad thing", "type": "invalid_request_error"}}', "", "bad thing"),  # OpenAI, llama.cpp
    (b'{"error": "model \'x\' not found, try pulling it first"}', "", "model 'x' not found, try pulling it first"),  # Ollama, TGI
    (b'{"object": "error", "message": "The model `x` does not exist.", "type": "NotFoundError", "code": 404}',
     "application/json", "The model `x` does not exist."),  # vLLM, SGLang
    (PINNED, "application/json", "Server is pinned to '/models/smollm2'; requested 'smollm2'."),  # transformers serve
    (b'{"detail": [{"type": "json_invalid", "loc": ["body", 0], "msg": "JSON decode error"}]}', "",
     "body.0: JSON decode error"),  # FastAPI validation errors
    (b'{"detail": [{"loc": ["body", "max_tokens"], "msg": "must be > 0"}, {"msg": "x"}]}', "",
     "body.max_tokens: must be > 0; x"),
    (b'{"error": {"detail": "nested detail"}}', "", "nested detail"),
    (b"Internal Server Error", "text/plain", "Internal Server Error"),  # plain text
    (b"", "", "(an empty body)"),
    (b'{"status": "weird"}', "", '{"status": "weird"}'),  # no known field: the body's start
])
def test_error_bodies_in_every_common_shape(body: bytes, ctype: str, words: str) -> None:
    assert error_text(body, ctype) == words


def test_server_words_are_neutralised_and_redacted() -> None:
    register_secret("sk-words-Zq81")
    try:
        text = error_text(b'{"detail": "\\u001b[31mkey sk-words-Zq81 rejected"}', "")
    finally:
        forget_secrets()
    assert "\x1b" not in text and "sk-words-Zq81" not in text and "rejected" in text


@pytest.mark.parametrize(("status", "message", "rejected"), [
    (400, "Server is pinned to '/models/smollm2'; requested 'smollm2'.", True),
    (404, "The model `x` does not exist.", True),
    (400, "model 'x' not found, try pulling it first", True),
    (422, "Unknown model: x", True),
    (400, "max_tokens must be at least 1", False),
    (400, "This model's maximum context length is 8192 tokens", False),
    (422, "body.0: JSON decode error", False),
    (500, "model not found", False),  # a 5xx is the server's trouble, retried
])
def test_a_rejected_model_name_is_told_apart(status: int, message: str, rejected: bool) -> None:
    assert rejects_model(status, message, "x") is rejected


def test_the_served_models_are_read_from_either_listing() -> None:
    assert model_ids(b'{"object": "list", "data": [{"id": "a/b"}, {"id": "c"}]}') == ["a/b", "c"]
    assert model_ids(b'{"models": [{"name": "llama3.2-vision:11b"}]}') == ["llama3.2-vision:11b"]
    assert model_ids(b"Internal Server Error") == [] and model_ids(b'{"data": 3}') == []


def _ask(spec: str, n: int = 1, params: GenParams | None = None) -> tuple[list[Any], Any]:
    target = make_target(spec, TargetOptions(retries=1, backoff_base_s=0))

    async def go() -> list[Any]:
        out: list[Any] = []
        try:
            for i in range(n):
                try:
                    out.append(await target.respond((user(f"q{i}"),), params or GenParams()))
                except TargetError as exc:
                    out.append(exc)
        finally:
            await target.aclose()
        return out

    return asyncio.run(go()), target


def test_a_400_rejecting_the_model_is_a_configuration_error_naming_the_served_models() -> None:
    plan = FaultPlan.always("http_400", message="The model `{model}` does not exist.")
    with MockOpenAIServer(faults=plan, model_name="acme/vlm-7b") as srv:
        (first, second), _ = _ask(f"openai+{srv.base_url}:acme/vlm", n=2)
        asked = len(srv.calls)
    assert isinstance(first, ServerRefused) and error_kind(first) == "config"  # exit 4
    assert "The model `acme/vlm` does not exist." in str(first)
    assert "the server serves 'acme/vlm-7b'" in str(first)
    assert second is first and asked == 1  # refused once: no more requests


def test_a_400_about_the_request_stays_a_call_error() -> None:
    plan = FaultPlan.always("http_400", message="max_tokens must be at least 1")
    with MockOpenAIServer(faults=plan) as srv:
        (first, again), _ = _ask(f"openai+{srv.base_url}:m", n=2)
        asked = len(srv.calls)
    assert isinstance(again, TargetError) and again is not first  # asked again: not a refusal
    assert not isinstance(first, ServerRefused) and error_kind(first) == "target"
    assert "max_tokens must be at least 1" in str(first) and asked == 2


def test_a_404_lists_the_served_models_too() -> None:
    with MockOpenAIServer(faults=FaultPlan.always("http_404"), model_name="served-one") as srv:
        (first,), _ = _ask(f"openai+{srv.base_url}:other")
    assert isinstance(first, ServerRefused) and "the server serves 'served-one'" in str(first)


def test_the_generation_settings_sent_are_counted() -> None:
    with MockOpenAIServer() as srv:
        _, target = _ask(f"openai+{srv.base_url}:m", n=3,
                         params=GenParams(temperature=0.3, max_tokens=77, seed=5))
        bodies = [c.body for c in srv.calls]
    assert target.stats["sent"] == {"max_tokens=77 seed=5 temperature=0.3": 3}
    assert all((b["temperature"], b["max_tokens"], b["seed"]) == (0.3, 77, 5) for b in bodies)
    _, zero = _ask_zero()
    assert zero.stats["sent"] == {"max_tokens=8 temperature=0": 1}


def _ask_zero() -> tuple[list[Any], Any]:
    with MockOpenAIServer() as srv:
        return _ask(f"openai+{srv.base_url}:m", params=GenParams(temperature=0, max_tokens=8))
