"""Parsers for contextual-intent answers (MCQ and true/false), reading what models really write.

MCQ: "B", "b)", "(C)", "Answer: D", "The answer is C", "**C**. Because...", "C - the user wants",
or the text of exactly one option. A reply naming two different options, or none, is unparsed
(None). The official parser reads "The answer is C" as "A" (from "ANSWER"); we do not.
TF: "true.", "False, because", "It is true that...", "The statement is false". Both or neither
is unparsed.
"""

from __future__ import annotations

import re

_MARKUP = re.compile(r"[*_`#>]+")
_LEAD = re.compile(r"^\s*(?:option|choice|answer)?\s*[:\-]?\s*\(?\[?([A-Ga-g])\]?(?:\)|\.|:|,|;|\s+-|\s*$|\s*\n)")
_EXPLICIT = re.compile(
    r"(?:answer|option|choice|correct one|correct answer|correct option)\s*(?:is|would be|:|=|-)?"
    r"\s*(?:option\s*)?\(?\[?\b([A-Ga-g])\b\]?\)?(?![a-z'])",
    re.IGNORECASE,
)
_MARKED = re.compile(r"(?:\(([A-G])\)|\b([A-G])\)|\b([A-G])\.(?=\s|$)|\b([A-G])\s*[:\-]\s)")


def _clean(text: str) -> str:
    return _MARKUP.sub("", text).strip()


def parse_mcq(answer: str, options: tuple[str, ...] = ()) -> str | None:
    """The chosen letter, upper-case, or None when no single option can be read."""
    text = _clean(answer)
    if not text:
        return None
    valid = "ABCDEFG"[: len(options)] if options else "ABCDEFG"
    lead = _LEAD.match(text)
    if lead and lead.group(1).upper() in valid:
        # "A" alone is fine; "A bit of..." has no delimiter and never gets here.
        return lead.group(1).upper()
    explicit = {m.group(1).upper() for m in _EXPLICIT.finditer(text)} & set(valid)
    if len(explicit) == 1:
        return explicit.pop()
    if len(explicit) > 1:
        return None
    marked = {next(g for g in m.groups() if g) for m in _MARKED.finditer(text)} & set(valid)
    if len(marked) == 1:
        return marked.pop()
    if len(marked) > 1:
        return None
    if options:
        low = text.lower()
        hits = {valid[i] for i, opt in enumerate(options)
                if len(opt.strip()) > 3 and opt.strip().lower().rstrip(".") in low}
        if len(hits) == 1:
            return hits.pop()
    return None


_TF_WORD = re.compile(r"\b(true|false)\b", re.IGNORECASE)
_NOT_TRUE = re.compile(r"\bnot\s+(true|false)\b", re.IGNORECASE)


def parse_tf(answer: str) -> bool | None:
    """True or False as the model answered it, or None when it can't be read."""
    text = _clean(answer).lower()
    if not text:
        return None
    if text.startswith("true"):
        return True
    if text.startswith("false"):
        return False
    flipped = {"true": False, "false": True}
    values = {flipped[m.group(1).lower()] for m in _NOT_TRUE.finditer(text)}
    stripped = _NOT_TRUE.sub(" ", text)
    values |= {m.group(1).lower() == "true" for m in _TF_WORD.finditer(stripped)}
    if len(values) == 1:
        return values.pop()
    return None
