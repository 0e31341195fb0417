"""A real OpenAI-compatible chat-completions server on 127.0.0.1, stdlib only.

For the project's tests, load benchmarks and users' own tests:

    with MockOpenAIServer(reply=lambda body: "No.", latency_s=0.05,
                          faults=FaultPlan.burst("http_503", first=2)) as srv:
        client = openai.AsyncOpenAI(base_url=srv.base_url, api_key="x")
        ...
        assert srv.calls[0].body["model"] == "my-model"

As a process:  python -m pytest_mtmcs.testing.server --port 0 --latency 0.2 --log calls.jsonl
prints `READY http://127.0.0.1:PORT/v1` once listening and stops on SIGTERM/SIGINT; `--reply`,
`--rules FILE`, `--judge` and `--intent` choose what it says (`scripts`).

Calls are numbered 0, 1, 2, ... in arrival order (since start or the last `reset()`); fault
schedules and `hold_after` refer to these numbers. One thread per connection, HTTP/1.1
keep-alive, a deep listen backlog: 64+ concurrent slow calls cost threads that sleep, not CPU.
Here: the public class and what a chat call answers; HTTP and connections: `transport`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, replace
from typing import IO, TYPE_CHECKING, Any, cast

from pytest_mtmcs.testing.faults import FAULT_KINDS, FaultKind, FaultPlan
from pytest_mtmcs.testing.scripts import add_arguments, reply_from_args
from pytest_mtmcs.testing.transport import HOST, Abort, MockHTTPServer, Reset, Send, Turns, check_host
from pytest_mtmcs.testing.wire import ReplyFn, chat_completion, default_reply, drip_answer, fault_answer

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["FAULT_KINDS", "FaultKind", "FaultPlan", "MockOpenAIServer", "RecordedCall", "default_reply",
           "main"]


@dataclass(frozen=True)
class RecordedCall:
    """One POST /v1/chat/completions as the server saw it (a snapshot; the log replaces it)."""

    body: dict[str, Any]
    """The parsed JSON body; {} when it was not a JSON object."""
    headers: dict[str, str]
    """Request headers, names lower-cased."""
    received_at: float
    """time.time() when the request had been read."""
    status: int
    """HTTP status answered; 0 while in flight and for calls closed unanswered (hang, drop)."""
    completed: bool
    """True once the whole response went to the socket (set just before the final write, so a
    client holding the reply always sees True; reset to False if that write fails)."""
    index: int = 0
    """Call number since start or the last reset."""
    fault: FaultKind | None = None
    """The injected fault, if any."""


@dataclass
class _Pending:
    index: int
    epoch: int
    fault: FaultKind | None
    plan: FaultPlan | None  # the plan that chose `fault`, even if swapped since
    received_at: float
    digest: str | None
    live: bool = True  # still counted in `in_flight`


class MockOpenAIServer:
    """An OpenAI-compatible server on 127.0.0.1 answering from `reply`, with latency and faults.

    Serves POST /v1/chat/completions (non-streaming) and GET /v1/models; other paths answer 404
    and bodies that are not JSON answer 400, both in OpenAI's error shape. `reply(body) -> str`
    picks the text (default `default_reply`); an exception in it answers 500 naming it.
    `max_tokens`/`max_completion_tokens` cut the reply (finish_reason "length"); token counts
    are whitespace-split words of the text parts (images are neither decoded nor counted).
    Every chat call sleeps `latency_s + uniform(-jitter_s, jitter_s)` (at least 0) in its
    handler thread before its fault or answer. `in_flight` and `max_in_flight` count chat calls
    being handled at once, to check a client's concurrency limits.

    Example:
        with MockOpenAIServer(reply=lambda body: "I can't help with that.") as srv:
            ...  # point a client at srv.base_url
            srv.wait_for_calls(3, timeout=5)
    """

    def __init__(self, reply: ReplyFn | None = None, latency_s: float = 0.0, jitter_s: float = 0.0,
                 faults: FaultPlan | None = None, model_name: str = "mock", *, host: str = HOST,
                 port: int = 0, log_path: str | None = None, record_calls: bool = True,
                 serial: bool = False) -> None:
        """`log_path`: append one JSON line per finished call; `record_calls=False` keeps no
        bodies in memory (`calls` stays empty; counters, faults and holds still work); `serial`:
        answer one call at a time, the others queue (in flight), like a single-stream server."""
        check_host(host)
        if latency_s < 0 or jitter_s < 0:
            raise ValueError(f"latency_s and jitter_s must be >= 0, got {latency_s!r}, {jitter_s!r}")
        self._reply: ReplyFn = reply or default_reply
        self.latency_s, self.jitter_s, self.model_name = latency_s, jitter_s, model_name
        self.faults: FaultPlan | None = faults
        """The fault plan in force; may be swapped while running."""
        self._port, self._log_path, self._record = port, log_path, record_calls
        self._cv = threading.Condition()
        self._turns = Turns(serial)
        self._stopping = threading.Event()
        self._rng = random.Random()
        self._calls: list[RecordedCall] = []
        self._received = self._completed = self._epoch = self._held = self._hold_gen = 0
        self._in_flight = self._max_in_flight = 0
        self._hold_at: int | None = None
        self.down = False
        """True while `set_down(True)` is in force."""
        self._httpd: MockHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._log: IO[str] | None = None

    # lifecycle ---------------------------------------------------------------------------------
    def start(self) -> Self:
        """Bind and serve in a daemon thread; returns self."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        if self._log_path:
            self._log = open(self._log_path, "a", encoding="utf-8")
        self._httpd = MockHTTPServer(self._port, _Backend(self))
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"mock-openai-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop serving, end hung and held calls unanswered, close every connection."""
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        self._stopping.set()
        with self._cv:
            self._cv.notify_all()
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections(wait_s=timeout_s)
        thread.join(timeout_s)
        self._httpd = self._thread = None
        with self._cv:
            if self._log is not None:
                self._log.close()
                self._log = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port."""
        if self._httpd is None:
            raise RuntimeError("MockOpenAIServer is not running: use `with MockOpenAIServer() as srv:` "
                               "or call srv.start() first")
        return self._httpd.server_port

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT/v1`, for `openai.AsyncOpenAI(base_url=...)`."""
        return f"http://{HOST}:{self.port}/v1"

    @property
    def connections_opened(self) -> int:
        """TCP connections accepted so far (keep-alive clients open few)."""
        return self._httpd.opened if self._httpd is not None else 0

    # call log ----------------------------------------------------------------------------------
    @property
    def calls(self) -> list[RecordedCall]:
        """A snapshot of the chat calls since start or the last reset, in arrival order."""
        with self._cv:
            return list(self._calls)

    def reset(self) -> None:
        """Forget the call log and restart call numbering (fault schedules and holds count anew);
        `max_in_flight` restarts from the calls in flight now."""
        with self._cv:
            self._calls.clear()
            self._received = self._completed = 0
            self._max_in_flight = self._in_flight
            self._epoch += 1

    @property
    def in_flight(self) -> int:
        """Chat calls received and not yet answered (or closed unanswered), right now."""
        with self._cv:
            return self._in_flight

    @property
    def max_in_flight(self) -> int:
        """The most chat calls in flight at once since start or the last reset. A call leaves
        just before its answer's last write, so a client that starts its next call on reading
        an answer is never counted twice."""
        with self._cv:
            return self._max_in_flight

    def wait_for_calls(self, n: int, timeout: float = 5.0, *, completed: bool = False) -> list[RecordedCall]:
        """Block until `n` calls arrived (or, with `completed=True`, were fully answered); returns
        `calls`. Raises TimeoutError saying how many there were."""
        with self._cv:
            if not self._cv.wait_for(lambda: (self._completed if completed else self._received) >= n,
                                     timeout=timeout):
                what = "completed" if completed else "received"
                got = self._completed if completed else self._received
                raise TimeoutError(f"MockOpenAIServer: waited {timeout:g} s for {n} {what} calls, got {got}")
            return list(self._calls)

    # switches ----------------------------------------------------------------------------------
    def set_down(self, down: bool) -> None:
        """While down, every connection is reset at once (like a dead server); going down also
        closes the open connections, cutting calls in flight."""
        self.down = down
        if down and self._httpd is not None:
            self._httpd.close_connections()

    def hold_after(self, n: int) -> None:
        """Calls numbered n and later wait unanswered until `release()` (or stop)."""
        with self._cv:
            self._hold_at = n

    def release(self) -> None:
        """Let held calls proceed (they are then answered normally) and end the hold."""
        with self._cv:
            self._hold_at = None
            self._hold_gen += 1
            self._cv.notify_all()

    @property
    def held_count(self) -> int:
        """Calls waiting in a hold right now."""
        with self._cv:
            return self._held

    def wait_held(self, n: int, timeout: float = 30.0) -> None:
        """Block until `n` calls wait in the hold at once (an event, not a sleep); TimeoutError
        saying how many did. Proves that `n` calls were in flight together."""
        with self._cv:
            if not self._cv.wait_for(lambda: self._held >= n, timeout=timeout):
                raise TimeoutError(f"MockOpenAIServer: waited {timeout:g} s for {n} held calls, "
                                   f"got {self._held}")

    def set_faults(self, faults: FaultPlan | None) -> None:
        """Swap the fault plan (call numbers keep counting)."""
        self.faults = faults

    # used by the handler -----------------------------------------------------------------------
    def _begin(self, body: dict[str, Any], headers: dict[str, str], raw: bytes) -> _Pending:
        digest = hashlib.sha256(raw).hexdigest() if self._log is not None else None
        now, faults = time.time(), self.faults
        with self._cv:
            index = self._received
            self._received += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            fault = faults.fault_for(index) if faults is not None else None
            if self._record:
                self._calls.append(RecordedCall(body, headers, now, 0, False, index, fault))
            self._cv.notify_all()
            return _Pending(index, self._epoch, fault, faults, now, digest)

    def _wait_hold(self, call: _Pending) -> bool:
        with self._cv:
            if self._hold_at is None or call.index < self._hold_at or call.epoch != self._epoch:
                return True
            gen = self._hold_gen
            self._held += 1
            self._cv.notify_all()  # wait_held() may be waiting for this one
            try:
                self._cv.wait_for(lambda: self._hold_gen != gen or self._stopping.is_set())
            finally:
                self._held -= 1
            return not self._stopping.is_set()

    def _delay(self) -> float:
        jitter = self._rng.uniform(-self.jitter_s, self.jitter_s) if self.jitter_s else 0.0
        return max(0.0, self.latency_s + jitter)

    def _leave(self, call: _Pending) -> None:
        """Stop counting `call` as in flight (once); the caller holds `_cv`."""
        if call.live:
            call.live = False
            self._in_flight -= 1

    def _mark_answered(self, call: _Pending, status: int) -> None:
        with self._cv:
            self._leave(call)
            if self._record and call.epoch == self._epoch:
                self._calls[call.index] = replace(self._calls[call.index], status=status, completed=True)

    def _finish(self, call: _Pending, status: int, completed: bool) -> None:
        with self._cv:
            self._leave(call)
            if call.epoch == self._epoch:
                self._completed += completed
                if self._record:
                    self._calls[call.index] = replace(self._calls[call.index], status=status,
                                                      completed=completed)
                self._cv.notify_all()
            if self._log is not None:
                self._log.write(json.dumps({
                    "index": call.index, "sha256": call.digest, "received_at": call.received_at,
                    "finished_at": time.time(), "status": status, "completed": completed,
                    "fault": call.fault}) + "\n")
                self._log.flush()

