"""Parsers for what models really write: intent answers (MCQ, true/false) and judge scores.

All parsers first drop markdown (bold, italics, backticks, headings, quotes) and surrounding
whitespace. Each returns None when a human reading the reply could not name one answer.

MCQ (`parse_mcq`, the letter of an option, upper-case). Valid letters are A.. up to the
number of options (A-G without options); a clearly given letter beyond them is unparsed.
When options are given, two or more lines that merely restate options ("A. <text of A>") are
an echoed option list and are dropped first. Then, in order:

1. A leading letter: "B", "b)", "(C)", "[B]", "B.", "B: the user...", "C - the user...",
   "Option B", "D because...". Lower-case only as a label ("b)", "(b)", "b." or "b" alone),
   never the article in "a user would...". Upper-case "A" followed by a word ("A user...") is
   the article too. The leading letter wins over later discussion of other options
   ("A\\n\\nExplanation: ... option C is wrong" is A): the prompt asks for the letter first.
2. Answer statements anywhere: "Answer: D", "The answer is C", "The correct option is (D)",
   "I think it's B", "I'd go with E". Two different stated letters, or a stated letter that
   differs from the leading one ("C. Actually, the answer is B"), contradict: unparsed.
3. Labelled letters anywhere: "(B)", "[B]", "B)", "option B" (upper-case only).
4. The full text of exactly one option (a match inside a longer matched option is dropped).
5. Bare upper-case letters standing alone ("Definitely D."), not after "not".
Any letter joined to another by "or", "and", ",", "/" ("A or C", "The answer is B or D"), or
two different letters in the deciding step ("Either B or D"), is unparsed. "The answer is C"
is C. The release's parser (re-implemented in `release_readers`) takes the first character
if it is A-G, else the earliest of A, B, ..., G, in that order, found anywhere in the
upper-cased text, which here is the A of "ANSWER"; we never read letters inside words.

TF (`parse_tf`). "true or false"/"true/false" (an echo of the question) is ignored, so "True
or false: false" is False. Then: a leading "True"/"False" (also after "Answer:") wins over
the explanation, unless a later "the answer is ..." says otherwise (unparsed). Else what is
said of the answer/statement/claim ("The statement is false", "... is not correct"). Else
every true/false word in the text must agree ("It is true that...", "This is not true").
"not true"/"untrue" is False; "not false" is True (double negation is an affirmation);
"I don't think ... true" in one sentence is False. Hedges
("partly true", "not entirely true", "not necessarily false") are no answer. Attributive uses
("the user's true intent", "false information") are not answers. "Yes"/"No" are not what was
asked and are unparsed unless a true/false word is also there ("Yes, it's true").

Judge scores (`parse_judge_score`, the judge was asked for JSON {"score": 1..5,
"explanation": "..."}). how="json" only when the whole reply (a ```json fence allowed) is a
JSON object whose "score" is an integer 1..5, or an integer-valued float (4.0). Everything
else is how="lenient", in order: such an object with a numeric-string score ("4") or a
non-integer one (3.5 -> 3, the lower score, as the rubric says when torn); a JSON object
inside prose; a truncated object read by regex ('"score": 4, "explanation": "The assis');
"Score: 4" / "Rating: 4" / "score of 4"; "I give it 4" / "rated 4"; "4/5" / "4 out of 5";
a reply that is only a number ("5.0"); last, a lone digit 1-5 when it is the only one standing
alone ("R1", "A2", "1-5" never count).
A JSON score field is final: out of 1..5 (0, 6, 10), not a number, or a bool is unparsed.
In prose, out-of-range labelled scores are skipped and later labelled forms tried, but once
any labelled score was seen the lone-digit fallback is not used. Two different scores in the
deciding form are unparsed. The explanation comes from the JSON's "explanation" (or
"reason", "rationale", "reasoning", "justification") key, else "".
"""

from __future__ import annotations

import json
import math
import re
from typing import Literal, NamedTuple

LETTERS = "ABCDEFG"

