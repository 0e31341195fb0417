"""Hostile model servers and target options: every case is a real `pytest --mtmcs` run (the
console script, a subprocess) against a real `MockOpenAIServer` on 127.0.0.1 that answers as a
broken, misconfigured or malicious server would.

Each row of the table asserts the exit code (4 for bad configuration, including a server that
refuses the run's key or model; 75 for a server that failed; 1 for a verdict when the server's
answer is usable), that the output names the server (its URL) or the option to fix, that no
traceback is printed, and that what the store held before the run is still there; a run that
stops before its first call leaves the store byte for byte unchanged and sends no request.
Where the server's answer carries the API key (whole, less its last character, upper-cased or
masked in the middle) or terminal escapes, no fragment of the key and no raw control character
reaches the output.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from _data import small_dataset
from _runs import pytest_command

from pytest_mtmcs.testing import FaultKind, FaultPlan, MockOpenAIServer, refusing_url

KEY_ENV = "MTMCS_HOSTILE_KEY"
KEY = "sk-hostile-0123456789abcdefghijklmnopqrstuv"
ESC = "\x1b]0;pwned\x07\x1b[2J\x1b[1A\x1b]8;;http://evil.example/\x07click\x1b]8;;\x07"
"""Set the window title, clear the screen, move up a line, forge a hyperlink."""
REPLY = "I'm sorry, but I can't help with that."


@dataclass(frozen=True)
class ServerCase:
    """One hostile run: how the server behaves, the target spec, extra options, and what must
    come of it. `{url}` in `spec`, `expect` and `args` is the server's base URL."""

    exit: int
    expect: tuple[str, ...]
    plan: FaultPlan | None = None
    reply: Callable[[dict[str, Any]], str] | None = None
    spec: str = "openai+{url}:acme/vlm"
    args: tuple[str, ...] = ()
    key: str | None = KEY
    """The value of KEY_ENV in the run's environment (None: unset)."""
    before_call: bool = False
    """The run must stop before its first request: the store's bytes and the server's log stay
    as they were."""
    inert: bool = False
    """The server's text holds escapes: none may reach the output raw."""
    no_key: bool = True
    """No 12-character fragment of KEY may reach the output."""
    refused_port: bool = False
    """Point `{url}` at a port that refuses connections instead of the mock."""
    extra: dict[str, str] = field(default_factory=dict)
    max_store_bytes: int | None = None
    """The store may not grow past this (a runaway reply is not kept whole)."""


def always(kind: FaultKind, **kwargs: Any) -> FaultPlan:
    return FaultPlan.always(kind, **kwargs)


