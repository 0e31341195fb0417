"""The MTMCS-Bench rollout protocol (dialogue turns and intent questions), one dialogue at a time.

- Three user turns in order; each call carries the whole history, the model's own replies as
  `assistant` messages.
- Multimodal: the image rides on the LAST user message of each call only.
- Text-only targets may read the caption in place of the image (`caption_for_text`), through
  the `caption_prefix` template.
- Intent questions: one fresh user message embedding the transcript, the question, lettered
  options (the `mcq` and `tf` templates); the image attached in multimodal dialogues.

Every text of ours comes from a `PromptTemplates` (scoring/prompts.py): our wording unless the
run replaced it (`--mtmcs-prompts`).
"""

from __future__ import annotations

from pytest_mtmcs.chat import Conversation, ImageRef, Message, assistant, user
from pytest_mtmcs.dataset import Case, Question
from pytest_mtmcs.scoring.prompts import DEFAULT_PROMPTS, PromptTemplates, render

MCQ_MAX_TOKENS = 64
TF_MAX_TOKENS = 32


def with_caption(text: str, caption: str, prompts: PromptTemplates = DEFAULT_PROMPTS) -> str:
    """A user turn with the image's caption standing in for the image."""
    return render(prompts.caption_prefix, caption=caption, text=text)


def turn_request(case: Case, turn: int, replies: list[str], *, use_caption: bool,
                 prompts: PromptTemplates = DEFAULT_PROMPTS) -> Conversation:
    """The conversation sent for turn `turn` (0-based), given the replies to earlier turns."""
    msgs: list[Message] = []
    for i in range(turn):
        msgs.append(user(case.turns[i]))
        msgs.append(assistant(replies[i]))
    last = case.turns[turn]
    image: ImageRef | None = None
    if case.modality == "multimodal":
        if use_caption:
            last = with_caption(last, case.caption or "", prompts)
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


def question_prompt(case: Case, q: Question, replies: list[str],
                    prompts: PromptTemplates = DEFAULT_PROMPTS) -> str:
    """The single user message asking one intent question about the model's own transcript."""
    intro = (prompts.question_intro_multimodal if case.modality == "multimodal"
             else prompts.question_intro_unimodal)
    transcript = format_transcript(case.turns, replies)
    if q.kind == "mcq":
        opts = "\n".join(f"{'ABCDEFG'[i]}. {o}" for i, o in enumerate(q.options))
        return render(prompts.mcq, intro=intro, transcript=transcript, question=q.question,
                      options=opts)
    return render(prompts.tf, intro=intro, transcript=transcript, question=q.question)


def question_request(case: Case, q: Question, replies: list[str], *, use_caption: bool,
                     prompts: PromptTemplates = DEFAULT_PROMPTS) -> Conversation:
    """The conversation sent to ask one question."""
    text = question_prompt(case, q, replies, prompts)
    image = None
    if case.modality == "multimodal":
        if use_caption:
            text = with_caption(text, case.caption or "", prompts)
        else:
            image = case.image
    return (user(text, image),)