_MARKUP = re.compile(r"\*+|`+|(?<!\w)_+|_+(?!\w)|^[ \t]*(?:#+|>+)[ \t]*", re.MULTILINE)


def _clean(text: str) -> str:
    return _MARKUP.sub("", text.replace("\u2019", "'")).strip()


def _norm(text: str) -> str:
    return " ".join(text.lower().split()).strip(" .;:!")


# ------------------------------------------------------------------------------------- MCQ

_TOKEN = re.compile(r"(?P<open>[(\[])?(?P<l>[A-Ga-g])(?P<close>[)\]])?")
# What may follow a letter for it to read as a label rather than a word.
_DELIM = re.compile(r"[.:,;!?](?=\s|$)|\s+[-\u2013\u2014]\s|[-\u2013\u2014]\s|\s*$|[ \t]*\n")
_JOINED = re.compile(r"\s*(?:,|/|&|\bor\b|\band\b|\bnor\b|\bvs\b\.?)\s*(?:either\s+)?"
                     r"(?i:(?:option|choice)\s+)?")
_ARTICLE = re.compile(r"\s+(?!(?:or|and|nor)\b)[a-z]")
_LEAD_PREFIX = re.compile(r"(?i:(?:option|choice|letter)\b\s*:?\s*)?")
_STATEMENT = re.compile(
    r"(?i:\b(?:answer|choice|option|pick|selection|letter)\s*"
    r"(?:(?:is|would\s+be|should\s+be|must\s+be|will\s+be)\s*:?|[:=\-])\s*"
    r"|\bi(?:'d|\s+would|'ll|\s+will)?\s+(?:say|choose|pick|select|go\s+with)\s+"
    r"|\bi\s+(?:think|believe)\s+(?!it\b|it's\b|that\b)"
    r"|\b(?:it's|it\s+is|that's|that\s+is|it\s+(?:must|would|should)\s+be)\s+)"
    r"(?i:(?:option|choice|letter)\s+)?"
)
_LABELLED = re.compile(
    r"\((?P<p>[A-G])\)|\[(?P<s>[A-G])\]|(?<![\w'(\[])(?P<c>[A-G])\)"
    r"|(?i:\b(?:option|choice)\s+)(?P<o>[A-G])(?![\w'])"
)
_BARE = re.compile(r"(?<![\w'.])[A-G](?![\w'])(?!\.\w)")
_NOT_BEFORE = re.compile(r"(?i:\bnot\s+(?:option\s+)?)$")
_ECHO_LINE = re.compile(r"^\s*[(\[]?([A-Ga-g])[.):\]]\s*(.+?)\s*$")

_HEDGED = "?"


def _token_at(text: str, pos: int, *, lead: bool) -> tuple[str, bool] | None:
    """(upper-case letter, whether it stands as a label: bracketed or followed by punctuation
    or the end) of the letter token at `pos`, or None when that is no answer."""
    m = _TOKEN.match(text, pos)
    if m is None or (m["open"] and not m["close"]):
        return None
    letter, end = m["l"], m.end()
    labelled = bool(m["close"]) or bool(_DELIM.match(text, end))
    if letter.islower():
        return (letter.upper(), True) if labelled else None
    if end < len(text) and (text[end].isalnum() or text[end] in "'_"
                            or (text[end] == "." and text[end + 1: end + 2].isalnum())):
        return None  # part of a word or an abbreviation ("E.g.")
    if letter == "A" and lead and not labelled and _ARTICLE.match(text, end):
        return None  # "A user would..."
    return letter, labelled


def _letter_at(text: str, pos: int, *, lead: bool) -> str | None:
    token = _token_at(text, pos, lead=lead)
    return token[0] if token else None


def _joined(text: str, pos: int) -> bool:
    """Whether another option follows as an alternative ("A or C", "B, D", "A/C")."""
    j = _JOINED.match(text, pos)
    return j is not None and j.end() > pos and _letter_at(text, j.end(), lead=True) is not None


def _label_end(text: str, pos: int) -> int:
    m = _TOKEN.match(text, pos)
    return m.end() if m else pos


