"""Text from a model server cannot act in any output of a run.

A server sends terminal escapes (set the window title, clear the screen, move the cursor up,
forge a hyperlink), a carriage return, a bidirectional override, and Markdown and HTML markup
(an image, a link, `<details open>`, `<img onerror>`, `<script>`, a table cell break, a
heading): once in an error body (no flag needed to show it) and once in its replies (shown with
`--mtmcs-save-transcripts`). Real `pytest --mtmcs` runs write every output: the terminal, the
JSON, Markdown and HTML reports, the GitHub job summary and JUnit XML. None of them may hold a
raw control character or live markup from the server, and each must show that the text
arrived (neutralised), so the test fails if an output silently drops it as well as if it
passes it on.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from _data import small_dataset
from _runs import pytest_command

from pytest_mtmcs.testing import FaultPlan, MockOpenAIServer

HOSTILE = ("\x1b]0;pwned\x07\x1b[2J\x1b[1A\r\x1b]8;;http://evil.example/\x07link\x1b]8;;\x07 "
           "\u202eevil\u202c ![x](http://evil.example/x.png) <details open><summary>s</summary> "
           "<img src=x onerror=alert(1)> <script>alert(1)</script> [click](http://evil.example) "
           "| cell |\n# heading")
CONTROLS = ("\x1b", "\x07", "\x9b", "\u202e", "\r")
HTML_MARKUP = ("<details open>", "<img", "<script")
MARKDOWN = ("![x](", "[click](", "\n# heading", "| cell |")


def run(here: Path, data: Path, url: str, *args: str) -> tuple[int, dict[str, str]]:
    """`pytest --mtmcs` with every output on; (exit code, output name -> its text)."""
    here.mkdir(parents=True)
    argv = [*pytest_command(), "--mtmcs", f"--mtmcs-data={data}",
            f"--mtmcs-target=openai+{url}:acme/vlm", f"--mtmcs-store={here / 'store.sqlite'}",
            f"--mtmcs-report={here / 'report.json'}", f"--mtmcs-markdown={here / 'report.md'}",
            f"--junitxml={here / 'junit.xml'}", "--mtmcs-retries=0", "-rA", "-p", "no:cacheprovider",
            *args]
    html = importlib.util.find_spec("matplotlib") is not None
    if html:
        argv.append(f"--mtmcs-html={here / 'report.html'}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "OPENAI_"))}
    env["GITHUB_STEP_SUMMARY"] = str(here / "summary.md")
    res = subprocess.run(argv, cwd=here, capture_output=True, text=True, env=env, timeout=600,
                         check=False)
    outputs = {"terminal": res.stdout + res.stderr}
    for name in ("report.json", "report.md", "summary.md", "junit.xml",
                 *(("report.html",) if html else ())):
        outputs[name] = (here / name).read_text(encoding="utf-8")
    ET.fromstring(outputs["junit.xml"])  # still well-formed XML
    return res.returncode, outputs


def check_inert(outputs: dict[str, str], shown_in: tuple[str, ...]) -> None:
    """No raw control character anywhere; no live markup in the Markdown, the job summary and
    the HTML; the payload visible (neutralised) in each output of `shown_in`."""
    for name, text in outputs.items():
        raw = [c for c in CONTROLS if c in text]
        assert not raw, f"{name} holds raw {raw!r}"
        live = [m for m in (*HTML_MARKUP, *(MARKDOWN if name.endswith(".md") else ()))
                if m in text and name.endswith((".md", ".html"))]
        assert not live, f"{name} holds live markup {live!r}"
    for name in shown_in:
        assert "pwned" in outputs[name] and "evil.example" in outputs[name], name


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_dataset(tmp_path_factory.mktemp("ds"), 1)


def test_an_error_body_cannot_act_anywhere(data: Path, tmp_path: Path) -> None:
    with MockOpenAIServer(faults=FaultPlan.always("http_500", message=HOSTILE)) as srv:
        code, outputs = run(tmp_path / "run", data, srv.base_url)
    assert code == 75, outputs["terminal"][-3000:]
    assert "\\x1b]0;pwned\\x07" in outputs["terminal"]  # shown, as visible escapes
    check_inert(outputs, tuple(outputs))


@pytest.mark.parametrize("transcripts", [True, False], ids=["with-transcripts", "without"])
def test_replies_cannot_act_anywhere(data: Path, tmp_path: Path, transcripts: bool) -> None:
    flags = ("--mtmcs-save-transcripts",) if transcripts else ()
    with MockOpenAIServer(reply=lambda body: HOSTILE) as srv:
        code, outputs = run(tmp_path / "run", data, srv.base_url, *flags)
    assert code == 1, outputs["terminal"][-3000:]  # the mock complies: unsafe dialogues fail
    if transcripts:
        shown = ("terminal", "report.json", "junit.xml",
                 *(("report.html",) if "report.html" in outputs else ()))
        check_inert(outputs, shown)
    else:
        check_inert(outputs, ())
        assert all("pwned" not in text for text in outputs.values())  # not kept without the flag


def test_the_checks_can_fail() -> None:
    with pytest.raises(AssertionError, match="raw"):
        check_inert({"terminal": "a \x1b[2J b"}, ())
    with pytest.raises(AssertionError, match="live markup"):
        check_inert({"report.md": "see ![x](http://evil.example/x.png)"}, ())
    with pytest.raises(AssertionError, match=r"report\.md"):
        check_inert({"report.md": "nothing here"}, ("report.md",))
