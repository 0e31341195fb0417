"""MockOpenAIServer through the real `openai` SDK and raw httpx, over real loopback sockets."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import openai
import pytest

from pytest_mtmcs.testing import FaultPlan, MockOpenAIServer

T = TypeVar("T")
PNG = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8/5+hHgAHggJ/PchI7wAAAABJRU5ErkJggg=="
MESSAGES: Any = [{"role": "user", "content": "hello there"}]


def client_call(srv: MockOpenAIServer, fn: Callable[[openai.AsyncOpenAI], Awaitable[T]],
                timeout: float = 10.0) -> T:
    """Run `fn(client)` with a fresh AsyncOpenAI client (no retries) in a fresh event loop."""
    async def go() -> T:
        async with openai.AsyncOpenAI(base_url=srv.base_url, api_key="x", max_retries=0,
                                      timeout=timeout) as client:
            return await fn(client)
    return asyncio.run(go())


def complete(srv: MockOpenAIServer, timeout: float = 10.0, **kwargs: Any) -> Any:
    kwargs.setdefault("messages", MESSAGES)
    return client_call(srv, lambda c: c.chat.completions.create(model="acme/vlm", **kwargs), timeout)


def test_round_trip_with_an_image_part() -> None:
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Describe this picture please"},
                                             {"type": "image_url", "image_url": {"url": PNG}}]}]
    with MockOpenAIServer(model_name="acme/vlm") as srv:
        resp = complete(srv, messages=messages, temperature=0.3, max_completion_tokens=50)
        [call] = srv.calls
    assert resp.object == "chat.completion" and resp.model == "acme/vlm" and resp.id
    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].message.content == "Mock reply to: Describe this picture please"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens) == (6, 7, 13)
    assert call.body["messages"] == messages and call.body["temperature"] == 0.3
    assert call.body["max_completion_tokens"] == 50
    assert call.headers["authorization"] == "Bearer x"
    assert call.headers["content-type"] == "application/json"
    assert (call.status, call.completed, call.index, call.fault) == (200, True, 0, None)
    assert abs(call.received_at - time.time()) < 30


def test_reply_callable_and_max_tokens_cut() -> None:
    seen: list[dict[str, Any]] = []

    def reply(body: dict[str, Any]) -> str:
        seen.append(body)
        return "one two three four"

    with MockOpenAIServer(reply=reply) as srv:
        full = complete(srv)
        cut = complete(srv, max_tokens=2)
    assert full.choices[0].message.content == "one two three four"
    assert cut.choices[0].message.content == "one two"
    assert cut.choices[0].finish_reason == "length" and cut.usage.completion_tokens == 2
    assert [b["messages"] for b in seen] == [MESSAGES, MESSAGES]


def test_a_failing_reply_callable_answers_500_naming_it() -> None:
    def reply(body: dict[str, Any]) -> str:
        raise KeyError("no such case")

    with MockOpenAIServer(reply=reply) as srv, pytest.raises(openai.InternalServerError) as info:
        complete(srv)
    assert "reply callable raised KeyError" in info.value.message


def test_raw_http_routes_errors_and_keep_alive() -> None:
    with MockOpenAIServer(model_name="m1") as srv, httpx.Client(base_url=srv.base_url) as http:
        models = http.get("/models")
        missing = http.get("/nope")
        bad = http.post("/chat/completions", content=b'{"model": "m1", "messages": [',
                        headers={"Content-Type": "application/json"})
        empty = http.post("/chat/completions", json={"model": "m1", "messages": []})
        ok = http.post("/chat/completions", json={"model": "m1", "messages": MESSAGES})
        assert srv.connections_opened == 1  # one keep-alive connection carried all five
        statuses = [c.status for c in srv.calls]
    assert models.json()["data"][0]["id"] == "m1"
    for resp, status in ((missing, 404), (bad, 400), (empty, 400)):
        assert resp.status_code == status
        assert set(resp.json()["error"]) == {"message", "type", "param", "code"}
    assert ok.json()["choices"][0]["message"]["content"] == "Mock reply to: hello there"
    for resp in (models, missing, bad, ok):
        assert int(resp.headers["content-length"]) == len(resp.content)
    assert statuses == [400, 400, 200]  # chat calls only, malformed bodies included


@pytest.mark.parametrize(("kind", "error", "status"), [
    ("http_500", openai.InternalServerError, 500),
    ("http_503", openai.InternalServerError, 503),
    ("http_429", openai.RateLimitError, 429),
])
def test_status_faults_raise_the_sdk_error(kind: str, error: type[openai.APIStatusError],
                                            status: int) -> None:
    with MockOpenAIServer(faults=FaultPlan.always(kind, retry_after_s=7)) as srv:  # type: ignore[arg-type]
        with pytest.raises(error) as info:
            complete(srv)
        [call] = srv.calls
    assert info.value.status_code == status
    assert info.value.response.headers.get("retry-after") == ("7" if kind == "http_429" else None)
    assert (call.status, call.completed, call.fault) == (status, True, kind)


def test_sdk_retries_honour_retry_after() -> None:
    # 1.5 s asked twice: at least 3 s, which the SDK's own backoff (0.5 s, then 1 s, at most)
    # cannot reach. A lower bound only: a slow machine cannot fail it, ignoring the header can.
    plan = FaultPlan.burst("http_429", first=2, retry_after_s=1.5)
    with MockOpenAIServer(faults=plan) as srv:
        async def retrying() -> Any:
            async with openai.AsyncOpenAI(base_url=srv.base_url, api_key="x", max_retries=2) as c:
                return await c.chat.completions.create(model="m", messages=MESSAGES)
        started = time.perf_counter()
        assert asyncio.run(retrying()).choices[0].message.content == "Mock reply to: hello there"
        elapsed = time.perf_counter() - started
        calls = srv.calls
    assert [c.status for c in calls] == [429, 429, 200]
    assert [c.headers["x-stainless-retry-count"] for c in calls] == ["0", "1", "2"]
    assert elapsed >= 3.0, elapsed


def test_drop_is_a_connection_error() -> None:
    with MockOpenAIServer(faults=FaultPlan.always("drop")) as srv:
        with pytest.raises(openai.APIConnectionError) as info:
            complete(srv)
        [call] = srv.calls
    assert not isinstance(info.value, openai.APITimeoutError)
    assert (call.status, call.completed) == (0, False)


def test_hang_times_the_client_out_and_stop_ends_it() -> None:
    srv = MockOpenAIServer(faults=FaultPlan.always("hang", hang_s=60)).start()
    try:
        started = time.perf_counter()
        with pytest.raises(openai.APITimeoutError):
            complete(srv, timeout=0.3)
        assert time.perf_counter() - started < 30  # cut by the client, not the hang (60 s)
        assert [(c.status, c.completed) for c in srv.calls] == [(0, False)]
    finally:
        started = time.perf_counter()
        srv.stop()
    assert time.perf_counter() - started < 30  # the hung handler was woken, not waited out (60 s)


def test_malformed_body_cannot_be_parsed() -> None:
    with MockOpenAIServer(faults=FaultPlan.always("malformed")) as srv:
        # openai 3.x lets the JSONDecodeError through instead of wrapping it in an OpenAIError
        with pytest.raises((ValueError, openai.OpenAIError)):
            complete(srv)
        with httpx.Client() as http:
            resp = http.post(f"{srv.base_url}/chat/completions", json={"messages": MESSAGES})
    assert resp.status_code == 200 and int(resp.headers["content-length"]) == len(resp.content)
    with pytest.raises(json.JSONDecodeError):
        resp.json()


def test_schedule_then_recovery_and_reset_restarts_numbering() -> None:
    plan = FaultPlan(schedule={0: "http_500", 1: "http_429"})
    with MockOpenAIServer(faults=plan) as srv:
        with pytest.raises(openai.InternalServerError):
            complete(srv)
        with pytest.raises(openai.RateLimitError):
            complete(srv)
        complete(srv)
        assert [(c.index, c.status, c.fault) for c in srv.calls] == [
            (0, 500, "http_500"), (1, 429, "http_429"), (2, 200, None)]
        srv.reset()
        assert srv.calls == []
        with pytest.raises(openai.InternalServerError):
            complete(srv)  # call 0 again


def test_fault_plan_helpers_and_validation() -> None:
    assert [FaultPlan.burst("http_503", first=3).fault_for(i) for i in range(4)] == ["http_503"] * 3 + [None]
    a = FaultPlan(rate=0.3, kinds=("http_500", "drop"), seed=5)
    b = FaultPlan(rate=0.3, kinds=("http_500", "drop"), seed=5)
    draws = [a.fault_for(i) for i in range(2000)]
    assert draws == [b.fault_for(i) for i in range(2000)]  # deterministic per call number
    assert 0.25 < sum(d is not None for d in draws) / 2000 < 0.35
    assert {d for d in draws if d} == {"http_500", "drop"}
    assert draws != [FaultPlan(rate=0.3, kinds=("http_500", "drop"), seed=6).fault_for(i) for i in range(2000)]
    with pytest.raises(ValueError, match=r"'http_418'.*allowed: http_500"):
        FaultPlan(schedule={0: "http_418"})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="rate"):
        FaultPlan(rate=1.5)


def test_down_refuses_then_recovers() -> None:
    with MockOpenAIServer() as srv:
        complete(srv)
        srv.set_down(True)
        with pytest.raises(openai.APIConnectionError):
            complete(srv)
        with httpx.Client() as http, pytest.raises(httpx.TransportError):
            http.get(f"{srv.base_url}/models")
        srv.set_down(False)
        assert complete(srv).choices[0].message.content.startswith("Mock reply to:")
        assert [c.status for c in srv.calls] == [200, 200]  # refused calls never reached the API


def test_hold_after_blocks_until_release() -> None:
    with MockOpenAIServer() as srv:
        srv.hold_after(2)
        results: list[str] = []

        async def four(client: openai.AsyncOpenAI) -> None:
            async def one() -> None:
                resp = await client.chat.completions.create(model="m", messages=MESSAGES)
                results.append(resp.choices[0].message.content or "")
            await asyncio.gather(*(one() for _ in range(4)))

        worker = threading.Thread(target=client_call, args=(srv, four))
        worker.start()
        srv.wait_for_calls(4, timeout=60)
        srv.wait_held(2, timeout=60)
        srv.wait_for_calls(2, timeout=60, completed=True)
        assert sorted(c.completed for c in srv.calls) == [False, False, True, True]
        assert srv.held_count == 2  # still held: nothing but release() lets them go
        srv.release()
        worker.join(60)
        assert srv.held_count == 0 and len(results) == 4
        assert all(c.completed for c in srv.calls)


def test_64_concurrent_calls_overlap() -> None:
    """64 calls are in flight at once: all of them wait in a hold together (an event the
    server signals, not a wall-clock bound), then all are answered."""
    with MockOpenAIServer() as srv:
        srv.hold_after(0)

        async def sixty_four(client: openai.AsyncOpenAI) -> list[str]:
            replies = await asyncio.gather(*(client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": f"q{i}"}]) for i in range(64)))
            return [r.choices[0].message.content or "" for r in replies]

        results: list[list[str]] = []
        worker = threading.Thread(target=lambda: results.append(client_call(srv, sixty_four)))
        worker.start()
        try:
            srv.wait_held(64, timeout=120)  # a serial server would hold one at a time
            assert srv.max_in_flight == 64
        finally:
            srv.release()
            worker.join(120)
        assert results and sorted(results[0]) == sorted(f"Mock reply to: q{i}" for i in range(64))
        assert all(c.status == 200 for c in srv.calls) and len(srv.calls) == 64


def test_latency_applies_per_call() -> None:
    with MockOpenAIServer(latency_s=0.2) as srv:
        started = time.perf_counter()
        complete(srv)
    assert time.perf_counter() - started >= 0.2


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::", "example.com"])
def test_refuses_non_loopback_hosts(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        MockOpenAIServer(host=host)


def test_lifecycle_and_wait_timeout() -> None:
    srv = MockOpenAIServer()
    with pytest.raises(RuntimeError, match="not running"):
        _ = srv.base_url
    with srv:
        assert srv.base_url.startswith("http://127.0.0.1:") and srv.base_url.endswith("/v1")
        with pytest.raises(TimeoutError, match="1 received calls, got 0"):
            srv.wait_for_calls(1, timeout=0.05)
    srv.stop()  # idempotent
    with srv:  # restartable
        assert complete(srv).choices


def test_runs_as_a_process_with_a_call_log(tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest_mtmcs.testing.server", "--port", "0", "--latency", "0.01",
         "--jitter", "0", "--fault-rate", "0", "--log", str(log)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[3])})
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline().split()
        assert ready[0] == "READY" and ready[1].startswith("http://127.0.0.1:"), ready
        with httpx.Client(base_url=ready[1]) as http:
            for i in range(3):
                assert http.post("/chat/completions", json={"messages": [
                    {"role": "user", "content": f"q{i}"}]}).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 0, stderr
    assert stderr == ""
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["index"], r["status"], r["completed"]) for r in lines] == [(i, 200, True) for i in range(3)]
    assert len({r["sha256"] for r in lines}) == 3 and all(r["finished_at"] >= r["received_at"] for r in lines)
