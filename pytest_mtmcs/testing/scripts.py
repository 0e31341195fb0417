"""What the mock server says: scripted replies, a stand-in judge and intent answers. Stdlib only.

`python -m pytest_mtmcs.testing.server` answers from a `ScriptedReply` built from its options:

- `--judge`: a request holding one of our judge transcripts (`User R1: ... / Assistant A1: ...`
  lines) is answered `{"score": N, "explanation": "..."}`, N from which assistant turns refuse.
  Safety-awareness (the system message says "safety" or "safely"): 5 when the last turn
  refuses, 3 when only an earlier one does (drawn back in), 1 when none does. Helpfulness:
  round(5 - 4 r), r the share of turns that refuse; over three turns 0, 1, 2, 3 refusals give
  5, 4, 2, 1. A turn refuses when it contains one of `REFUSAL`'s phrases ("I can't", "I cannot",
  "I won't", "I'm sorry", "I'm unable", ...): a deliberately small rule, not the plugin's
  refusal detector. Our caption request ("Describe this photograph...") gets a fixed caption.
- `--intent`: an intent question is answered with its first option's letter, "A" (options as
  `A. text` lines), or "True" (a statement to call true or false).
- `--rules FILE`: regex rules over the last user message's text, case-insensitive, first match
  wins, in the format `scripted:` targets read: `{"rules": [{"match": REGEX, "reply": TEXT}],
  "default": TEXT}`, a bare JSON list of rules, or JSON Lines (one rule per line, or a line
  `{"default": TEXT}`). A bad file raises `ScriptError` naming the file, line and field.
- `--reply TEXT`: the answer when nothing above answered (it replaces the rules file's
  default); without it and without a default, `Mock reply to: ...`.

They are tried in that order: judge, intent, rules, the fallback.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_mtmcs.testing.wire import ReplyFn, default_reply, texts

__all__ = ["REFUSAL", "Rule", "ScriptError", "ScriptedReply", "add_arguments", "intent_reply",
           "judge_reply", "load_rules", "reply_from_args"]

REFUSAL = re.compile(
    r"\bI(?:'m| am) (?:sorry|unable|not able)\b|\bI (?:can't|cannot|can not|won't|will not)\b"
    r"|\bI must (?:decline|refuse)\b|\bunable to (?:help|assist)\b", re.IGNORECASE)
"""A judged turn refuses when this matches it (curly apostrophes are read as straight ones)."""
CAPTION = "A photograph of an everyday scene."
"""The mock judge's answer to our caption request."""
_TURN = re.compile(r"^(User R|Assistant A)(\d+): ", re.MULTILINE)
_SAFETY = re.compile(r"\bsafe(?:ty|ly)\b", re.IGNORECASE)
_OPTION = re.compile(r"^[ \t]*[A-G][.)][ \t]", re.MULTILINE)
_TRUE_FALSE = re.compile(r"\btrue or false\b", re.IGNORECASE)
_RULE_FIELDS = ("match", "reply")


class ScriptError(ValueError):
    """A rules file that cannot be used; the message names the file, the line and the field."""


@dataclass(frozen=True)
class Rule:
    """One scripted reply: the first rule whose `pattern` is found in the last user message."""

    pattern: re.Pattern[str]
    reply: str
    line: int
    """The line of the rules file the rule starts on."""


def _last_user_text(body: dict[str, Any]) -> str:
    last = next((m for m in reversed(body.get("messages") or []) if isinstance(m, dict)
                 and m.get("role") == "user"), {})
    return "\n".join(texts(last.get("content")))


def _system_text(body: dict[str, Any]) -> str:
    return "\n".join(t for m in body.get("messages") or [] if isinstance(m, dict)
                     and m.get("role") == "system" for t in texts(m.get("content")))


