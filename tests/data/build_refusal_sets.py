"""Build the labelled refusal sets from hand-written templates and slot fillers.

Run from the repository root (deterministic: the same templates always give the same files):

    python tests/data/build_refusal_sets.py            # writes both splits
    python tests/data/build_refusal_sets.py --check    # fails if a written file is out of date

Two template banks feed two files, each written by its own module:

- `refusal_templates_heldout.py` -> `refusal_heldout_v2.jsonl`, the HELD-OUT split. It was written
  before the detector was changed, its phrasings and scenarios appear nowhere in the tuning bank, and
  its sha256 is frozen in tests/unit/scoring/test_refusal.py: the detector is never tuned on it.
- `refusal_templates_tuning.py` -> `refusal_tuning.jsonl`, the TUNING split.

Every line gets a `kind` (the behaviour, labelled by construction), a `style` (how the reply is
dressed: terse, chatty, rambling, markdown, truncated) and a `source` in words. See README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SPLITS = {"heldout": ("refusal_templates_heldout", "refusal_heldout_v2.jsonl"),
          "tuning": ("refusal_templates_tuning", "refusal_tuning.jsonl")}

REFUSED_KINDS = {"plain_refusal", "refusal_with_alternative", "indirect_refusal", "deflection",
                 "safe_redirect", "partial_refusal"}
COMPLIED_KINDS = {"compliance", "compliance_with_caveat", "hedge_then_comply", "refusal_idiom",
                  "picture_answer", "quoted_refusal"}
PAD_CLASS = {"deflection": "chat", "picture_answer": "chat", **{k: "refuse" for k in REFUSED_KINDS - {"deflection"}}}
STYLES = ("terse", "chatty", "rambling", "markdown", "truncated_48", "truncated_128")
SOURCE = {
    "terse": "written for this project in the style of a terse API model",
    "chatty": "written for this project in the style of a chatty open model",
    "rambling": "written for this project in the style of a tiny model that rambles and repeats itself",
    "markdown": "written for this project in the style of a model that answers in markdown",
    "truncated_48": "written for this project in the style of a chatty open model, truncated at 48 tokens",
    "truncated_128": "written for this project in the style of a chatty open model, truncated at 128 tokens",
    "hand": "hand-written for this project as a hard case",
}
# A rough token: one CJK character, one word, or one punctuation mark (BPE tokenisers split
# about as finely on these texts); used only to cut the truncated styles.
_TOKEN = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]|\w+|[^\w\s]")
_SENTENCE = re.compile(r"(?<=[.!?\u3002\uff01\uff1f])\s*(?=\S)")


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _low(s: str) -> str:
    """Lower-case the first letter unless the first word is an acronym or a proper 'I'."""
    first = s.split(" ", 1)[0]
    if first == "I" or first.startswith("I'") or (len(first) > 1 and first[:2].isupper()):
        return s
    return s[:1].lower() + s[1:]


def fill(template: str, slots: Mapping[str, str]) -> str:
    """`{name}` is the slot as written, `{Name}` capitalised, `{name_lc}` with a lower-case start."""
    def one(m: re.Match[str]) -> str:
        name = m.group(1)
        if name.endswith("_lc"):
            return _low(slots[name[:-3]])
        if name[0].isupper():
            return _cap(slots[name.lower()])
        return slots[name]
    return re.sub(r"\{(\w+)\}", one, template)


def truncate(text: str, tokens: int) -> str:
    """The first `tokens` rough tokens of `text`, cut where the last one ends."""
    for n, m in enumerate(_TOKEN.finditer(text), start=1):
        if n == tokens:
            return text[: m.end()]
    return text


def n_tokens(text: str) -> int:
    return sum(1 for _ in _TOKEN.finditer(text))


def dress(core: str, style: str, lang: Mapping[str, Any], refused: bool, pad_class: str,
          index: int) -> str | None:
    """The reply in `style`; None when the style cannot carry this reply without changing its label."""
    sentences = _SENTENCE.split(core.strip())
    if style == "terse":
        return core
    opener = lang["open_refuse" if refused else "open_help"][index % len(lang["open_refuse"])]
    closer = lang["close"][index % len(lang["close"])]
    sep = "" if lang["cjk"] else " "
    if style == "chatty":
        return f"{opener}{sep}{core}{sep}{closer}"
    if style == "rambling":
        first = sentences[0]
        filler = lang["ramble"][index % len(lang["ramble"])]
        body = core if lang["cjk"] else core.lower()
        again = first if lang["cjk"] else first.lower()
        return f"{filler}{sep}{body}{sep}{again}{sep}{again}"
    if style == "markdown":
        if len(sentences) == 1:
            return f"**{sentences[0]}**"
        if index % 3 == 0:
            rows = "\n".join(f"| {i} | {s} |" for i, s in enumerate(sentences, start=1))
            return f"| # | {lang['table_head']} |\n|---|---|\n{rows}"
        items = "\n".join(f"- {s}" for s in sentences[1:])
        return f"**{sentences[0]}**\n\n{items}"
    if style.startswith("truncated_"):
        limit = int(style.rsplit("_", 1)[1])
        pad = sep.join(lang["pad"][pad_class] * (limit // 48))  # longer cuts ramble on longer
        if n_tokens(f"{opener}{sep}{core}") <= limit:
            padded = f"{opener}{sep}{core}{sep}{pad}{sep}{closer}"
        elif n_tokens(core) <= limit:
            padded = f"{core}{sep}{pad}{sep}{closer}"
        else:
            return None
        cut = truncate(padded, limit)
        return cut if cut != padded else None
    raise ValueError(f"unknown style {style!r}")


def lines_for(bank: Any, split: str) -> Iterator[dict[str, Any]]:
    """Every labelled line of one template bank, in a fixed order."""
    counter = 0
    for code, lang in bank.LANGUAGES.items():
        styles: Sequence[str] = lang.get("styles", STYLES)
        for key, templates in lang["templates"].items():
            kind, _, pool_name = key.partition("@")  # "compliance@unsafe": that kind, unsafe requests
            pool = lang[pool_name or bank.POOL.get(kind, "safe")]
            for t_no, template in enumerate(templates):
                for slots in pool:
                    counter += 1
                    core = fill(template, slots)
                    refused = kind in REFUSED_KINDS
                    text = None
                    for shift in range(len(styles)):
                        style = styles[(counter + shift) % len(styles)]
                        text = dress(core, style, lang, refused, PAD_CLASS.get(kind, "help"), counter)
                        if text is not None:
                            break
                    assert text is not None
                    row: dict[str, Any] = {"text": text, "refused": refused, "kind": kind, "language": code,
                                           "style": style, "source": SOURCE[style],
                                           "template": f"{split}/{code}/{kind}/{t_no}"}
                    if kind == "deflection" or counter % 10 != 0:  # most lines carry the request
                        row["request"] = slots["request"]
                    yield row
    for n, hand in enumerate(bank.HANDWRITTEN):
        row = {"text": hand["text"], "refused": hand["kind"] in REFUSED_KINDS, "kind": hand["kind"],
               "language": hand.get("language", "en"), "style": "hand", "source": SOURCE["hand"],
               "template": f"{split}/hand/{n}"}
        if "request" in hand:
            row["request"] = hand["request"]
        yield row


def build(split: str) -> tuple[Path, str]:
    module, filename = SPLITS[split]
    sys.path.insert(0, str(HERE))
    bank = importlib.import_module(module)
    seen: set[str] = set()
    out = []
    for row in lines_for(bank, split):
        if row["text"] in seen:
            continue
        seen.add(row["text"])
        assert row["kind"] in REFUSED_KINDS | COMPLIED_KINDS, row
        out.append(json.dumps(row, ensure_ascii=False, sort_keys=False))
    return HERE / filename, "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a file differs from what would be built")
    parser.add_argument("--split", choices=sorted(SPLITS), action="append", help="only this split")
    args = parser.parse_args(argv)
    status = 0
    for split in args.split or sorted(SPLITS):
        path, content = build(split)
        digest = hashlib.sha256(content.encode()).hexdigest()
        if args.check:
            same = path.is_file() and path.read_text(encoding="utf-8") == content
            print(f"{path.name}: {'up to date' if same else 'OUT OF DATE'} ({digest})")
            status |= not same
        else:
            path.write_text(content, encoding="utf-8")
            print(f"{path.name}: {content.count(chr(10))} lines, sha256 {digest}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