MASKED = KEY[:14] + "****" + KEY[-14:]
CASES: dict[str, ServerCase] = {
    # ---------------------------------------------------------------- the key or the model refused
    "401": ServerCase(4, ("{url} refused the key in $" + KEY_ENV, "HTTP 401", "--mtmcs-api-key-env"),
                      always("http_401")),
    "403": ServerCase(4, ("{url} refused the key in $" + KEY_ENV, "HTTP 403"), always("http_403")),
    "404 model not found": ServerCase(4, ("{url} answered HTTP 404 for model 'acme/vlm'",
                                          "does not exist", "--mtmcs-target"), always("http_404")),
    "404 wrong path": ServerCase(4, ("answered HTTP 404", "Check the model name and the base URL"),
                                 spec="openai+{url}/nope:acme/vlm"),
    "401 without a key": ServerCase(4, ("refused no API key ($OPENAI_API_KEY is not set)",),
                                    always("http_401"), args=("--mtmcs-api-key-env=OPENAI_API_KEY",),
                                    key=None),
    # ---------------------------------------------------------------- answers that are not replies
    "HTML 200": ServerCase(75, ("{url} answered with an HTML page titled 'Sign in - Model Gateway'",
                                "not a chat completion", "(failed attempts: html "), always("html")),
    "null content": ServerCase(75, ("{url} answered with a chat completion whose message content "
                                    "is null", "(failed attempts: null_content "),
                               always("null_content")),
    "empty choices": ServerCase(75, ("{url} answered with a chat completion without choices",),
                                always("empty_choices")),
    "truncated JSON": ServerCase(75, ("{url} answered with a body that is not valid JSON",),
                                 always("malformed")),
    "non-UTF-8 body": ServerCase(75, ("{url} answered with a body that is not UTF-8 text",),
                                 always("non_utf8")),
    "wrong content type": ServerCase(1, (", 0 failed",), always("text_plain")),  # JSON is JSON
    "10 MB reply": ServerCase(1, ("replies cut at the reply cap",), always("oversized"),
                              max_store_bytes=10 * 1024 * 1024),  # one whole reply is 10 MB
    "gzip bomb": ServerCase(1, ("replies cut at the reply cap",),
                            always("gzip_bomb", oversized_bytes=20 * 1024 * 1024),
                            max_store_bytes=10 * 1024 * 1024),
    # ---------------------------------------------------------------- failures of the transport
    "slow drip": ServerCase(75, ("{url} did not answer within 0.5 s",), always("drip", drip_s=0.05),
                            args=("--mtmcs-timeout=0.5",)),
    "hang": ServerCase(75, ("{url} did not answer within 0.5 s",), always("hang", hang_s=30),
                       args=("--mtmcs-timeout=0.5",)),
    "connection reset": ServerCase(75, ("could not reach {url}",), always("reset")),
    "connection dropped": ServerCase(75, ("could not reach {url}",), always("drop")),
    "connection refused": ServerCase(75, ("could not reach {url}",), refused_port=True),
    "always 503": ServerCase(75, ("{url} answered HTTP 503", "after 1 retries"), always("http_503")),
    "always 429": ServerCase(75, ("{url} answered HTTP 429",), always("http_429", retry_after_s=0)),
    "400": ServerCase(75, ("{url} answered HTTP 400", "not retried"), always("http_400")),
    # ---------------------------------------------------------------- hostile text in answers
    "ANSI in an error body": ServerCase(75, ("{url} answered HTTP 500", "\\x1b]0;pwned"),
                                        always("http_500", message=ESC), inert=True),
    "ANSI in a 401": ServerCase(4, ("refused the key", "\\x1b[2J"), always("http_401", message=ESC),
                                inert=True),
    "ANSI and markup in replies": ServerCase(
        1, (", 0 failed",), reply=lambda body: f"Sure. {ESC} <details open> ![x](http://evil.example/x.png)",
        args=("--mtmcs-save-transcripts", "-rA"), inert=True),
    "key echoed whole in a 401": ServerCase(4, ("Incorrect API key provided: [redacted]",),
                                            always("http_401")),
    "key less its last character in a 401": ServerCase(
        4, ("your key [redacted] is wrong",), always("http_401", message="your key {key} is wrong"
                                                     .replace("{key}", KEY[:-1]))),
    "key upper-cased in a 500": ServerCase(75, ("HTTP 500", "[redacted]"),
                                           always("http_500", message=f"bad key {KEY.upper()}")),
    "key masked in a 400": ServerCase(75, ("HTTP 400", "[redacted]"),
                                      always("http_400", message=f"key {MASKED} rejected")),
    "key echoed in a 200 reply": ServerCase(1, (", 0 failed",), reply=lambda body: f"Your key is {KEY}.",
                                            args=("--mtmcs-save-transcripts", "-rA")),
    # ---------------------------------------------------------------- options a tired user gets wrong
    "unset --mtmcs-api-key-env": ServerCase(4, ("--mtmcs-api-key-env names " + KEY_ENV,
                                                f"{KEY_ENV} is not set"), key=None,
                                            before_call=True),
    "spec without a model": ServerCase(4, ("names no model", "openai+http://127.0.0.1:8000/v1:"),
                                       spec="openai+{url}", before_call=True),
    "replicas without a model": ServerCase(4, ("names no model",), spec="openai+{url}|{url}2",
                                           before_call=True),
    "a port out of range": ServerCase(4, ("is not a base URL", "Port out of range"),
                                      spec="openai+http://127.0.0.1:99999/v1:m", before_call=True),
    "IPv6 literal": ServerCase(75, ("could not reach http://[::1]:",),
                               spec="openai+http://[::1]:{port}/v1:acme/vlm"),
}


