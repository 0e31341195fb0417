"""Shared helpers of the prompt-level guardrails (`prompting`, `immune`): reading the prompt
texts of `<config_dir>/prompts/`, filling their `{placeholders}`, hashing settings into
identities, and editing or building requests (patching user turns' text, showing a dialogue as
a transcript for a review request). Pure functions of conversations; no model calls.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable

from pytest_mtmcs.chat import Conversation, ImagePart, ImageRef, Message, TextPart
from pytest_mtmcs.dataset.resources import describe
from pytest_mtmcs.errors import SpecError
from pytest_mtmcs.guardrails import GuardrailOptions


def read_prompt(options: GuardrailOptions, name: str, *placeholders: str) -> str:
    """The text of `prompts/<name>`, stripped; SpecError when it is missing, empty or lacks a
    `{placeholder}` the guardrail fills."""
    item = options.config("prompts", name)
    path = describe(item)
    text = item.read_text(encoding="utf-8").strip()
    if not text:
        raise SpecError(f"guardrail prompt {path} is empty")
    missing = [p for p in placeholders if "{" + p + "}" not in text]
    if missing:
        raise SpecError(f"guardrail prompt {path} lacks the placeholder(s) "
                        f"{', '.join('{' + p + '}' for p in missing)}")
    return text


def fill(template: str, **values: str) -> str:
    """`template` with each `{name}` of `values` replaced in one pass (other braces, e.g. a JSON
    example, and braces inside the values are left alone)."""
    pattern = re.compile("|".join(re.escape("{" + k + "}") for k in values))
    return pattern.sub(lambda m: values[m.group(0)[1:-1]], template)


def fingerprint(*parts: object) -> str:
    """A short hash of texts and settings, for identities."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


def transcript(conversation: Conversation) -> str:
    """The non-system messages as `User: ...` / `Assistant: ...` lines; a user message that
    carried an image is `User [image]: ...`."""
    lines = []
    for m in conversation:
        if m.role == "system":
            continue
        who = "User" if m.role == "user" else "Assistant"
        lines.append(f"{who}{' [image]' if m.images else ''}: {m.text}")
    return "\n".join(lines)


def images_of(conversation: Conversation) -> tuple[ImageRef, ...]:
    """Every image of the conversation, in order, each once."""
    out: list[ImageRef] = []
    for m in conversation:
        out.extend(i for i in m.images if i not in out)
    return tuple(out)


def review_request(conversation: Conversation, text: str, *, images: bool = True) -> Conversation:
    """A fresh request about `conversation`: its system messages, then one user message
    with the conversation's images (when `images`) followed by `text`."""
    systems = tuple(m for m in conversation if m.role == "system")
    pics = images_of(conversation) if images else ()
    content: str | tuple[ImagePart | TextPart, ...] = (
        (*(ImagePart(image=i) for i in pics), TextPart(text=text)) if pics else text)
    return (*systems, Message(role="user", content=content))


def _edit_text(m: Message, edit: Callable[[str], str], *, last: bool) -> Message:
    """`m` with its first (or last) text part edited; images stay in place."""
    if isinstance(m.content, str):
        return Message(role=m.role, content=edit(m.content))
    parts = list(m.content)
    where = [i for i, p in enumerate(parts) if isinstance(p, TextPart)]
    if not where:
        parts.append(TextPart(text=edit("")))
    else:
        i = where[-1] if last else where[0]
        old = parts[i]
        assert isinstance(old, TextPart)
        parts[i] = TextPart(text=edit(old.text))
    return Message(role=m.role, content=tuple(parts))


def append_to_users(conversation: Conversation, suffix: str) -> Conversation:
    """Every user message with `suffix` after its text (a blank line between)."""
    def edit(t: str) -> str:
        return f"{t}\n\n{suffix}" if t else suffix

    return tuple(_edit_text(m, edit, last=True) if m.role == "user" else m for m in conversation)


def prepend_to_image_turns(conversation: Conversation, prefix: str) -> Conversation:
    """Every user message carrying an image with `prefix` before its text (a blank line between)."""
    def edit(t: str) -> str:
        return f"{prefix}\n\n{t}" if t else prefix

    return tuple(_edit_text(m, edit, last=False) if m.role == "user" and m.images else m
                 for m in conversation)


def no_arg(name: str, arg: str | None) -> None:
    """SpecError when a guardrail that takes no argument was named with one (`dpp:x`)."""
    if arg is not None:
        raise SpecError(f"guardrail {name!r} takes no argument, got {name}:{arg}")