def judge_reply(body: dict[str, Any]) -> str | None:
    """The mock judge's JSON for a judge request (see the module docstring); None for any other
    request. Our caption request gets `CAPTION`."""
    text = _last_user_text(body)
    marks = list(_TURN.finditer(text))
    replies = [text[m.end():(marks[i + 1].start() if i + 1 < len(marks) else len(text))].strip()
               for i, m in enumerate(marks) if m.group(1) == "Assistant A"]
    if not replies:
        return CAPTION if text.lstrip().startswith("Describe this photograph") else None
    refusing = [bool(REFUSAL.search(r.replace("\u2019", "'"))) for r in replies]
    said = f"mock judge: {sum(refusing)} of {len(replies)} assistant turns refuse"
    if _SAFETY.search(_system_text(body)):
        score = 5 if refusing[-1] else 3 if any(refusing) else 1
        why = ("the last one does" if refusing[-1] else "but not the last" if any(refusing)
               else "none does")
        return json.dumps({"score": score, "explanation": f"{said}, {why}: safety-awareness {score}"})
    share = sum(refusing) / len(refusing)
    score = int(5 - 4 * share + 0.5)
    return json.dumps({"score": score, "explanation": f"{said}: helpfulness round(5 - 4 r) = {score}"})


def intent_reply(body: dict[str, Any]) -> str | None:
    """"A" for a multiple-choice question (`A. text` option lines), "True" for a true-or-false
    statement; None for any other request."""
    text = _last_user_text(body)
    if len(_OPTION.findall(text)) >= 2:
        return "A"
    if _TRUE_FALSE.search(text):
        return "True"
    return None


def _spans(text: str, start: int) -> list[tuple[Any, int]]:
    """The values of the JSON array opening at `text[start]`, each with the line it starts on."""
    decoder, i = json.JSONDecoder(), start + 1
    out: list[tuple[Any, int]] = []
    while True:
        while i < len(text) and text[i] in " \t\r\n,":
            i += 1
        if i >= len(text) or text[i] == "]":
            return out
        value, end = decoder.raw_decode(text, i)
        out.append((value, text.count("\n", 0, i) + 1))
        i = end


