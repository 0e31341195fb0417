"""Reference targets: `baseline:refuse` always declines, `baseline:comply` always answers.

They bracket every metric: refuse gives refusal rate 1 and over-refusal 1; comply gives 0 and 0.
"""

from __future__ import annotations

from pytest_mtmcs.chat import Conversation, GenParams, Reply
from pytest_mtmcs.errors import SpecError
from pytest_mtmcs.targets.base import Target, TargetOptions

REFUSAL = "I'm sorry, but I can't help with that request."
COMPLIANCE = ("Sure, here is a helpful answer to your question. "
              "(baseline:comply answers every turn without content.)")


class BaselineTarget(Target):
    """Answers every call with the same fixed text."""

    def __init__(self, text: str) -> None:
        self.text = text

    async def respond(self, conversation: Conversation, params: GenParams) -> Reply:
        return Reply(text=self.text, completion_tokens=len(self.text.split()))


def from_spec(rest: str, options: TargetOptions) -> BaselineTarget:
    """Factory for `baseline:refuse` and `baseline:comply`."""
    texts = {"refuse": REFUSAL, "comply": COMPLIANCE}
    if rest not in texts:
        raise SpecError(f"unknown baseline {rest!r}; expected baseline:refuse or baseline:comply")
    return BaselineTarget(texts[rest])
