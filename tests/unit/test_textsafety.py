"""Text from servers and files: secrets redacted in part, terminals and Markdown left inert."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pytest_mtmcs.textsafety import (
    REDACTED,
    for_markdown,
    for_terminal,
    forget_secrets,
    redact,
    register_secret,
)

KEY = "sk-proj-7f3KQ9vLm2XzR8tWq4Yb"


@pytest.fixture(autouse=True)
def _key() -> Iterator[None]:
    forget_secrets()
    register_secret(KEY)
    yield
    forget_secrets()


@pytest.mark.parametrize("echo", [
    KEY,
    KEY[:-1],                                  # the key less its last character
    KEY.upper(),                               # case changed
    KEY[:12] + "****" + KEY[-4:],              # masked in the middle (the head still leaks)
    "****" + KEY[6:],                          # masked at the start
    KEY[3:15],                                 # exactly one 12-character run from inside
])
def test_every_12_character_run_of_the_key_is_redacted(echo: str) -> None:
    text = f'401 {{"error": "Incorrect API key provided: {echo}. Check it."}}'
    out = redact(text)
    lowered = out.lower()
    assert REDACTED in out
    assert not any(KEY[i:i + 12].lower() in lowered for i in range(len(KEY) - 11))
    assert out.startswith('401 {"error": "Incorrect API key provided: ') and out.endswith('. Check it."}')


def test_short_runs_and_other_text_are_kept() -> None:
    text = f"id {KEY[:11]} and sk-proj are fine; so is a normal sentence."
    assert redact(text) == text


def test_the_key_twice_and_overlapping_runs_merge() -> None:
    assert redact(f"{KEY}{KEY}") == REDACTED
    assert redact(f"a {KEY} b {KEY.upper()} c") == f"a {REDACTED} b {REDACTED} c"


def test_nothing_registered_changes_nothing() -> None:
    forget_secrets()
    assert redact(KEY) == KEY


@pytest.mark.parametrize(("raw", "shown"), [
    ("\x1b[2J\x1b[H", "\\x1b[2J\\x1b[H"),                       # clear screen
    ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),                   # window title
    ("\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\", "\\x1b]8;;http://evil\\x1b\\link\\x1b]8;;\\x1b\\"),
    ("ok\rFAKE PASS", "ok\\x0dFAKE PASS"),                         # carriage return overwrite
    ("\x9b31m", "\\x9b31m"),                                      # C1 CSI
    ("abc\u202edef", "abc\\u202edef"),                            # bidi override
    ("line one\n\tline two", "line one\n\tline two"),             # kept
])
def test_control_characters_are_shown_not_obeyed(raw: str, shown: str) -> None:
    assert for_terminal(raw) == shown


def test_the_terminal_form_is_redacted_too() -> None:
    assert KEY not in for_terminal(f"\x1b[31m{KEY}")


@pytest.mark.parametrize("raw", [
    "![x](http://127.0.0.1/track.png)",
    "[click](javascript:alert(1))",
    "<details open><summary>x</summary></details>",
    "<img src=x onerror=alert(1)>",
    "a | b | c",
    "# heading",
    "**bold** _it_ `code`",
    "- item\n1. item",
])
def test_markdown_markup_is_inert(raw: str) -> None:
    out = for_markdown(raw)
    assert "<" not in out and ">" not in out
    for mark in ("](", "![", "**", "`", "|", "# "):
        assert mark not in out.replace("\\" + mark[0], "")
    assert "\n" not in out


def test_markdown_keeps_ordinary_text_readable() -> None:
    assert for_markdown("Refused at R3, score 4.5 - fine.") == "Refused at R3, score 4.5 - fine."