def _leading(text: str) -> tuple[str, bool] | None:
    start = _LEAD_PREFIX.match(text)
    pos = start.end() if start else 0
    token = _token_at(text, pos, lead=True)
    if token is None:
        return None
    return (_HEDGED, token[1]) if _joined(text, _label_end(text, pos)) else token


def _stated(text: str) -> set[str]:
    found: set[str] = set()
    for m in _STATEMENT.finditer(text):
        letter = _letter_at(text, m.end(), lead=False)
        if letter is not None:
            found.add(_HEDGED if _joined(text, _label_end(text, m.end())) else letter)
    return found


def _by_option_text(text: str, options: tuple[str, ...]) -> str | None:
    low = " ".join(text.lower().split())
    hits = [(LETTERS[i], _norm(opt)) for i, opt in enumerate(options)
            if _norm(opt) and re.search(rf"(?<!\w){re.escape(_norm(opt))}(?!\w)", low)]
    hits = [(k, t) for k, t in hits if not any(t != u and t in u for _, u in hits)]
    return hits[0][0] if len(hits) == 1 else None


def _drop_echo(text: str, options: tuple[str, ...]) -> str:
    lines = text.splitlines()
    echo = []
    for i, line in enumerate(lines):
        m = _ECHO_LINE.match(line)
        if m:
            k = LETTERS.index(m[1].upper())
            if k < len(options) and _norm(m[2]) == _norm(options[k]):
                echo.append(i)
    if len(echo) < 2:
        return text
    return "\n".join(line for i, line in enumerate(lines) if i not in echo).strip()


def _one(letters: set[str], valid: str) -> str | None:
    if len(letters) == 1:
        (letter,) = letters
        return letter if letter in valid else None
    return None


def parse_mcq(answer: str, options: tuple[str, ...] = ()) -> str | None:
    """The chosen letter, upper-case, or None when no single option can be read."""
    text = _clean(answer)
    if options:
        text = _drop_echo(text, options)
    if not text:
        return None
    valid = LETTERS[: len(options)] if options else LETTERS
    lead = _leading(text)
    stated = _stated(text)
    if lead is not None:
        letter, label = lead
        # "Option B is wrong; the answer is C": a letter starting a sentence yields to a
        # stated answer; a letter standing as a label ("C. ...") contradicts it.
        return _one(stated if stated and not label else stated | {letter}, valid)
    if stated:
        return _one(stated, valid)
    labelled = {next(g for g in m.groups() if g) for m in _LABELLED.finditer(text)}
    if labelled:
        return _one(labelled, valid)
    if options and (by_text := _by_option_text(text, options)):
        return by_text
    bare: set[str] = set()
    for m in _BARE.finditer(text):
        bare_letter = _letter_at(text, m.start(), lead=True)
        if bare_letter and not _NOT_BEFORE.search(text, 0, m.start()):
            bare.add(bare_letter)
    return _one(bare & set(valid), valid)


# -------------------------------------------------------------------------------------- TF

_TF_ECHO = re.compile(r"\b(?:true\s*(?:or|/)\s*false|false\s*(?:or|/)\s*true)\b")
_INTENSIFY = "entirely|completely|fully|wholly|necessarily|exactly|quite|always|totally|strictly"
_HEDGE = "partly|partially|half|somewhat|mostly|largely|kind\\s+of|sort\\s+of"
_ATTRIBUTIVE = (r"(?!\s+(?:intent|intentions?|purpose|goals?|aims?|motives?|motivations?|nature|"
                r"meaning|reasons?|identity|information|info|pretenses|pretences|impression|"
                r"sense|premise|positives?|negatives?|alarm|name|story|colors|colours|self)\b)")
