"""AdaShield-A's scenario table and how a dialogue is matched to a scenario (used by
`adashield-a` in `prompting`).

`adashield_table.json` lists scenarios, each a description and a defense prompt, and a threshold
per similarity method. `choose_scenario` compares the text of a dialogue's user turns with every
description: TF-IDF cosine over word stems (`tfidf_similarity`, pure Python), or the cosine of
sentence-transformers embeddings (`EmbeddingSimilarity`, imported only when used).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_mtmcs.chat import Conversation
from pytest_mtmcs.dataset.resources import Traversable, describe
from pytest_mtmcs.errors import SpecError
from pytest_mtmcs.targets.quiet import quiet_loading


@dataclass(frozen=True)
class Scenario:
    """One row of the AdaShield-A table."""

    name: str
    description: str
    """What risky requests of this scenario say; compared with the dialogue's user text."""
    defense: str
    """The defense prompt prepended when this scenario is chosen."""


Similarity = Callable[[str, Sequence[str]], list[float]]
"""(query, documents) -> one similarity per document, higher is more similar."""

_WORD = re.compile(r"[a-z]+")
_STOP = frozenset(re.findall(r"[a-z]+", """
a about after again all also am an and any are as at be been before being both but by can could did
do does doing for from had has have having he her here hers him his
how i if in into is it its just me more most my no nor not of off on once only or other our out
over own same she should so some such than that the their them then there these they this those
through to too under until up very was we were what when where which while who whom why will
with would you your yours one ones thing things get gets got getting make makes made making want
wants know knows tell really like down back away find someone something anything people person
take takes taking took keep keeps real go goes going went come comes came use uses using used
way ways time times day days every ever never much many look looks looking need needs help
try see say think put let give good best first new old long sure yes okay lot kind sort"""))


def stem(word: str) -> str:
    """A crude suffix stripper, the same on both sides of a comparison: poisoning, poisoned,
    poisons -> poison; fires, fire -> fir."""
    for suffix in ("ing", "ed", "s"):
        if word.endswith(suffix) and not word.endswith("ss") and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    return word[:-1] if word.endswith("e") and len(word) >= 4 else word


def terms(text: str) -> list[str]:
    """Lower-cased word stems of `text`, stop words left out."""
    return [stem(w) for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 2]


def tfidf_similarity(query: str, documents: Sequence[str]) -> list[float]:
    """Cosine between TF-IDF vectors of `query` and each document. Fitted on the documents:
    idf = ln((1 + n) / (1 + df)) + 1, tf = 1 + ln(count); query words no document uses are
    ignored (so a long dialogue is not penalised for its everyday words)."""
    docs = [Counter(terms(d)) for d in documents]
    n = len(docs)
    df = Counter(t for d in docs for t in d)
    idf = {t: math.log((1 + n) / (1 + c)) + 1 for t, c in df.items()}

    def vector(counts: Counter[str]) -> dict[str, float]:
        return {t: (1 + math.log(c)) * idf[t] for t, c in counts.items() if t in idf}

    q = vector(Counter(terms(query)))
    q_norm = math.sqrt(sum(v * v for v in q.values()))
    out = []
    for d in docs:
        v = vector(d)
        norm = math.sqrt(sum(x * x for x in v.values()))
        dot = sum(w * v.get(t, 0.0) for t, w in q.items())
        out.append(dot / (q_norm * norm) if q_norm and norm else 0.0)
    return out


class EmbeddingSimilarity:
    """Cosine of sentence-transformers embeddings (a local model folder); descriptions are
    embedded once."""

    def __init__(self, path: str, device: str = "cpu") -> None:
        from sentence_transformers import SentenceTransformer

        with quiet_loading():
            self.model: Any = SentenceTransformer(path, device=device)
        self._docs: dict[tuple[str, ...], Any] = {}

    def __call__(self, query: str, documents: Sequence[str]) -> list[float]:
        key = tuple(documents)
        if key not in self._docs:
            self._docs[key] = self.model.encode(list(key), normalize_embeddings=True)
        q = self.model.encode([query], normalize_embeddings=True)[0]
        return [float(q @ d) for d in self._docs[key]]


def choose_scenario(text: str, scenarios: Sequence[Scenario], similarity: Similarity,
                    threshold: float) -> tuple[Scenario | None, float]:
    """(the scenario most similar to `text` (the first on ties), its similarity); the scenario
    is None when that similarity is below `threshold`."""
    if not scenarios:
        return None, 0.0
    sims = similarity(text, [s.description for s in scenarios])
    best = max(range(len(sims)), key=lambda i: (sims[i], -i))
    return (scenarios[best] if sims[best] >= threshold else None), sims[best]


def user_text(conversation: Conversation) -> str:
    """The text of every user turn, one per line."""
    return "\n".join(m.text for m in conversation if m.role == "user")


def load_table(file: Traversable) -> tuple[list[Scenario], dict[str, float]]:
    """(scenarios, thresholds by method) from an AdaShield-A table file (a Path, or a packaged
    file read through importlib.resources)."""
    path = describe(file)
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
        scenarios = [Scenario(str(s["name"]), str(s["description"]), str(s["defense"]))
                     for s in raw["scenarios"]]
        thresholds = {k: float(v) for k, v in raw["threshold"].items()}
        _ = thresholds["tfidf"], thresholds["embedding"]
    except (ValueError, KeyError, TypeError) as exc:
        raise SpecError(f"AdaShield-A table {path}: expected JSON with 'threshold' "
                        "{'tfidf': float, 'embedding': float} and 'scenarios' [{'name', "
                        f"'description', 'defense'}}, ...]: {type(exc).__name__}: {exc}") from None
    if not scenarios:
        raise SpecError(f"AdaShield-A table {path} has no scenarios")
    return scenarios, thresholds