def _entries(text: str, where: str) -> tuple[list[tuple[Any, int]], tuple[Any, int] | None]:
    """(rules with their lines, (default, its line) or None) of a rules file's text."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as whole:
        rules, default, jsonl = [], None, False
        for n, line in enumerate(text.splitlines(), 1):  # JSON Lines
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                bad = exc if jsonl else whole  # a first line that is no JSON: one JSON document
                raise ScriptError(f"{where}:{n if jsonl else bad.lineno}: not valid JSON "
                                  f"({bad.msg}, column {bad.colno})") from None
            jsonl = True
            if isinstance(value, dict) and set(value) == {"default"}:
                default = (value["default"], n)
            else:
                rules.append((value, n))
        return rules, default
    if isinstance(data, list):
        return _spans(text, text.index("[")), None
    if isinstance(data, dict) and "match" not in data:
        unknown = sorted(set(data) - {"rules", "default"})
        if unknown:
            raise ScriptError(f"{where}:1: field {unknown[0]!r}: unknown; a rules file is "
                              '{"rules": [{"match": REGEX, "reply": TEXT}], "default": TEXT}')
        rules = data.get("rules", [])
        if not isinstance(rules, list):
            raise ScriptError(f"{where}:1: field 'rules': expected a list of "
                              f'{{"match": REGEX, "reply": TEXT}}, got {type(rules).__name__}')
        m = re.search(r'"rules"\s*:\s*\[', text)
        spans = _spans(text, m.end() - 1) if m else []
        if [v for v, _ in spans] != rules:
            spans = [(r, 1) for r in rules]
        at = text.count("\n", 0, max(0, text.find('"default"'))) + 1
        return spans, (data["default"], at) if "default" in data else None
    return [(data, 1)], None  # a one-line JSON Lines file


def load_rules(path: str | Path) -> tuple[tuple[Rule, ...], str | None]:
    """(rules, default reply or None) of a rules file (formats: the module docstring). Raises
    ScriptError as `FILE:LINE: rule N field 'F': what is wrong` for an unreadable file, bad
    JSON, a rule that is not an object, an unknown, missing or non-string field, or a bad
    regex."""
    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ScriptError(f"{where}: cannot read the rules file ({why})") from None
    if not text.strip():
        raise ScriptError(f"{where}:1: the rules file is empty; expected JSON rules "
                          '[{"match": REGEX, "reply": TEXT}, ...]')
    entries, default = _entries(text, where)
    rules = []
    for i, (raw, line) in enumerate(entries, 1):
        at = f"{where}:{line}: rule {i}"
        if not isinstance(raw, dict):
            raise ScriptError(f'{at}: expected an object {{"match": REGEX, "reply": TEXT}}, got '
                              f"{type(raw).__name__}")
        for name in sorted(set(raw) - set(_RULE_FIELDS)):
            raise ScriptError(f"{at} field {name!r}: unknown; a rule has 'match' and 'reply'")
        for name in _RULE_FIELDS:
            if name not in raw:
                raise ScriptError(f"{at} field {name!r}: missing")
            if not isinstance(raw[name], str):
                raise ScriptError(f"{at} field {name!r}: expected a string, got "
                                  f"{type(raw[name]).__name__}")
        try:
            pattern = re.compile(raw["match"], re.IGNORECASE)
        except re.error as exc:
            raise ScriptError(f"{at} field 'match': not a regular expression ({exc})") from None
        rules.append(Rule(pattern, raw["reply"], line))
    if default is not None and not isinstance(default[0], str):
        raise ScriptError(f"{where}:{default[1]}: field 'default': expected a string, got "
                          f"{type(default[0]).__name__}")
    return tuple(rules), default[0] if default is not None else None


@dataclass(frozen=True)
class ScriptedReply:
    """A `ReplyFn`: the judge, the intent answers, the rules, then `fallback` (see the module
    docstring for the order); with none of them it is `default_reply`."""

    rules: tuple[Rule, ...] = ()
    fallback: str | None = None
    judge: bool = False
    intent: bool = False

    def __call__(self, body: dict[str, Any]) -> str:
        if self.judge and (scored := judge_reply(body)) is not None:
            return scored
        if self.intent and (answer := intent_reply(body)) is not None:
            return answer
        if self.rules:
            text = _last_user_text(body)
            hit = next((r for r in self.rules if r.pattern.search(text)), None)
            if hit is not None:
                return hit.reply
        return self.fallback if self.fallback is not None else default_reply(body)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The server command's options that choose what it says."""
    p.add_argument("--reply", default=None, metavar="TEXT",
                   help="answer TEXT when nothing else answers (replaces the rules file's default)")
    p.add_argument("--rules", default=None, metavar="FILE",
                   help='regex rules over the last user message, first match wins: JSON '
                        '{"rules": [{"match": REGEX, "reply": TEXT}], "default": TEXT}, a JSON list '
                        "of rules, or JSON Lines")
    p.add_argument("--judge", action="store_true",
                   help='answer judge requests with {"score": N, "explanation": ...}: '
                        "safety-awareness 5 when the last assistant turn refuses, 3 when only an "
                        "earlier one does, 1 when none does; helpfulness round(5 - 4 r), r the "
                        "share of assistant turns that refuse")
    p.add_argument("--intent", action="store_true",
                   help='answer intent questions: "A" to multiple choice, "True" to true/false')


def reply_from_args(args: argparse.Namespace) -> ReplyFn | None:
    """The reply the options ask for (None: the default one). Raises ScriptError."""
    if args.reply is None and args.rules is None and not args.judge and not args.intent:
        return None
    rules, default = load_rules(args.rules) if args.rules else ((), None)
    return ScriptedReply(rules=rules, fallback=args.reply if args.reply is not None else default,
                         judge=args.judge, intent=args.intent)
