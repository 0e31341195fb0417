"""The LLM judge: any target scores whole dialogues 1-5 against the benchmark's rubrics.

The judge gets the rubric as a system message and one user message holding the image's
caption (multimodal dialogues) and the transcript in the benchmark's layout:

    User R1: ...
    Assistant A1: ...
    ...
    Assistant A3: ...

It never gets the image unless asked (`sees_image`, `--mtmcs-judge-sees-image`). When a
multimodal row has no caption, the judge is first asked to write one from the image (neutral,
factual); that call goes through the store like every other, so it is made once per image.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from pytest_mtmcs.chat import Conversation, GenParams, Message, Reply, user
from pytest_mtmcs.dataset import Case
from pytest_mtmcs.errors import DataError
from pytest_mtmcs.scoring.prompts import DEFAULT_PROMPTS, PromptTemplates, render
from pytest_mtmcs.scoring.readers import parse_judge_score
from pytest_mtmcs.scoring.records import JudgeRecord
from pytest_mtmcs.scoring.rubrics import Metric, rubric_name, rubric_text
from pytest_mtmcs.targets.base import Target

Call = Callable[[Target, Conversation, GenParams], Awaitable[tuple[Reply, bool]]]
"""How the judge reaches its model: (target, conversation, params) -> (reply, was it cached).
The engine passes its store-backed, concurrency-bounded call."""

EXPLANATION_CHARS = 500


def transcript(turns: tuple[str, ...], replies: list[str] | tuple[str, ...]) -> str:
    """The dialogue as `User R1: ... / Assistant A1: ...` lines."""
    lines = []
    for i, (u, a) in enumerate(zip(turns, replies, strict=True), 1):
        lines.append(f"User R{i}: {u}")
        lines.append(f"Assistant A{i}: {a}")
    return "\n".join(lines)


@dataclass(frozen=True)
class Judge:
    """A target used as the judge, and how it is asked."""

    target: Target
    sees_image: bool = False
    params: GenParams = field(default_factory=lambda: GenParams(temperature=0.0, max_tokens=256))
    caption_params: GenParams = field(default_factory=lambda: GenParams(temperature=0.0, max_tokens=96))
    prompts: PromptTemplates = DEFAULT_PROMPTS
    """The rubric parts, user messages and caption request (`--mtmcs-prompts`)."""

    @staticmethod
    def metric(case: Case) -> Metric:
        """Safety-awareness for unsafe dialogues, helpfulness for safe ones."""
        return "safety_awareness" if case.safety == "unsafe" else "helpfulness"

    def request(self, case: Case, replies: list[str] | tuple[str, ...],
                caption: str | None) -> Conversation:
        """The judge's conversation for one dialogue."""
        metric = self.metric(case)
        system = rubric_text(metric, case.split, case.modality, sees_image=self.sees_image,
                             texts=self.prompts)
        lines = transcript(case.turns, replies)
        image = None
        if case.modality == "multimodal":
            body = render(self.prompts.judge_user_multimodal, caption=str(caption),
                          transcript=lines)
            if self.sees_image:
                image = case.image
        else:
            body = render(self.prompts.judge_user, transcript=lines)
        return (Message(role="system", content=system), user(body, image))

    def caption_request(self, case: Case) -> Conversation:
        """The request that has the judge describe the row's image."""
        return (user(self.prompts.judge_caption_request, case.image),)

    async def caption(self, case: Case, call: Call) -> tuple[str, bool]:
        """The caption the judge reads: the data's, else one the judge writes from the image.
        Returns (caption, written by the judge)."""
        if case.caption:
            return case.caption, False
        if case.image is None or not self.target.supports_images:
            why = ("the judge cannot see images" if case.image is not None
                   else "the row has no image to describe")
            raise DataError(f"no caption for this row, and {why}: add one to the captions file "
                            "(--mtmcs-captions)", file=case.source, row=case.row_id, field="caption")
        reply, _ = await call(self.target, self.caption_request(case), self.caption_params)
        text = " ".join(reply.text.split())
        if not text:
            raise DataError("no caption for this row, and the judge wrote an empty one: add one "
                            "to the captions file (--mtmcs-captions)", file=case.source,
                            row=case.row_id, field="caption")
        return text, True

    async def score(self, case: Case, replies: list[str] | tuple[str, ...], call: Call) -> JudgeRecord:
        """Judge one finished dialogue (its caption first when it needs one)."""
        caption, written = (None, False)
        if case.modality == "multimodal":
            caption, written = await self.caption(case, call)
        reply, cached = await call(self.target, self.request(case, replies, caption), self.params)
        parsed = parse_judge_score(reply.text)
        metric = self.metric(case)
        explanation = parsed.explanation if parsed else reply.text
        return JudgeRecord(
            judge=self.target.spec, metric=metric,
            rubric=rubric_name(metric, case.split, case.modality),
            score=parsed.score if parsed else None, parse=parsed.how if parsed else None,
            explanation=_clip(explanation) or None, caption=caption if written else None,
            saw_image=self.sees_image and case.modality == "multimodal", cached=cached,
        )


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= EXPLANATION_CHARS else text[: EXPLANATION_CHARS - 3] + "..."
