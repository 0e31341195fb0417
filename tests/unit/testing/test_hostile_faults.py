"""The mock server's hostile answers, seen by a plain HTTP client (httpx): what each fault kind
puts on the wire."""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx
import pytest

from pytest_mtmcs.testing import FaultKind, FaultPlan, MockOpenAIServer, refusing_url

BODY = {"model": "acme/vlm", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}


def post(srv: MockOpenAIServer, **kwargs: Any) -> httpx.Response:
    with httpx.Client(timeout=30) as client:
        return client.post(f"{srv.base_url}/chat/completions", json=BODY,
                           headers={"Authorization": "Bearer sk-test-echo-key"}, **kwargs)


@pytest.mark.parametrize(("kind", "status", "ctype", "check"), [
    ("http_403", 403, "application/json", lambda b: json.loads(b)["error"]["code"] == "model_not_allowed"),
    ("http_404", 404, "application/json",
     lambda b: "`acme/vlm` does not exist" in json.loads(b)["error"]["message"]),
    ("html", 200, "text/html; charset=utf-8", lambda b: b.startswith(b"<!DOCTYPE html>")),
    ("null_content", 200, "application/json",
     lambda b: json.loads(b)["choices"][0]["message"]["content"] is None),
    ("empty_choices", 200, "application/json", lambda b: json.loads(b)["choices"] == []),
    ("non_utf8", 200, "application/json", lambda b: b"\xff\xfe" in b),
    ("text_plain", 200, "text/plain",
     lambda b: json.loads(b)["choices"][0]["message"]["content"].startswith("Plain reply")),
])
def test_hostile_answers_on_the_wire(kind: FaultKind, status: int, ctype: str, check: Any) -> None:
    with MockOpenAIServer(faults=FaultPlan.always(kind)) as srv:
        resp = post(srv)
        [call] = srv.calls
    assert (resp.status_code, resp.headers["content-type"]) == (status, ctype)
    assert check(resp.content)
    assert (call.status, call.completed, call.fault) == (status, True, kind)


def test_an_oversized_reply_ignores_max_tokens() -> None:
    with MockOpenAIServer(faults=FaultPlan.always("oversized", oversized_bytes=100_000)) as srv:
        text = post(srv).json()["choices"][0]["message"]["content"]
    assert len(text) == 100_000 and len(text.split()) > 4


def test_the_message_of_an_error_fault_echoes_what_it_is_told() -> None:
    plan = FaultPlan.always("http_401", message="bad {key} for {model} \x1b[2J {unknown}")
    with MockOpenAIServer(faults=plan) as srv:
        said = post(srv).json()["error"]["message"]
    assert said == "bad sk-test-echo-key for acme/vlm \x1b[2J {unknown}"


def test_reset_aborts_and_drop_closes() -> None:
    for kind in ("reset", "drop"):
        with MockOpenAIServer(faults=FaultPlan.always(kind)) as srv:
            with pytest.raises(httpx.TransportError):
                post(srv)
            [call] = srv.calls
        assert (call.status, call.completed) == (0, False)


def test_drip_sends_a_good_answer_a_byte_at_a_time() -> None:
    """Each byte waits for the pace; the client sees the body grow (an event per byte read)."""
    with MockOpenAIServer(faults=FaultPlan.always("drip", drip_s=0.001)) as srv:
        with httpx.Client(timeout=60) as client, client.stream(
                "POST", f"{srv.base_url}/chat/completions", json=BODY) as resp:
            pieces = list(resp.iter_raw())
    body = b"".join(pieces)
    assert json.loads(body)["choices"][0]["message"]["content"] == "Slow reply to call 0"
    assert len(pieces) > 1  # not one write


def test_drip_stops_when_the_server_does() -> None:
    srv = MockOpenAIServer(faults=FaultPlan.always("drip", drip_s=30)).start()
    got: list[BaseException] = []

    def call() -> None:
        try:
            post(srv)
        except BaseException as exc:
            got.append(exc)

    worker = threading.Thread(target=call)
    worker.start()
    srv.wait_for_calls(1, timeout=30)
    srv.stop()
    worker.join(60)
    assert not worker.is_alive() and got and isinstance(got[0], httpx.TransportError)


def test_a_refusing_url_refuses() -> None:
    with refusing_url() as url:
        with pytest.raises(httpx.ConnectError), httpx.Client(timeout=30) as client:
            client.post(f"{url}/chat/completions", json=BODY)


def test_wait_held_sees_calls_in_the_hold() -> None:
    with MockOpenAIServer() as srv:
        srv.hold_after(0)
        worker = threading.Thread(target=post, args=(srv,))
        worker.start()
        srv.wait_held(1, timeout=30)
        with pytest.raises(TimeoutError, match="for 2 held calls, got 1"):
            srv.wait_held(2, timeout=0)
        srv.release()
        worker.join(30)
    assert srv.calls[0].completed
