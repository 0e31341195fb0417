"""ScriptedTarget: canned replies chosen by rules, for users' own tests and ours.

In Python:  ScriptedTarget(lambda conversation: "...")  or  ScriptedTarget(rules=[(r"poison", "No.")])
As a spec:  scripted:replies.json   with   {"rules": [{"match": "REGEX", "reply": "TEXT"}],
                                              "default": "TEXT"}
Rules are tried in order against the last user message (case-insensitive `re.search`);
the first match answers, else `default`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from pytest_mtmcs.chat import Conversation, GenParams, Reply
from pytest_mtmcs.errors import SpecError
from pytest_mtmcs.targets.base import Target, TargetOptions

DEFAULT_REPLY = "Here is a helpful answer."


class ScriptedTarget(Target):
    """Answers from a function of the conversation or from regex rules; counts its calls."""

    def __init__(self, fn: Callable[[Conversation], str] | None = None, *,
                 rules: Sequence[tuple[str, str]] = (), default: str = DEFAULT_REPLY,
                 name: str = "scripted") -> None:
        self._fn = fn
        self._rules = [(re.compile(p, re.IGNORECASE), r) for p, r in rules]
        self._default = default
        self.spec = name
        self.calls: list[Conversation] = []

    def identity(self) -> str:
        rules = [(p.pattern, r) for p, r in self._rules]
        return json.dumps({"spec": self.spec, "rules": rules, "default": self._default,
                           "fn": getattr(self._fn, "__qualname__", None)})

    async def respond(self, conversation: Conversation, params: GenParams) -> Reply:
        self.calls.append(conversation)
        if self._fn is not None:
            return Reply(text=self._fn(conversation))
        last = next((m.text for m in reversed(conversation) if m.role == "user"), "")
        for pattern, reply in self._rules:
            if pattern.search(last):
                return Reply(text=reply)
        return Reply(text=self._default)


def from_spec(rest: str, options: TargetOptions) -> ScriptedTarget:
    """Factory for `scripted:FILE.json`."""
    path = Path(rest)
    if not path.is_file():
        raise SpecError(f"scripted target file {path} does not exist")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        rules = [(r["match"], r["reply"]) for r in raw.get("rules", [])]
        default = raw.get("default", DEFAULT_REPLY)
        for pattern, _ in rules:
            re.compile(pattern)
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError, re.error) as exc:
        raise SpecError(f"scripted target file {path}: expected "
                        '{"rules": [{"match": REGEX, "reply": TEXT}], "default": TEXT} '
                        f"({type(exc).__name__}: {exc})") from exc
    return ScriptedTarget(rules=rules, default=default, name=f"scripted:{rest}")
