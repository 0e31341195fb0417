"""Target specs parse with clear errors; the OpenAI wire format."""

from __future__ import annotations

import pytest
from _data import png_bytes

from pytest_mtmcs.chat import ImageRef, assistant, user
from pytest_mtmcs.errors import SpecError
from pytest_mtmcs.targets import make_target, parse_spec
from pytest_mtmcs.targets.openai_compat import parse_rest, to_openai_messages


@pytest.mark.parametrize("spec, scheme, rest", [
    ("openai:gpt-4o", "openai", "gpt-4o"),
    ("openai+http://127.0.0.1:8000/v1:Qwen/Qwen3-VL-8B-Instruct", "openai",
     "+http://127.0.0.1:8000/v1:Qwen/Qwen3-VL-8B-Instruct"),
    ("hf:/models/llava", "hf", "/models/llava"),
    ("smollm2", "smollm2", ""),
    ("baseline:refuse", "baseline", "refuse"),
])
def test_parse_spec(spec: str, scheme: str, rest: str) -> None:
    assert parse_spec(spec) == (scheme, rest)


@pytest.mark.parametrize("rest, url, model", [
    ("+http://127.0.0.1:8000/v1:Qwen/Qwen3-VL-8B-Instruct", "http://127.0.0.1:8000/v1",
     "Qwen/Qwen3-VL-8B-Instruct"),
    ("+http://localhost:11434/v1/:llama3.2-vision:11b", "http://localhost:11434/v1", "llama3.2-vision:11b"),
    ("+https://api.example.test/openai/v1:gpt-5-mini", "https://api.example.test/openai/v1", "gpt-5-mini"),
])
def test_openai_url_and_model(rest: str, url: str, model: str) -> None:
    assert parse_rest(rest) == (url, model)


@pytest.mark.parametrize("spec", ["", "openai", "openai:", "openai+http://x", "nope:x", "baseline:maybe"])
def test_bad_specs(spec: str) -> None:
    with pytest.raises(SpecError):
        make_target(spec)


def test_wire_format_images_and_roles() -> None:
    img = ImageRef(data=png_bytes(1))
    conv = (user("hi"), assistant("hello"), user("and this?", img))
    wire = to_openai_messages(conv)
    assert wire[0] == {"role": "user", "content": "hi"}
    assert wire[1] == {"role": "assistant", "content": "hello"}
    parts = wire[2]["content"]
    assert parts[0]["type"] == "image_url" and parts[0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert parts[1] == {"type": "text", "text": "and this?"}


@pytest.mark.parametrize(("spec", "limit"), [
    ("openai:gpt-5-mini", "max_completion_tokens"),
    ("openai+https://api.openai.com/v1:gpt-4o", "max_completion_tokens"),
    ("openai+http://127.0.0.1:8000/v1:Qwen/Qwen3-VL-8B-Instruct", "max_tokens"),
])
def test_token_limit_parameter_per_server(spec: str, limit: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # OpenAI's own API rejects max_tokens for its reasoning models; other servers read max_tokens.
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    target = make_target(spec)
    assert target._limit_name() == limit  # type: ignore[attr-defined]
