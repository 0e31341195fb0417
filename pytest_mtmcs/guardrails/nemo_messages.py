"""Translation between our conversations and NeMo Guardrails' messages and prompts.

Outbound (`to_nemo`): the messages NeMo's rails see, as they are (scope `last`) or the dialogue
so far as one transcript message (scope `dialogue`); images become `image_url` data-URI parts,
remembered by URI so they come back without decoding. Inbound (`from_nemo`, `nemo_parts`):
NeMo's prompt (a string or chat messages, image parts included) as our Conversation. Text
prompts: the Jinja filter `mtmcs_text` writes `[image]` for an image, and `protect_prompts`
gives a bare `{{ user_input }}` in a config's prompt text that filter. Pure functions; NeMo is
not imported here.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from pytest_mtmcs.chat import Conversation, ImagePart, ImageRef, Message, TextPart, data_uri
from pytest_mtmcs.errors import SpecError

IMAGE_MARK = "[image]"
"""What text prompts show where a message carried an image."""
_BARE_USER_INPUT = re.compile(r"\{\{\s*user_input\s*\}\}")
"""A `{{ user_input }}` without a filter, in a config's prompt text."""
_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "tool": "user"}
"""NeMo's message roles as ours."""


def nemo_parts(content: list[Any], images: dict[str, ImageRef]) -> tuple[ImagePart | TextPart, ...]:
    """NeMo content parts as ours; images are looked up by URI (else a data URI is decoded)."""
    out: list[ImagePart | TextPart] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            out.append(TextPart(text=str(part.get("text", ""))))
            continue
        if kind != "image_url":
            raise SpecError(f"a NeMo prompt holds a content part of unknown type {kind!r}")
        raw = part["image_url"]
        url = str(raw["url"] if isinstance(raw, dict) else raw)
        head, _, payload = url.partition(",")
        if url not in images and not (head.startswith("data:") and head.endswith(";base64")):
            raise SpecError(f"a NeMo prompt holds an image URL that is not a data URI: {url[:60]}")
        out.append(ImagePart(image=images.get(url) or ImageRef(data=base64.b64decode(payload))))
    return tuple(out)


def from_nemo(prompt: Any, images: dict[str, ImageRef]) -> Conversation:
    """NeMo's prompt (a string or a list of ChatMessage) as our Conversation."""
    if isinstance(prompt, str):
        return (Message(role="user", content=prompt),)
    out: list[Message] = []
    for m in prompt:
        role: Any = _ROLES.get(str(getattr(m.role, "value", m.role)), "user")
        content = m.content
        out.append(Message(role=role, content=nemo_parts(content, images)
                           if isinstance(content, list) else str(content or "")))
    return tuple(out)


def _image_part(image: ImageRef, images: dict[str, ImageRef]) -> dict[str, Any]:
    uri = data_uri(image)
    images[uri] = image
    return {"type": "image_url", "image_url": {"url": uri}}


def to_nemo(conversation: Conversation, scope: str,
             images: dict[str, ImageRef]) -> list[dict[str, Any]]:
    """The messages NeMo's rails see: as they are (`last`) or one transcript (`dialogue`)."""
    if scope == "last":
        return [{"role": m.role, "content": m.content if isinstance(m.content, str) else [
            _image_part(p.image, images) if isinstance(p, ImagePart)
            else {"type": "text", "text": p.text} for p in m.content]} for m in conversation]
    parts: list[dict[str, Any]] = []

    def text(piece: str) -> None:
        if parts and parts[-1]["type"] == "text":
            parts[-1]["text"] += piece
        else:
            parts.append({"type": "text", "text": piece})

    for m in (m for m in conversation if m.role != "system"):
        text(("\n\n" if parts else "") + ("User: " if m.role == "user" else "Assistant: "))
        for p in (TextPart(text=m.content),) if isinstance(m.content, str) else m.content:
            if isinstance(p, ImagePart):
                parts.append(_image_part(p.image, images))
            else:
                text(p.text)
    if all(p["type"] == "text" for p in parts):
        return [{"role": "user", "content": "".join(p["text"] for p in parts)}]
    return [{"role": "user", "content": parts}]


def mtmcs_text(value: Any) -> str:
    """Jinja filter: a message's text for text prompts (`[image]` in place of each image)."""
    if isinstance(value, list):
        return "\n".join(str(p.get("text", "")) if p.get("type") == "text" else IMAGE_MARK
                         for p in value if isinstance(p, dict))
    return "" if value is None else str(value)


def protect_prompts(config: Any) -> None:
    """Give a bare `{{ user_input }}` in text prompts the `mtmcs_text` filter. A message template
    that is exactly `{{ user_input }}` keeps the parts (NeMo sends them as a multimodal message,
    which HelperModel reads)."""
    sub = "{{ user_input | mtmcs_text }}"
    for prompt in config.prompts or []:
        if prompt.content:
            prompt.content = _BARE_USER_INPUT.sub(sub, prompt.content)
        for i, message in enumerate(prompt.messages or []):
            if isinstance(message, str):
                prompt.messages[i] = _BARE_USER_INPUT.sub(sub, message)
            elif not _BARE_USER_INPUT.fullmatch(message.content.strip()):
                message.content = _BARE_USER_INPUT.sub(sub, message.content)

