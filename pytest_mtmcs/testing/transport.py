"""The mock server's HTTP layer: a loopback-only, threading HTTP/1.1 server and its handler.

It reads requests (Content-Length or chunked bodies), routes POST /v1/chat/completions to the
backend, answers GET /v1/models and 404s itself, writes each answer in one write (keep-alive:
every answer carries Content-Length), tracks open connections so they can be cut, and resets new
connections while the backend is down. What a chat call answers (faults, holds, latency, the
reply, the call log) is the `ChatBackend`'s, which `server` implements. Stdlib only.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any, Protocol

from pytest_mtmcs.testing.wire import error, model_entry

HOST = "127.0.0.1"
"""The only interface the mock server binds to."""
ALLOWED_HOSTS = ("127.0.0.1", "localhost")
MAX_BODY = 256 * 1024 * 1024
"""Request bodies larger than this close the connection unanswered."""


class Abort(Exception):
    """Close the connection without an answer."""


class Reset(Abort):
    """Abort the connection (TCP RST) without an answer."""


def check_host(host: str) -> str:
    """The address to bind for `host`; ValueError unless it is a loopback name."""
    if host not in ALLOWED_HOSTS:
        raise ValueError(f"MockOpenAIServer binds only to the loopback interface; host {host!r} is "
                         f"not allowed (allowed: {', '.join(ALLOWED_HOSTS)})")
    return HOST



class Turns:
    """Calls served one at a time in arrival order when `serial` (a single-stream server's
    queue), else all at once: `take()` waits for this call's turn, `done()` ends it."""

    def __init__(self, serial: bool) -> None:
        self.serial = serial
        self._cv = threading.Condition()
        self._issued = self._serving = 0

    def take(self) -> None:
        if self.serial:
            with self._cv:
                ticket, self._issued = self._issued, self._issued + 1
                self._cv.wait_for(lambda: self._serving == ticket)

    def done(self) -> None:
        if self.serial:
            with self._cv:
                self._serving += 1
                self._cv.notify_all()


class Send(Protocol):
    """`ChatHandler`'s answer writer: status, JSON payload (or raw bytes), extra headers (a
    `Content-Type` among them replaces application/json), a callback run just before the last
    write, and `pace`: when given, the body goes out one byte at a time, `pace()` called before
    each (False stops the answer unfinished); returns True once written."""

    def __call__(self, status: int, payload: dict[str, Any] | bytes, extra: Mapping[str, str] = ...,
                 on_last_write: Callable[[], None] | None = None,
                 pace: Callable[[], bool] | None = None) -> bool: ...


class ChatBackend(Protocol):
    """What the HTTP layer asks of the server behind it."""

    @property
    def down(self) -> bool:
        """True while every connection is to be reset unanswered."""
        ...

    @property
    def model_name(self) -> str:
        """The model served at GET /v1/models."""
        ...

    def chat(self, raw: bytes, headers: dict[str, str], send: Send) -> None:
        """Answer one POST /v1/chat/completions (`raw` body, headers lower-cased) through `send`,
        or raise `Abort` to close the connection unanswered."""
        ...


class ChatHandler(BaseHTTPRequestHandler):
    """One connection's requests: framing, routing, answers in one write each."""

    protocol_version = "HTTP/1.1"  # keep-alive: every answer carries Content-Length
    server_version = "MockOpenAI/1.0"
    sys_version = ""
    disable_nagle_algorithm = True
    server: MockHTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet: no stderr line per request
        pass

    def _route(self) -> None:
        backend, method = self.server.backend, self.command
        try:
            if backend.down:
                raise Abort
            path = self.path.split("?", 1)[0].rstrip("/")
            raw = self._read_body()
            if method == "POST" and path == "/v1/chat/completions":
                backend.chat(raw, {k.lower(): v for k, v in self.headers.items()}, self._send)
            elif method == "GET" and path in ("/v1/models", f"/v1/models/{backend.model_name}"):
                model = model_entry(backend.model_name)
                self._send(200, model if path != "/v1/models" else {"object": "list", "data": [model]})
            else:
                self._send(404, error(f"Invalid URL ({method} {path})", "invalid_request_error",
                                       "unknown_url"))
        except (Abort, OSError) as exc:
            self.close_connection = True
            try:
                if isinstance(exc, Reset):  # linger 0: close() sends RST, not FIN
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                               struct.pack("ii", 1, 0))
                    self.connection.close()
                else:
                    self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _route

    def _read_body(self) -> bytes:
        try:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                chunks = []
                while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            raise Abort from None  # framing lost: the connection cannot be reused
        if not 0 <= length <= MAX_BODY:
            raise Abort
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, payload: dict[str, Any] | bytes, extra: Mapping[str, str] = {},
              on_last_write: Callable[[], None] | None = None,
              pace: Callable[[], bool] | None = None) -> bool:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        ctype = extra.get("Content-Type", "application/json")
        lines = [f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}",
                 f"Server: {self.server_version}", f"Date: {self.date_time_string()}",
                 f"Content-Type: {ctype}", f"Content-Length: {len(data)}"]
        lines += [f"{k}: {v}" for k, v in extra.items() if k != "Content-Type"]
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if pace is not None:
            self.wfile.write(head)
            for i in range(len(data)):
                if not pace():
                    raise Abort
                if i == len(data) - 1 and on_last_write is not None:
                    on_last_write()
                self.wfile.write(data[i:i + 1])
                self.wfile.flush()
            return True
        if on_last_write is not None:
            on_last_write()
        # One write for head and body: no Nagle/delayed-ACK stall between two small segments.
        self.wfile.write(head + data)
        return True


class MockHTTPServer(ThreadingHTTPServer):
    """The listening socket: a thread per connection, open connections tracked so `close_connections`
    can cut them, new ones reset while the backend is down."""

    daemon_threads = True
    block_on_close = False  # stop() closes connections itself; idle keep-alives would block join
    request_queue_size = 2048  # the default 5 resets connections under a burst of clients

    def __init__(self, port: int, backend: ChatBackend) -> None:
        self.backend = backend
        self.conns: set[socket.socket] = set()
        self.conns_cv = threading.Condition()
        self.opened = 0
        super().__init__((HOST, port), ChatHandler)

    def server_bind(self) -> None:
        check_host(str(self.server_address[0]))
        TCPServer.server_bind(self)
        self.server_name, self.server_port = HOST, int(self.server_address[1])  # no getfqdn lookup

    def verify_request(self, request: Any, client_address: Any) -> bool:
        if self.backend.down:  # refused-like: reset the fresh connection
            request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        return True

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.conns_cv:
            self.conns.add(request)
            self.opened += 1
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.conns_cv:
                self.conns.discard(request)
                self.conns_cv.notify_all()

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # clients hanging up are normal here
            super().handle_error(request, client_address)

    def close_connections(self, wait_s: float = 0.0) -> None:
        with self.conns_cv:
            for conn in list(self.conns):
                try:
                    conn.shutdown(socket.SHUT_RDWR)  # wakes a handler blocked in recv
                except OSError:
                    pass
            self.conns_cv.wait_for(lambda: not self.conns, timeout=wait_s)


@contextmanager
def refusing_url() -> Iterator[str]:
    """A base URL on 127.0.0.1 where every connection is refused, for as long as the context
    lasts: its port is bound and never listened on, so no other server (another test, another
    xdist worker) can take it over, as it could the port of a stopped server."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((HOST, 0))
        yield f"http://{HOST}:{sock.getsockname()[1]}/v1"
    finally:
        sock.close()
