"""Text-only HTTP targets: `?images=no` declares one, `?images=probe` finds an image-blind
server with one probe pair before the run (the mock server, like a text-only model behind an
OpenAI-compatible server, answers 200 to images and counts only the text's tokens)."""

from __future__ import annotations

import asyncio

import pytest

from pytest_mtmcs.chat import GenParams, ImageRef, user
from pytest_mtmcs.errors import SpecError, error_kind
from pytest_mtmcs.targets import TargetOptions, make_target
from pytest_mtmcs.targets.openai_compat import OpenAICompatTarget
from pytest_mtmcs.targets.openai_images import _Answer, verdict
from pytest_mtmcs.targets.openai_spec import split_options
from pytest_mtmcs.testing import FaultPlan, MockOpenAIServer

OK = 200


def _target(srv: MockOpenAIServer, suffix: str) -> OpenAICompatTarget:
    t = make_target(f"openai+{srv.base_url}:m{suffix}", TargetOptions(retries=0))
    assert isinstance(t, OpenAICompatTarget)
    return t


def _image_request() -> tuple[object, ...]:
    import _data

    return (user("What is in the picture?", ImageRef(data=_data.png_bytes(1))),)


@pytest.mark.parametrize(("rest", "mode"), [
    ("+http://h:8000/v1:m", "yes"), ("+http://h:8000/v1:m?images=no", "no"),
    ("+http://h:8000/v1:Qwen/Qwen3:8b?images=PROBE", "probe"), (":gpt-4o?images=yes", "yes"),
    ("+http://h/v1?x=1:m", "yes"),  # a '?' in the URL is its query, left to the URL's checks
])
def test_the_image_mode_ends_the_spec(rest: str, mode: str) -> None:
    assert split_options(rest)[1] == mode


@pytest.mark.parametrize(("rest", "match"), [
    ("+http://h/v1:m?images=maybe", r"images='maybe' is not one of yes, no, probe"),
    ("+http://h/v1:m?vision=1", r"unknown option 'vision=1'.*images=yes\|no\|probe"),
])
def test_a_bad_image_mode_says_what_is_allowed(rest: str, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        split_options(rest)


def test_a_blind_server_is_found_with_one_probe_pair() -> None:
    with MockOpenAIServer() as srv:
        t = _target(srv, "?images=probe")
        assert srv.calls == []  # nothing asked at build time
        assert t.supports_images is False and t.supports_images is False  # probed once
        bodies = [c.body for c in srv.calls]
    assert len(bodies) == 2
    without, with_image = (b["messages"][0]["content"] for b in bodies)
    assert [p["type"] for p in without] == ["text"]
    assert [p["type"] for p in with_image] == ["image_url", "text"]
    assert with_image[0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert all(b["max_tokens"] == 1 and b["temperature"] == 0 for b in bodies)
    assert t.text_only_reason is not None and "ignores images: prompt_tokens" in t.text_only_reason
    assert t.stats["images"]["mode"] == "probe" and "ignores images" in t.stats["images"]["probe"]


def test_a_server_rejecting_images_is_text_only() -> None:
    plan = FaultPlan(schedule={1: "http_400"}, message="image input is not supported")
    with MockOpenAIServer(faults=plan) as srv:
        t = _target(srv, "?images=probe")
        assert t.supports_images is False
    assert t.text_only_reason is not None
    assert "rejects images: HTTP 400" in t.text_only_reason
    assert "image input is not supported" in t.text_only_reason


def test_an_inconclusive_probe_keeps_sending_images_and_says_why() -> None:
    with MockOpenAIServer(faults=FaultPlan.always("http_503")) as srv:
        t = _target(srv, "?images=probe")
        assert t.supports_images is True
    assert t.text_only_reason is None
    assert "probe inconclusive: the request without an image got HTTP 503" in t.stats["images"]["probe"]


@pytest.mark.parametrize(("without", "with_image", "sees", "words"), [
    (_Answer(OK, 37, ""), _Answer(OK, 37, ""), False, "ignores images: prompt_tokens 37"),
    (_Answer(OK, 37, ""), _Answer(OK, 101, ""), True, "sees images: prompt_tokens 101"),
    (_Answer(OK, 37, ""), _Answer(422, None, "bad part"), False, "rejects images: HTTP 422"),
    (_Answer(OK, None, ""), _Answer(OK, None, ""), None, "no usage.prompt_tokens"),
    (_Answer(OK, 37, ""), _Answer(None, None, "ConnectError"), None, "got no answer"),
    (_Answer(OK, 37, ""), _Answer(401, None, "bad key"), None, "got HTTP 401"),
    (_Answer(404, None, "no model"), _Answer(404, None, "no model"), None, "without an image got HTTP 404"),
])
def test_the_probe_verdicts(without: _Answer, with_image: _Answer, sees: bool | None,
                            words: str) -> None:
    v = verdict(without, with_image)
    assert v.sees_images is sees and words in v.detail


def test_a_declared_text_only_target_never_sends_an_image() -> None:
    with MockOpenAIServer() as srv:
        t = _target(srv, "?images=no")
        assert t.supports_images is False
        assert "declared text-only (?images=no)" in (t.text_only_reason or "")

        async def ask() -> None:
            try:
                await t.respond(_image_request(), GenParams())  # type: ignore[arg-type]
            finally:
                await t.aclose()

        with pytest.raises(SpecError, match="--mtmcs-caption-for-text") as info:
            asyncio.run(ask())
        assert srv.calls == []  # refused before any request
    assert error_kind(info.value) == "config"


def test_the_default_sends_images_without_probing() -> None:
    with MockOpenAIServer() as srv:
        t = _target(srv, "")
        assert t.supports_images is True and t.text_only_reason is None

        async def ask() -> None:
            try:
                await t.respond(_image_request(), GenParams())  # type: ignore[arg-type]
            finally:
                await t.aclose()

        asyncio.run(ask())
        assert len(srv.calls) == 1 and srv.calls[0].body["messages"][0]["content"][0]["type"] == "image_url"