_WORD = rf"(?:(?P<neg>not|never)\s+)?(?:(?P<qual>{_INTENSIFY}|{_HEDGE})\s+)?"
_VALUE = re.compile(rf"\b{_WORD}(?P<w>true|false|untrue)\b{_ATTRIBUTIVE}")
_SAID = re.compile(
    r"\b(?P<subj>answer|statement|claim|assertion)(?:'s\s+|\s*(?:(?:is|was|would\s+be|must\s+be|"
    r"seems(?:\s+to\s+be)?|appears(?:\s+to\s+be)?)\s+|[:=\-]\s*))"
    rf"{_WORD}(?P<w>true|false|untrue|correct|incorrect|accurate|inaccurate)\b"
)
_TF_LEAD = re.compile(
    r"^[\W_]*(?:(?:final\s+)?answer\s*(?:is\s*)?[:\-]?\s*|the\s+answer\s+is\s+)?"
    rf"(?P<w>true|false)\b{_ATTRIBUTIVE}"
)
_DISBELIEF = re.compile(r"\b(?:do|does|did)\s+not\s+(?:think|believe|say)\b")
_TF_JOINED = re.compile(r"\s*(?:,|/|&|\band\b|\bor\b)\s*(?:not\s+)?(?:true|false)\b")


def _tf_value(m: re.Match[str], text: str) -> set[bool]:
    """The value a true/false word gives; both values when it is hedged."""
    base = m["w"] in ("true", "correct", "accurate")
    qual = m["qual"] or ""
    if re.fullmatch(_HEDGE, qual) or (m["neg"] and qual):
        return {True, False}
    sentence = max(text.rfind(ch, 0, m.start()) for ch in ".!?;\n") + 1
    negated = bool(m["neg"]) != bool(_DISBELIEF.search(text, sentence, m.start()))
    return {not base} if negated else {base}


def _agreed(values: set[bool]) -> bool | None:
    return values.pop() if len(values) == 1 else None


def parse_tf(answer: str) -> bool | None:
    """True or False as the model answered it, or None when it can't be read."""
    text = _clean(answer).lower().replace("n't", " not")
    text = _TF_ECHO.sub(" ", text).strip()
    if not text:
        return None
    said = [(m["subj"], _tf_value(m, text)) for m in _SAID.finditer(text)]
    lead = _TF_LEAD.match(text)
    if lead is not None:
        if _TF_JOINED.match(text, lead.end("w")):
            return None
        value = lead["w"] == "true"
        answers = set().union(*(v for s, v in said if s == "answer"))
        return value if answers <= {value} else None
    if said:
        return _agreed(set().union(*(v for _, v in said)))
    found: set[bool] = set()
    for m in _VALUE.finditer(text):
        found |= _tf_value(m, text)
    return _agreed(found)


# ------------------------------------------------------------------------------ judge score


class JudgeParse(NamedTuple):
    """A judge's score read from its reply."""

    score: int
    """1..5."""
    explanation: str
    """The judge's explanation; "" when none could be read."""
    how: Literal["json", "lenient"]
    """"json": the reply was exactly the requested JSON; "lenient": read some other way."""


_FENCE = re.compile(r"^```[\w-]*[ \t]*\n?(?P<body>.*?)\n?[ \t]*```$", re.DOTALL)
_EXPLANATION_KEYS = ("explanation", "reason", "rationale", "reasoning", "justification")
_NUMBER = r"(?P<n>-?\d+(?:\.\d+)?)(?![\d.]*\s*(?:[-\u2013]|to)\s*\d)"
_TRUNCATED_SCORE = re.compile(r"[\"'](?:score|rating)[\"']\s*:\s*[\"']?" + _NUMBER, re.IGNORECASE)
_TRUNCATED_TEXT = re.compile(
    r"[\"'](?:" + "|".join(_EXPLANATION_KEYS) + r")[\"']\s*:\s*(?P<q>[\"'])(?P<t>(?:(?!(?P=q))[^\\]|\\.)*)",
    re.IGNORECASE)