# ------------------------------------------------------------------------------ the store before
def tables(path: Path) -> dict[str, set[tuple[Any, ...]]]:
    """Every row of every table of a sqlite file."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {n: set(db.execute(f'SELECT * FROM "{n}"')) for n in names}
    finally:
        db.close()


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(dataset, a store holding an earlier run's replies)."""
    root = tmp_path_factory.mktemp("seed")
    data = small_dataset(root / "ds", 1)
    with MockOpenAIServer(reply=lambda body: REPLY, model_name="seed") as srv:
        res = run(root, data, f"openai+{srv.base_url}:acme/seed", (), KEY)
    assert res.returncode in (0, 1), res.stdout[-3000:] + res.stderr[-3000:]
    assert sum(len(rows) for rows in tables(root / "store.sqlite").values()) > 0
    return data, root / "store.sqlite"


def run(here: Path, data: Path, spec: str, args: tuple[str, ...], key: str | None,
        extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    argv = [*pytest_command(), "--mtmcs", f"--mtmcs-data={data}", f"--mtmcs-target={spec}",
            f"--mtmcs-api-key-env={KEY_ENV}", f"--mtmcs-store={here / 'store.sqlite'}",
            f"--mtmcs-report={here / 'report.json'}", "--mtmcs-retries=1", "-p", "no:cacheprovider",
            *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "OPENAI_", KEY_ENV))}
    if key is not None:
        env[KEY_ENV] = key
    env.update(extra or {})
    return subprocess.run(argv, cwd=here, capture_output=True, text=True, env=env, timeout=600,
                          check=False)


@contextmanager
def server_for(case: ServerCase) -> Iterator[tuple[str, MockOpenAIServer | None]]:
    if case.refused_port:
        with refusing_url() as url:
            yield url, None
        return
    with MockOpenAIServer(reply=case.reply, faults=case.plan) as srv:
        yield srv.base_url, srv


def fragments(key: str, n: int = 12) -> list[str]:
    """Every `n`-character run of the key, lower-cased."""
    return [key[i:i + n].lower() for i in range(len(key) - n + 1)]


@pytest.mark.parametrize("name", list(CASES))
def test_a_hostile_server(name: str, seeded: tuple[Path, Path], tmp_path: Path) -> None:
    case = CASES[name]
    data, seed_store = seeded
    for f in seed_store.parent.glob("store.sqlite*"):
        shutil.copy(f, tmp_path / f.name)
    store = tmp_path / "store.sqlite"
    before_bytes, before_rows = store.read_bytes(), tables(store)
    with server_for(case) as (url, srv):
        port = url.split(":")[2].split("/")[0]
        fill = lambda text: text.replace("{url}", url).replace("{port}", port)  # noqa: E731
        res = run(tmp_path, data, fill(case.spec), tuple(fill(a) for a in case.args), case.key,
                  case.extra)
        calls = srv.calls if srv is not None else []
    out = res.stdout + res.stderr
    shown = out[-4000:]
    assert res.returncode == case.exit, shown
    for expected in case.expect:
        assert fill(expected) in out, f"{fill(expected)!r} not in:\n{shown}"
    assert "Traceback" not in out and "INTERNALERROR" not in out, shown
    after_rows = tables(store)
    for table, rows in before_rows.items():  # nothing already stored is lost
        assert rows <= after_rows.get(table, set()), table
    if case.max_store_bytes is not None:
        assert sum(f.stat().st_size for f in tmp_path.glob("store.sqlite*")) < case.max_store_bytes
    if case.before_call:
        assert store.read_bytes() == before_bytes and calls == []
    if case.inert:
        assert "\x1b" not in out and "\x07" not in out, shown
        for file in tmp_path.glob("report.*"):
            assert "\x1b" not in file.read_text(encoding="utf-8")
    if case.no_key:
        lowered = out.lower()
        assert not [f for f in fragments(KEY) if f in lowered], shown
        blob = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()).lower()
        assert not [f for f in fragments(KEY) if f.encode() in blob]


def test_the_table_is_big_enough_and_each_check_can_fail() -> None:
    assert len(CASES) >= 25
    assert [f for f in fragments(KEY) if f in f"x {KEY[3:15].upper()} y".lower()]
