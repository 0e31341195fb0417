"""docs/howto-local-server.md works as written: its mock-server and `pytest` commands, for real.

The page is read, not copied: every `python -m pytest_mtmcs.testing.server` line starts a real
server process (a later one on the same port replaces the earlier, as the page's `kill %1`
does), every `pytest --mtmcs` command runs in a sandbox holding the benchmark sample and the
page's `rules.json` (and runs again where the page says to), and its gate lines must be the ones
the page shows after it, with the exit code they imply. Ports 8000 and 8001 become free ports.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _runs import pytest_command

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "howto-local-server.md"
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```$", re.S | re.M)
SERVER = "python -m pytest_mtmcs.testing.server"


def blocks() -> list[tuple[str, str, str]]:
    """(language, info after it, body) of every fenced block of the page, in order."""
    return [(m.group(1), m.group(2), m.group(3)) for m in FENCE.finditer(PAGE.read_text())]


def commands(body: str) -> list[str]:
    """The shell commands of a bash block: continuation lines joined, comments dropped."""
    out, buf = [], ""
    for line in body.splitlines():
        if line.lstrip().startswith("#") and not buf:
            continue
        buf += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            out.append(" ".join(buf.split()))
            buf = ""
    return out


def steps() -> list[tuple[str, str]]:
    """("server", command) and ("pytest", command) and ("gates", text) in page order."""
    out: list[tuple[str, str]] = []
    for lang, _, body in blocks():
        if lang == "bash":
            out += [("server" if c.startswith(SERVER) else "pytest", c) for c in commands(body)
                    if c.startswith((SERVER, "pytest --mtmcs"))]
        elif lang == "text" and body.startswith("gates:"):
            out.append(("gates", body))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Path]:
    shutil.copytree(ROOT / "fixtures" / "mtmcs-sample", tmp_path / "fixtures" / "mtmcs-sample")
    [rules] = [body for lang, info, body in blocks() if lang == "json" and "rules.json" in info]
    (tmp_path / "rules.json").write_text(rules)
    yield tmp_path


def normal(line: str) -> str:
    return " ".join(line.split())


def test_the_page_has_the_steps_it_promises() -> None:
    kinds = [k for k, _ in steps()]
    assert kinds.count("server") == 3 and kinds.count("pytest") == 2 and kinds.count("gates") == 3
    assert kinds.index("server") < kinds.index("pytest") < kinds.index("gates")


def test_every_mock_server_and_pytest_command_of_the_page_works(sandbox: Path) -> None:
    ports = {"8000": str(free_port()), "8001": str(free_port())}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("GITHUB_STEP_SUMMARY", None)
    servers: dict[str, subprocess.Popen[str]] = {}

    def local(command: str) -> str:
        return re.sub(r"(127\.0\.0\.1:|--port )(8000|8001)\b",
                      lambda m: m.group(1) + ports[m.group(2)], command)

    def run(command: str) -> subprocess.CompletedProcess[str]:
        argv = shlex.split(local(command))
        return subprocess.run([*pytest_command(), *argv[1:], "-p", "no:cacheprovider"], cwd=sandbox,
                              env=env, text=True, capture_output=True, timeout=300)

    last: subprocess.CompletedProcess[str] | None = None
    command = ""
    try:
        for kind, text in steps():
            if kind == "server":
                argv = shlex.split(local(text).removesuffix("&").strip())
                port = argv[argv.index("--port") + 1]
                if port in servers:  # the page's `kill %1`
                    servers.pop(port).terminate()
                proc = subprocess.Popen([sys.executable, *argv[1:]], cwd=sandbox, env=env, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                assert proc.stdout is not None
                servers[port] = proc
                ready = proc.stdout.readline()
                assert ready == f"READY http://127.0.0.1:{port}/v1\n", (text, ready, proc.stderr)
            elif kind == "pytest":
                command = text
                last = run(command)
            else:
                assert command, "gate lines shown before any command"
                if last is None:  # "run the same pytest command again"
                    last = run(command)
                out = [normal(line) for line in last.stdout.splitlines()]
                for line in text.splitlines():
                    want = normal(line)
                    assert any(o.startswith(want) for o in out), (want, last.stdout[-3000:])
                expected = 0 if text.startswith("gates: all") else 1
                assert last.returncode == expected, last.stdout[-3000:]
                last = None
    finally:
        for proc in servers.values():
            proc.terminate()
            proc.wait(10)