_PROSE = (
    # Score: 4, Final score - 4, score of 4, Rating (1-5): 4, the score is 4
    re.compile(r"\b(?:score|rating|grade)\s*(?:\([^)]*\))?\s*(?:(?:is|would\s+be|of|=|:|-)\s*)*"
               r"(?:an?\s+)?" + _NUMBER, re.IGNORECASE),
    # I give it 4, I'd rate this a 2, I would assign 3, rated 4
    re.compile(r"\b(?:i(?:'d|\s+would|'ll|\s+will)?\s+(?:give|assign|award|rate)|(?:scored|rated))"
               r"(?:\s+(?:it|this|the\s+\w+|response|reply|dialogue|conversation|a|an|as|score\s+of))*\s+"
               + _NUMBER, re.IGNORECASE),
    # 4/5, 4 out of 5
    re.compile(r"(?<![\d.])" + _NUMBER + r"\s*(?:/|out\s+of)\s*5(?!\d|\.\d)", re.IGNORECASE),
)
_LONE = re.compile(r"(?<![\w.,/\-\u2013])[1-5](?![\w/\-\u2013]|[.,]\d)")


def _score_of(value: object) -> tuple[int | None, bool]:
    """(the score, whether it was exact: an int or integer-valued float in 1..5)."""
    if isinstance(value, bool):
        return None, False
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str) and (m := re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:/\s*5)?\s*", value)):
        number = float(m[1])
    else:
        return None, False
    if math.isnan(number) or not 1 <= number <= 5:
        return None, False
    exact = not isinstance(value, str) and number.is_integer()
    return math.floor(number), exact


def _from_object(obj: dict[str, object]) -> tuple[int | None, bool, str] | None:
    """(score, exact, explanation) of a JSON object; None when it has no score key."""
    keys = {k.lower(): k for k in obj if isinstance(k, str)}
    key = "score" if "score" in obj else keys.get("score") or keys.get("rating")
    if key is None:
        return None
    score, exact = _score_of(obj[key])
    explanation = next((v for k in _EXPLANATION_KEYS if isinstance(v := obj.get(keys.get(k, k)), str)), "")
    return score, exact and key == "score", explanation.strip()


def _embedded(text: str) -> list[dict[str, object]]:
    decoder, found = json.JSONDecoder(), []
    for i, ch in enumerate(text):
        if ch == "{":
            try:
                obj, _ = decoder.raw_decode(text, i)
            except ValueError:
                continue
            if isinstance(obj, dict):
                found.append(obj)
    return found


def _truncated_explanation(text: str) -> str:
    m = _TRUNCATED_TEXT.search(text)
    if m is None:
        return ""
    try:
        return str(json.loads(f'"{m["t"]}"')).strip()
    except ValueError:
        return m["t"].strip()


def parse_judge_score(text: str) -> JudgeParse | None:
    """The judge's 1-5 score and explanation, or None when no score can be read."""
    body = text.strip()
    if fence := _FENCE.match(body):
        body = fence["body"].strip()
    try:
        whole = json.loads(body)
    except ValueError:
        whole = None
    objects = [whole] if isinstance(whole, dict) else []
    for obj in objects + _embedded(body):
        read = _from_object(obj)
        if read is not None:
            score, exact, explanation = read
            if score is None:
                return None
            return JudgeParse(score, explanation, "json" if exact and obj is whole else "lenient")
    if isinstance(whole, (int, float)) and not isinstance(whole, bool):  # "4", "5.0"
        score, _ = _score_of(whole)
        return None if score is None else JudgeParse(score, "", "lenient")
    if m := _TRUNCATED_SCORE.search(body):
        score, _ = _score_of(float(m["n"]))
        return None if score is None else JudgeParse(score, _truncated_explanation(body), "lenient")
    labelled = False
    for pattern in _PROSE:
        scores: set[int] = set()
        for m in pattern.finditer(body):
            labelled = True
            score, _ = _score_of(float(m["n"]))
            if score is not None:
                scores.add(score)
        if scores:
            return JudgeParse(scores.pop(), "", "lenient") if len(scores) == 1 else None
    if labelled:
        return None
    lone = {m[0] for m in _LONE.finditer(body)}
    return JudgeParse(int(lone.pop()), "", "lenient") if len(lone) == 1 else None
