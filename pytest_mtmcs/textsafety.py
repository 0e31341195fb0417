"""Text from outside (model servers, data files) made safe to keep and to show.

Three guarantees, used wherever such text is stored, printed or written into a report:

- `redact(text)`: no secret the run knows of survives, not even in part. Every run of 12 or
  more characters of a registered secret (an API key) is replaced, whatever its letter case,
  so a server echoing the key less its last character, upper-cased, or with its middle masked
  (`sk-proj-abcdefgh****wxyz`) still leaks nothing. Secrets are registered by whoever reads them
  (`register_secret`), once per process; the registry is process-wide on purpose, because a key
  read by one target must be hidden in the text of every other part of the run.
- `for_terminal(text)`: control characters cannot act on a terminal or a CI log. ESC, the other
  C0 and C1 controls, DEL and the bidirectional overrides are shown as visible escapes
  (`\\x1b`, `\\u202e`); newlines and tabs stay.
- `for_markdown(text)`: text cannot become Markdown or HTML markup (links, images, `<details>`,
  tables, emphasis, headings) when it is placed in a Markdown report or a job summary.
"""

from __future__ import annotations

import re
import threading
from html import escape

REDACTED = "[redacted]"
FRAGMENT = 12
"""Shortest run of a secret that is redacted (shorter runs are too common to be evidence)."""

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None


def register_secret(value: str | None) -> None:
    """Hide `value` (and every run of `FRAGMENT` or more of its characters) from now on.
    Values shorter than `FRAGMENT` are hidden only whole."""
    global _pattern
    if not value or not value.strip():
        return
    with _lock:
        if value in _secrets:
            return
        _secrets.add(value)
        _pattern = _compile(_secrets)


def forget_secrets() -> None:
    """Drop every registered secret (tests; a process never needs it)."""
    global _pattern
    with _lock:
        _secrets.clear()
        _pattern = None


def _compile(secrets: set[str]) -> re.Pattern[str]:
    pieces: set[str] = set()
    for s in secrets:
        if len(s) <= FRAGMENT:
            pieces.add(s)
        else:
            pieces.update(s[i:i + FRAGMENT] for i in range(len(s) - FRAGMENT + 1))
    ordered = sorted(pieces, key=len, reverse=True)
    return re.compile("|".join(re.escape(p) for p in ordered), re.IGNORECASE)


def redact(text: str) -> str:
    """`text` with every registered secret, and every 12-character run of one, replaced.
    Overlapping or touching matches merge into one `[redacted]`, so the length of what was
    hidden is not shown either."""
    pattern = _pattern
    if pattern is None or not text:
        return text
    spans: list[list[int]] = []
    pos = 0
    while True:
        m = pattern.search(text, pos)
        if m is None:
            break
        start, end = m.span()
        if spans and start <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], end)
        else:
            spans.append([start, end])
        pos = start + 1  # overlapping runs: a secret longer than one fragment is found whole
    if not spans:
        return text
    out, last = [], 0
    for start, end in spans:
        out.append(text[last:start])
        out.append(REDACTED)
        last = end
    out.append(text[last:])
    return "".join(out)


# C0 controls but tab and newline, DEL, C1 controls, and the bidirectional overrides/isolates
# that reorder what a reader sees (Trojan Source).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _visible(m: re.Match[str]) -> str:
    code = ord(m.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def for_terminal(text: str) -> str:
    """`text` redacted, with every control character shown as a visible escape (newlines and
    tabs kept; a carriage return is shown too, so it cannot overwrite a line)."""
    return _CONTROL.sub(_visible, redact(text))


_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#!|~>])")
_LIST_START = re.compile(r"^(\s*)([-+]|\d+\.)(?=\s|$)", re.MULTILINE)


def for_markdown(text: str, *, inline: bool = True) -> str:
    """`text` redacted, control characters escaped, and made inert in Markdown: HTML is escaped
    (`<details open>` shows as text), Markdown punctuation is backslash-escaped (no link, image,
    emphasis, heading or table cell break), and with `inline` newlines become spaces so one
    value cannot start a new block."""
    safe = escape(for_terminal(text), quote=False)
    safe = _MARKDOWN.sub(r"\\\1", safe)
    safe = _LIST_START.sub(lambda m: m.group(1) + "\\" + m.group(2), safe)
    if inline:
        safe = " ".join(safe.split())
    return safe
