"""The benchmark release's own readers, re-implemented, and why its readings differ from ours.

The release's figures are reproduced exactly, bugs included, so a run can be set beside the
paper; our own readers (`scoring.readers`) stay the reading our figures use. As the release
reads:

- MCQ (`release_mcq`): the first character of the stripped reply if it is a letter A-G
  (upper-cased), else the earliest letter *in the order A, B, ..., G* that occurs anywhere in
  the upper-cased reply: "Answer: D" is A (from "ANSWER"), "I cannot determine" is A, "None of
  these" is E (no A-D, and "THESE" holds an E); None when no letter A-G occurs.
- TF (`release_tf`): only replies starting with "true"/"false" (case-insensitive, after
  stripping whitespace); "It is true" and "Not false." are None and leave the denominator;
  "True or false: false" is True.
- Judge (`release_judge`): the reply as JSON with an integer "score" 1-5, else the first digit
  1-5 anywhere in the text (`{"score": 10}` is 1, `{"score": 0, ... in 2 turns}` is 2); None
  when neither, and the judgement leaves the mean.

`answer_shape` / `judgement_shape` name the form of a reply the two readings read differently,
for the divergence account (`GroupSummary.release.divergence`).
"""

from __future__ import annotations

import json
import re

from pytest_mtmcs.scoring.records import ReleaseReading

__all__ = ["EXAMPLE_CHARS", "answer_shape", "judgement_shape", "release_judge", "release_mcq",
           "release_reading", "release_tf"]

_RELEASE_LETTERS = "ABCDEFG"
EXAMPLE_CHARS = 80
"""An example reply in the divergence account is clipped to this many characters."""


def release_mcq(text: str) -> str | None:
    """The release's MCQ reading of `text`: a letter A-G, or None."""
    upper = text.strip().upper()
    if upper[:1] and upper[0] in _RELEASE_LETTERS:
        return upper[0]
    return next((c for c in _RELEASE_LETTERS if c in upper), None)


def release_tf(text: str) -> bool | None:
    """The release's true/false reading of `text`, or None."""
    low = text.strip().lower()
    if low.startswith("true"):
        return True
    if low.startswith("false"):
        return False
    return None


def release_judge(text: str) -> int | None:
    """The release's reading of a judge reply: a score 1-5, or None."""
    try:
        obj = json.loads(text.strip())
    except ValueError:
        obj = None
    if isinstance(obj, dict):
        score = obj.get("score")
        if isinstance(score, int) and not isinstance(score, bool) and 1 <= score <= 5:
            return score
    found = re.search(r"[1-5]", text)
    return int(found.group()) if found else None


_MCQ_SHAPES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("empty", re.compile(r"^\s*$")),
    ("The answer is X", re.compile(r"\banswer\s+is\b", re.IGNORECASE)),
    ("Answer: X", re.compile(r"\banswer\s*:", re.IGNORECASE)),
    ("two letters", re.compile(r"\b[A-G]\b[^A-Za-z]+(?:or|and|/|,)?\s*\(?[A-G]\b")),
    ("marked letter", re.compile(r"[(\[*][A-G][)\]*]|\boption\s+[A-G]\b", re.IGNORECASE)),
    ("prose ending in a letter", re.compile(r"\s\(?[A-G]\)?[.!]?\s*$")),
    ("lower-case letter", re.compile(r"^\s*\(?[a-g][).:]?(?:\s|$)")),
)
_TF_SHAPES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("empty", re.compile(r"^\s*$")),
    ("echoed 'true or false'", re.compile(r"true\s*(?:or|/)\s*false", re.IGNORECASE)),
    ("negated (not true / not false)", re.compile(r"\b(?:not|n't)\s+(?:\w+\s+)?(?:true|false)\b|"
                                                  r"\buntrue\b", re.IGNORECASE)),
    ("The answer/statement is X", re.compile(r"\b(?:answer|statement|claim)\s+is\b",
                                             re.IGNORECASE)),
    ("It is true", re.compile(r"\b(?:true|false)\b", re.IGNORECASE)),
    ("yes / no", re.compile(r"^\s*(?:yes|no)\b", re.IGNORECASE)),
)


def answer_shape(kind: str, text: str, ours: str | None) -> str:
    """The form of an intent answer the two readings read differently (a short label)."""
    shapes = _MCQ_SHAPES if kind == "mcq" else _TF_SHAPES
    for name, pattern in shapes:
        if pattern.search(text):
            return name
    if kind == "mcq" and ours is not None:
        return "option text"
    return "other prose"


def judgement_shape(text: str, ours: int | None) -> str:
    """The form of a judge reply the two readings read differently (a short label)."""
    try:
        obj = json.loads(text.strip())
    except ValueError:
        obj = None
    if isinstance(obj, dict) and "score" in obj:
        score = obj["score"]
        if isinstance(score, (int, float)) and not isinstance(score, bool) and not 1 <= score <= 5:
            return "score outside 1-5"
        return "JSON score not an integer"
    if "{" in text and re.search(r"\"score\"", text):
        return "JSON inside prose"
    if re.search(r"\b[RA][1-3]\b", text):
        return "turn labels before the score"
    if ours is None:
        return "no score (ours)"
    return "other digits before the score"


def _clip(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= EXAMPLE_CHARS else flat[: EXAMPLE_CHARS - 3] + "..."


def release_reading(kind: str, text: str, ours: str | None, release: str | None, *,
                    example: bool = False) -> ReleaseReading:
    """The release's reading `release` of a reply (`kind`: mcq, tf or judge), with the shape
    when it differs from ours (`ours`), and then with `example` the reply clipped (model text:
    kept only where transcripts are)."""
    if release == ours:
        return ReleaseReading(value=release)
    shape = (judgement_shape(text, None if ours is None else int(ours)) if kind == "judge"
             else answer_shape(kind, text, ours))
    return ReleaseReading(value=release, shape=shape, example=_clip(text) if example else None)
