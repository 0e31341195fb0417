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
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-limit-name")
    target = make_target(spec)
    assert target._limit_name() == limit  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------ URLs read with a URL parser
@pytest.mark.parametrize(("rest", "url", "model"), [
    ("+http://[::1]:8000/v1:m", "http://[::1]:8000/v1", "m"),
    ("+http://[fe80::1]/v1:Qwen/Qwen3:8b", "http://[fe80::1]/v1", "Qwen/Qwen3:8b"),
    ("+http://h:8000:llama3:8b", "http://h:8000", "llama3:8b"),
    ("+http://h:llama3", "http://h", "llama3"),  # ':' then a name: a model, not a port
    ("+http://a:8000/v1|http://b:8001/v1:m", "http://a:8000/v1|http://b:8001/v1", "m"),
    ("+https://h/openai/v1/:gpt-5-mini", "https://h/openai/v1", "gpt-5-mini"),
])
def test_urls_keep_their_ports_and_ipv6_hosts(rest: str, url: str, model: str) -> None:
    assert parse_rest(rest) == (url, model)


@pytest.mark.parametrize(("spec", "match"), [
    ("openai+http://127.0.0.1:8000/v1", "names no model.*openai\\+http://127.0.0.1:8000/v1:Qwen"),
    ("openai+http://127.0.0.1:8000", "names no model"),
    ("openai+http://10.0.0.1:8000/v1|http://10.0.0.2:8001/v1", "names no model"),
    ("openai+http://[::1]:8000/v1", "names no model"),
    ("openai+http://127.0.0.1:99999/v1:m", "not a base URL.*Port out of range"),
    ("openai+http://user:pw@h/v1:m", "holds credentials \\(user:password@, not repeated"),
    ("openai+http://h/v1?x=1:m", "query"),
    ("openai+http://h:0/v1:m", "port 0"),
    ("openai+http://a/v1:m|http://b/v1:m", "holds ':'"),
    ("openai+h:8000/v1:m", "does not start with a URL"),
    ("openai+http://:8000/v1:m", "does not start with a URL"),
])
def test_specs_that_cannot_work_say_why(spec: str, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        make_target(spec)


def test_an_unset_key_variable_is_a_spec_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_mtmcs.targets import TargetOptions

    monkeypatch.delenv("MTMCS_UNSET_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(SpecError, match="--mtmcs-api-key-env names MTMCS_UNSET_KEY, but the "
                                        "environment variable MTMCS_UNSET_KEY is not set"):
        make_target("openai+http://127.0.0.1:8000/v1:m", TargetOptions(api_key_env="MTMCS_UNSET_KEY"))
    monkeypatch.setenv("MTMCS_UNSET_KEY", " ")
    with pytest.raises(SpecError, match="MTMCS_UNSET_KEY is empty"):
        make_target("openai+http://127.0.0.1:8000/v1:m", TargetOptions(api_key_env="MTMCS_UNSET_KEY"))
    with pytest.raises(SpecError, match="OpenAI's API needs a key"):
        make_target("openai:gpt-4o")
    # the default variable, unset, for a self-hosted server: no key needed
    assert make_target("openai+http://127.0.0.1:8000/v1:m").spec == "openai+http://127.0.0.1:8000/v1:m"


def test_a_key_is_read_as_a_header_can_carry_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_mtmcs.targets import TargetOptions
    from pytest_mtmcs.targets.openai_compat import OpenAICompatTarget

    opts = TargetOptions(api_key_env="MTMCS_SPEC_KEY")
    monkeypatch.setenv("MTMCS_SPEC_KEY", "sk-from-a-file-Zq8uW4Xy\n")
    t = make_target("openai+http://127.0.0.1:8000/v1:m", opts)
    assert isinstance(t, OpenAICompatTarget) and t._key == "sk-from-a-file-Zq8uW4Xy"
    monkeypatch.setenv("MTMCS_SPEC_KEY", "sk-caf\u00e9-Zq8uW4Xy")
    with pytest.raises(SpecError, match="MTMCS_SPEC_KEY holds characters an HTTP header cannot"):
        make_target("openai+http://127.0.0.1:8000/v1:m", opts)
