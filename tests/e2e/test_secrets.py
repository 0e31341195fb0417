"""The API key never lands in anything a run writes or prints.

A sentinel key is put in the environment variable named by --mtmcs-api-key-env; real
`pytest --mtmcs` runs (the console script, subprocesses) go against a mock server that must
receive it in the Authorization header, with every output on: JSON, Markdown (and the GitHub
job summary), HTML, snapshots, JUnit XML, transcripts, a DEBUG log file and captured logs,
`-rA -l`. The servers echo the key the way careless ones do, whole, less its last character,
upper-cased and masked in the middle (`sk-proj-abcd****wxyz`): in the replies of a run that
works (`ok`: the store must not hold them either), in the 401 body of a run whose key is
refused, and in the 500 body of a run whose server fails; one more run goes against a server
that is down. Then every file under the sandbox (JSON, HTML and Markdown reports, the job
summary, JUnit XML, the sqlite store and its WAL, snapshots, logs) and every captured
stdout/stderr is searched, case-insensitively, for any 12-character run of the key.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

from _data import small_dataset
from _runs import pytest_command

from pytest_mtmcs.testing import FaultPlan, MockOpenAIServer

KEY_ENV = "MTMCS_E2E_API_KEY"
WINDOW = 12
"""Length of the key pieces searched for: a truncated or partly redacted key is a leak too."""


def make_key(length: int = 48) -> str:
    """A fresh sentinel key of `length` characters, distinct in every piece."""
    head = "sk-mtmcs-SENTINEL-"
    return head + secrets.token_hex(length)[: length - len(head)]


def pieces(key: str) -> list[bytes]:
    """Every run of WINDOW characters of the key, lower-cased (the search ignores case)."""
    return sorted({key[i:i + WINDOW].lower().encode() for i in range(len(key) - WINDOW + 1)})


def echoes(key: str) -> str:
    """The key as careless servers echo it: whole, less its last character, upper-cased, and
    masked in the middle."""
    return (f"whole {key}; cut {key[:-1]}; upper {key.upper()}; "
            f"masked {key[:WINDOW + 2]}****{key[-WINDOW - 2:]}")


def leaks(key: str, root: Path, texts: dict[str, str]) -> list[str]:
    """Every file under `root` (any bytes: sqlite pages, WAL, XML, HTML) and every named text
    that holds a WINDOW-character run of the key in any letter case, with the first found."""
    needles = pieces(key)
    found = []
    named = [(str(p.relative_to(root)), p.read_bytes())
             for p in sorted(p for p in root.rglob("*") if p.is_file())]
    named += [(name, text.encode()) for name, text in texts.items()]
    for name, blob in named:
        blob = blob.lower()
        hit = next((n for n in needles if n in blob), None)
        if hit is not None:
            found.append(f"{name} ({hit.decode()!r})")
    return found



@dataclass
class Run:
    """One finished `pytest --mtmcs` subprocess."""

    name: str
    returncode: int
    stdout: str
    stderr: str


def run_everything_on(name: str, sandbox: Path, data: Path, url: str, key: str, *,
                      transcripts: bool = True) -> Run:
    """`pytest --mtmcs` in `sandbox/name` with every output on and the key in KEY_ENV;
    `transcripts=False`: without --mtmcs-save-transcripts and without the DEBUG log file (the
    HTTP client's own DEBUG records show request bodies)."""
    here = sandbox / name
    out = here / "out"
    out.mkdir(parents=True)
    args = [
        "--mtmcs", f"--mtmcs-data={data}", f"--mtmcs-target=openai+{url}:acme/vlm-7b",
        f"--mtmcs-api-key-env={KEY_ENV}", f"--mtmcs-store={here / 'store.sqlite'}",
        f"--mtmcs-report={out / 'report.json'}", f"--mtmcs-markdown={out / 'report.md'}",
        "--mtmcs-retries=1", f"--junitxml={out / 'junit.xml'}", "-rA", "-l", "-v",
    ]
    if transcripts:
        args += ["--mtmcs-save-transcripts", f"--log-file={out / 'pytest.log'}",
                 "--log-file-level=DEBUG", "--log-level=DEBUG"]
    if importlib.util.find_spec("pytest_mtmcs.reporting.html") and importlib.util.find_spec("matplotlib"):
        args.append(f"--mtmcs-html={out / 'report.html'}")
    if importlib.util.find_spec("syrupy"):
        args += ["--mtmcs-snapshot", "--snapshot-update", f"--mtmcs-snapshot-dir={out / 'snapshots'}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "OPENAI_"))}
    env[KEY_ENV] = key
    env["GITHUB_STEP_SUMMARY"] = str(out / "step_summary.md")
    res = subprocess.run([*pytest_command(), *args], cwd=here, capture_output=True, text=True,
                         env=env, timeout=300, check=False)
    return Run(name, res.returncode, res.stdout, res.stderr)


def test_the_key_is_in_no_output(tmp_path: Path) -> None:
    key = make_key()
    data = small_dataset(tmp_path / "ds", 1)
    sandbox = tmp_path / "sandbox"
    runs: list[Run] = []
    echoed = echoes(key)
    assert pieces(key)[0] in echoed.lower().encode()  # the echoes do hold the key, in part

    with MockOpenAIServer(reply=lambda body: f"Sure: {echoed}") as srv:
        runs.append(run_everything_on("ok", sandbox, data, srv.base_url, key))
        ok_calls = srv.calls
    with MockOpenAIServer(faults=FaultPlan.always("http_401", message=echoed)) as srv:
        runs.append(run_everything_on("unauthorized", sandbox, data, srv.base_url, key))
        rejected = srv.calls
    with MockOpenAIServer(faults=FaultPlan.always("http_500", message=echoed)) as srv:
        runs.append(run_everything_on("failing", sandbox, data, srv.base_url, key))
    with MockOpenAIServer() as srv:
        down_url = srv.base_url
    runs.append(run_everything_on("down", sandbox, data, down_url, key))  # the port is closed now

    ok, unauthorized, failing, down = runs
    # the runs did what they were meant to: the server got the key; errors were printed
    assert ok.returncode == 1, ok.stdout[-3000:] + ok.stderr[-3000:]  # the mock never refuses
    assert ok_calls and all(c.headers.get("authorization") == f"Bearer {key}" for c in ok_calls)
    assert rejected and all(c.headers.get("authorization") == f"Bearer {key}" and c.status == 401
                            for c in rejected)
    assert unauthorized.returncode == 4 and failing.returncode == 75 and down.returncode == 75
    assert ("whole [redacted]; cut [redacted]; upper [redacted]; masked [redacted]****[redacted]"
            in unauthorized.stdout), unauthorized.stdout[-3000:]
    assert "answered HTTP 500" in failing.stdout and "whole [redacted]" in failing.stdout
    assert f"could not reach {down_url}" in down.stdout, down.stdout[-3000:]
    report = (sandbox / "ok" / "out" / "report.json").read_text()
    assert "Sure: whole [redacted]; cut [redacted]" in report  # the replies, kept redacted
    written = {p.relative_to(sandbox).as_posix() for p in sandbox.rglob("*") if p.is_file()}
    for name in ("ok", "unauthorized", "failing", "down"):
        assert {f"{name}/store.sqlite", f"{name}/out/report.json", f"{name}/out/report.md",
                f"{name}/out/junit.xml", f"{name}/out/pytest.log",
                f"{name}/out/step_summary.md"} <= written, sorted(written)
    assert "ok/out/report.html" in written or not importlib.util.find_spec("matplotlib")
    assert any("/snapshots/" in w for w in written) or not importlib.util.find_spec("syrupy")

    texts = {f"{r.name} {stream}": getattr(r, stream) for r in runs for stream in ("stdout", "stderr")}
    assert leaks(key, sandbox, texts) == []


def test_a_long_key_echoed_by_the_server_is_not_leaked_in_part(tmp_path: Path) -> None:
    """Tokens of self-hosted gateways can be long (JWTs of 500+ characters); a server that
    echoes one must not get a piece of it into the output either."""
    key = make_key(600)
    data = small_dataset(tmp_path / "ds", 1)
    sandbox = tmp_path / "sandbox"
    with MockOpenAIServer(faults=FaultPlan.always("http_401", message=echoes(key))) as srv:
        run = run_everything_on("unauthorized", sandbox, data, srv.base_url, key)
        assert srv.calls and all(c.headers.get("authorization") == f"Bearer {key}" for c in srv.calls)
    assert "HTTP 401" in run.stdout and run.returncode == 4, run.stdout[-3000:]
    assert leaks(key, sandbox, {"stdout": run.stdout, "stderr": run.stderr}) == []


def test_the_search_finds_a_planted_key(tmp_path: Path) -> None:
    """The search above can fail: it finds the key in a text file, inside a sqlite database,
    and a truncated piece of it in captured output."""
    key = make_key()
    (tmp_path / "deep" / "er").mkdir(parents=True)
    (tmp_path / "deep" / "er" / "notes.txt").write_text(f"token={key}\n")
    (tmp_path / "clean.txt").write_text("nothing to see\n")
    db = sqlite3.connect(tmp_path / "cache.sqlite")
    db.execute("CREATE TABLE t (v TEXT)")
    db.execute("INSERT INTO t VALUES (?)", (f'{{"error": "bad key {key}"}}',))
    db.commit()
    db.close()
    found = leaks(key, tmp_path, {"stdout": f"...{key[:30]}...", "stderr": "clean",
                                  "upper": key[5:5 + WINDOW].upper()})
    assert [f.split(" ", 1)[0] for f in found] == ["cache.sqlite", "deep/er/notes.txt", "stdout",
                                                   "upper"]
    assert leaks(key, tmp_path / "deep" / "er", {}) != []
    (tmp_path / "deep" / "er" / "notes.txt").unlink()
    (tmp_path / "cache.sqlite").unlink()
    assert leaks(key, tmp_path, {"stdout": key[: WINDOW - 1]}) == []  # a piece shorter than a window


def test_transcripts_are_written_only_when_asked(tmp_path: Path) -> None:
    """Without --mtmcs-save-transcripts no reply and no user turn reaches a report, snapshot,
    JUnit file or the terminal (the store keeps replies: it is the cache); with it they do."""
    data = small_dataset(tmp_path / "ds", 1)
    sandbox = tmp_path / "sandbox"
    reply = "REPLY-SENTINEL-" + secrets.token_hex(8)
    turns = ["MM0 r1 turn", "MM0 unsafe_r3 turn", "UM0 r2 turn"]  # see _data.dialogue
    with MockOpenAIServer(reply=lambda body: reply) as srv:
        quiet = run_everything_on("without", sandbox, data, srv.base_url, make_key(),
                                  transcripts=False)
        loud = run_everything_on("with", sandbox, data, srv.base_url, make_key())
    assert srv.calls and quiet.returncode == loud.returncode == 1  # the mock never refuses

    def holders(name: str, run: Run, needle: str) -> list[str]:
        files = [p for p in (sandbox / name).rglob("*")
                 if p.is_file() and not p.name.startswith("store.sqlite")]
        found = [p.relative_to(sandbox).as_posix() for p in files if needle.encode() in p.read_bytes()]
        return found + [s for s in ("stdout", "stderr") if needle in getattr(run, s)]

    for needle in (reply, *turns):
        assert holders("without", quiet, needle) == [], needle
        assert "with/out/report.json" in holders("with", loud, needle), needle