class _Backend:
    """The mock model behind the HTTP layer (a `ChatBackend`): per chat call, the hold, the
    latency, then the fault or the reply, all recorded in `mock`'s call log."""

    def __init__(self, mock: MockOpenAIServer) -> None:
        self.mock = mock

    @property
    def down(self) -> bool:
        return self.mock.down

    @property
    def model_name(self) -> str:
        return self.mock.model_name

    def chat(self, raw: bytes, headers: dict[str, str], send: Send) -> None:
        mock = self.mock
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        call = mock._begin(body if isinstance(body, dict) else {}, headers, raw)
        status, completed = 0, False
        mock._turns.take()
        try:
            if not mock._wait_hold(call) or mock._stopping.wait(mock._delay()):
                raise Abort
            plan, fault = call.plan or FaultPlan(), call.fault
            if fault == "hang":
                mock._stopping.wait(plan.hang_s)
                raise Abort
            if fault in ("drop", "reset"):
                raise Reset if fault == "reset" else Abort
            pace = None
            extra: dict[str, str]
            if fault == "drip":
                status, payload, extra = 200, drip_answer(mock.model_name, call.index), {}
                pace = lambda: not mock._stopping.wait(plan.drip_s)  # noqa: E731
            elif fault is not None:
                key = headers.get("authorization", "").partition(" ")[2]
                status, payload, extra = fault_answer(
                    fault, body, key, message=plan.message, oversized_bytes=plan.oversized_bytes,
                    retry_after_s=plan.retry_after_s, model=mock.model_name, index=call.index)
            else:
                status, answer = chat_completion(body, mock._reply, mock.model_name, call.index)
                payload, extra = json.dumps(answer).encode(), {}
            completed = send(status, payload, extra,
                             on_last_write=lambda: mock._mark_answered(call, status), pace=pace)
        finally:
            mock._turns.done()
            mock._finish(call, status, completed)


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; print `READY <base_url>` once listening."""
    p = argparse.ArgumentParser(prog="python -m pytest_mtmcs.testing.server",
                                description="OpenAI-compatible mock chat server on 127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--latency", type=float, default=0.0, help="seconds per call")
    p.add_argument("--jitter", type=float, default=0.0, help="+/- seconds, uniform")
    p.add_argument("--fault-rate", type=float, default=0.0, help="probability a call fails")
    p.add_argument("--fault-kinds", default="http_500,http_503,http_429,drop",
                   help=f"comma-separated, from: {','.join(FAULT_KINDS)}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--retry-after", type=float, default=1.0,
                   help="seconds in the Retry-After header of http_429 answers")
    p.add_argument("--hang", type=float, default=30.0, help="seconds a `hang` fault holds a call")
    p.add_argument("--model", default="mock", help="model name served")
    p.add_argument("--log", default=None, help="append one JSON line per finished call")
    add_arguments(p)  # --reply, --rules, --judge, --intent: what it says (see `scripts`)
    args = p.parse_args(argv)
    try:
        reply = reply_from_args(args)
        kinds = tuple(k.strip() for k in args.fault_kinds.split(",") if k.strip())
        plan = FaultPlan(rate=args.fault_rate, kinds=cast(Any, kinds), seed=args.seed,
                         retry_after_s=args.retry_after, hang_s=args.hang)
        srv = MockOpenAIServer(reply=reply, latency_s=args.latency, jitter_s=args.jitter, faults=plan,
                               model_name=args.model, port=args.port, log_path=args.log,
                               record_calls=False)
    except ValueError as exc:  # a ScriptError names the file, line and field
        p.error(str(exc))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with srv:
        print(f"READY {srv.base_url}", flush=True)
        while not stop.wait(0.2):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
