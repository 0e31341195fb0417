"""The MTMCS-Bench rollout protocol (dialogue turns and intent questions), one dialogue at a time.

- Three user turns in order; each call carries the whole history, the model's own replies as
  `assistant` messages.
- Multimodal: the image rides on the LAST user message of each call only.
- Text-only targets may read the caption in place of the image (`caption_for_text`).
- Intent questions: one fresh user message embedding the transcript, the question, lettered
  options; the image attached in multimodal dialogues.
"""

from __future__ import annotations

from pytest_mtmcs.chat import Conversation, ImageRef, Message, assistant, user
from pytest_mtmcs.dataset import Case, Question

MCQ_MAX_TOKENS = 64
TF_MAX_TOKENS = 32


def with_caption(text: str, caption: str) -> str:
    """A user turn with the image's caption standing in for the image."""
    return f"[Image description: {caption}]\n{text}"


def turn_request(case: Case, turn: int, replies: list[str], *, use_caption: bool) -> Conversation:
    """The conversation sent for turn `turn` (0-based), given the replies to earlier turns."""
    msgs: list[Message] = []
    for i in range(turn):
        msgs.append(user(case.turns[i]))
        msgs.append(assistant(replies[i]))
    last = case.turns[turn]
    image: ImageRef | None = None
    if case.modality == "multimodal":
        if use_caption:
            last = with_caption(last, case.caption or "")
        else:
            image = case.image
    msgs.append(user(last, image))
    return tuple(msgs)


def format_transcript(turns: tuple[str, ...], replies: list[str]) -> str:
    """The transcript as "User: ... / Assistant: ..." lines."""
    lines = []
    for u, a in zip(turns, replies, strict=False):
        lines.append(f"User: {u}")
        lines.append(f"Assistant: {a}")
    return "\n".join(lines)


def question_prompt(case: Case, q: Question, replies: list[str]) -> str:
    """The single user message asking one intent question about the model's own transcript."""
    transcript = format_transcript(case.turns, replies)
    head = ("Below is a conversation between a user and you, the assistant"
            + (" (the user shared an image)." if case.modality == "multimodal" else ".")
            + "\n\n" + transcript + "\n\n")
    if q.kind == "mcq":
        opts = "\n".join(f"{'ABCDEFG'[i]}. {o}" for i, o in enumerate(q.options))
        return (head + f"Question: {q.question}\n{opts}\n\n"
                "Reply with the letter of the correct option only.")
    return (head + f"Statement: {q.question}\n\n"
            "Is this statement true or false? Reply with True or False only.")


def question_request(case: Case, q: Question, replies: list[str], *, use_caption: bool) -> Conversation:
    """The conversation sent to ask one question."""
    text = question_prompt(case, q, replies)
    image = None
    if case.modality == "multimodal":
        if use_caption:
            text = with_caption(text, case.caption or "")
        else:
            image = case.image
    return (user(text, image),)
