"""Results written by the benchmark's official inference script, read for scoring with our metrics.

The official script writes, under its output root::

    <root>/<model_type>/<split>/multimodal_unsafe.json   (split: type_a or type_b)
                               /multimodal_safe.json
                               /unimodal_unsafe.json
                               /unimodal_safe.json
                               /all_results.json          (ignored: the same records again)
    <root>/<model_type>/efficiency_summary.json           (ignored)

Each view file is a JSON list of records, one per dialogue: the three user turns and the model's
replies (`dialogue.R1` .. `dialogue.R3_model_response`), the MCQs asked on that transcript and,
on unsafe records, the true/false items, each with the model's raw answer and the official
parser's reading of it.

`read_official` turns every record into a `Transcript`: a `Case` built as our own loaders build
one, plus the replies and answers, so the run can be scored as if we had rolled it out. Bad input
is never skipped: every problem in every file is collected and reported in one `DataError`
naming the file, the row id and the field. A question the model did not answer
(`model_answer_raw` null) is not a problem: its answer is kept as "" and counts as unparsed.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, model_validator

from pytest_mtmcs.dataset.cases import Case, Question, case_id
from pytest_mtmcs.dataset.loaders import MAX_REPORTED
from pytest_mtmcs.dataset.schema import (
    LETTERS,
    MODALITIES,
    SAFETIES,
    SPLITS,
    Modality,
    Safety,
    Split,
)
from pytest_mtmcs.errors import DataError

__all__ = ["VIEW_FILES", "ResultFile", "Transcript", "find_result_files", "read_official"]

VIEW_FILES: dict[str, tuple[Modality, Safety]] = {
    f"{m}_{s}.json": (m, s) for m in MODALITIES for s in SAFETIES
}
"""The official view file names, each with the dialogues it holds."""

_LAYOUTS = (
    "expected the official output root (<root>/<model_type>/type_a/multimodal_unsafe.json, ...), "
    "one model's folder (<model_type>/type_a/multimodal_unsafe.json, ...) or one split folder "
    "(type_a/ or type_b/ holding " + ", ".join(VIEW_FILES) + ")"
)


class Transcript(BaseModel):
    """One dialogue of an official run: what was asked, what the model replied and answered."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    model: str
    """The model's name: its `<model_type>` folder in the official output."""
    case: Case
    """The dialogue as a case: split, row id, modality, safety, the three user turns as given,
    the questions asked on it; `intent` is "" (the official files do not carry it), `image` is
    None, `caption` comes from the captions mapping, `source` is the view file's path."""
    replies: tuple[str, str, str]
    """The model's three replies, in order."""
    answers: dict[str, str]
    """Question suffix (`mcq2`, `tf0`) -> the model's raw answer text; "" when the official run
    recorded none (`model_answer_raw` null), which scores as unparsed."""
    official_parsed: dict[str, str | None]
    """Question suffix -> the official parser's reading of the answer, in our notation (an
    upper-case letter for MCQs, "true"/"false" for TF items), or None when it found none."""

    @model_validator(mode="after")
    def _one_answer_per_question(self) -> Transcript:
        suffixes = {q.suffix for q in self.case.questions}
        for name, got in (("answers", self.answers), ("official_parsed", self.official_parsed)):
            if set(got) != suffixes:
                raise ValueError(f"{name} must have one entry per question "
                                 f"({', '.join(sorted(suffixes)) or 'none'}), got "
                                 f"{', '.join(sorted(got)) or 'none'}")
        return self


class ResultFile(NamedTuple):
    """One official view file and what it holds."""

    model: str
    split: Split
    modality: Modality
    safety: Safety
    path: Path


# ---------------------------------------------------------------------------------- finding
def _split_files(folder: Path, model: str, split: Split) -> list[ResultFile]:
    return [ResultFile(model, split, m, s, folder / name)
            for name, (m, s) in VIEW_FILES.items() if (folder / name).is_file()]


def _model_files(folder: Path, model: str) -> list[ResultFile]:
    found: list[ResultFile] = []
    for split in SPLITS:
        if (folder / split).is_dir():
            found += _split_files(folder / split, model, split)
    return found


def find_result_files(root: Path) -> list[ResultFile]:
    """Every official view file under `root`, as (model, split, modality, safety, path), sorted.

    `root` may be the official output root (one folder per model below it), one model's folder
    (`type_a/`, `type_b/` below it) or one split folder (named `type_a` or `type_b`). In the last
    two the model's name is the model folder's name (the records' own `model_type` is not
    used, so a renamed folder renames the model). A split folder may hold only some of the
    four views (a partial run); `all_results.json` and `efficiency_summary.json` are ignored.
    """
    root = Path(root)
    if not root.exists():
        raise DataError(f"the folder does not exist; {_LAYOUTS}", file=str(root))
    if not root.is_dir():
        raise DataError(f"expected a folder, got a file; {_LAYOUTS}", file=str(root))
    here = root.resolve()
    if any((root / name).is_file() for name in VIEW_FILES):
        split = next((s for s in SPLITS if s == here.name), None)
        if split is None:
            raise DataError(f"the folder holds official view files, so it must be a split folder "
                            f"named {' or '.join(SPLITS)}, not {here.name!r}", file=str(root))
        found = _split_files(root, here.parent.name, split)
    else:
        found = _model_files(root, here.name)
        if not found:
            for child in sorted(p for p in root.iterdir() if p.is_dir()):
                found += _model_files(child, child.name)
    if not found:
        raise DataError(f"no official result files found; {_LAYOUTS}", file=str(root))
    return sorted(found)


# ---------------------------------------------------------------------------------- reading
def read_official(root: Path, captions: Mapping[str, str] | None = None) -> list[Transcript]:
    """Every dialogue of the official results under `root` (see `find_result_files`).

    `captions` maps a row id (as a string) to its image caption. Sorted by (model, split,
    row id, modality, safety). Raises one `DataError` listing every problem found in any file.
    """
    problems: list[DataError] = []
    out: list[Transcript] = []
    for rf in find_result_files(root):
        out += _read_file(rf, captions, problems)
    if problems:
        _raise_all(problems, root)
    out.sort(key=lambda t: (t.model, t.case.split, t.case.row_id, t.case.modality, t.case.safety))
    return out


def _raise_all(problems: list[DataError], root: Path) -> None:
    if len(problems) == 1:
        raise problems[0]
    shown = "\n  ".join(str(e) for e in problems[:MAX_REPORTED])
    tail = ""
    if len(problems) > MAX_REPORTED:
        counts = Counter(e.field or "(whole file or record)" for e in problems)
        by_field = ", ".join(f"{f} x{n}" for f, n in counts.most_common())
        tail = f"\n  ... and {len(problems) - MAX_REPORTED} more (all problems by field: {by_field})"
    raise DataError(f"{len(problems)} problems in the official results:\n  {shown}{tail}",
                    file=str(root))


def _got(value: object) -> str:
    """A short description of a JSON value for an error message."""
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _load(path: Path, problems: list[DataError]) -> list[Any] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        problems.append(DataError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", file=str(path)))
        return None
    except OSError as exc:
        problems.append(DataError(f"cannot be read: {exc.strerror or exc}", file=str(path)))
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        problems.append(DataError(f"not valid JSON ({exc.msg} at line {exc.lineno}, column "
                                  f"{exc.colno})", file=str(path)))
        return None
    except RecursionError:
        problems.append(DataError("not valid JSON (nested too deeply)", file=str(path)))
        return None
    if not isinstance(data, list):
        problems.append(DataError(f"expected a JSON list of records, got {_got(data)}", file=str(path)))
        return None
    return data


def _row_id(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _read_file(rf: ResultFile, captions: Mapping[str, str] | None,
               problems: list[DataError]) -> list[Transcript]:
    data = _load(rf.path, problems)
    if data is None:
        return []
    out: list[Transcript] = []
    first_at: dict[int, int] = {}
    for pos, raw in enumerate(data):
        if not isinstance(raw, dict):
            problems.append(DataError(f"expected a JSON object per record, got {_got(raw)}",
                                      file=str(rf.path), row=f"#{pos} (not an object)"))
            continue
        row_id = _row_id(raw.get("id"))
        label: object = row_id if row_id is not None else f"#{pos} (no usable id)"
        before = len(problems)

        def bad(message: str, field: str, label: object = label) -> None:
            problems.append(DataError(message, file=str(rf.path), row=label, field=field))

        if row_id is None:
            value = raw.get("id")
            if value is None or value == "":
                bad(f"expected the row id, got {'nothing (missing)' if 'id' not in raw else _got(value)}",
                    "id")
            else:
                bad(f"expected the row id as a non-negative integer, got {_got(value)}", "id")
        elif row_id in first_at:
            bad(f"the row appears more than once in this file (records #{first_at[row_id]} and "
                f"#{pos}); each (id, modality, intent_variant) must appear once per model and split",
                "id")
        else:
            first_at[row_id] = pos
        for key, want, named_by in (("split", rf.split, "folder"), ("modality", rf.modality, "file"),
                                    ("intent_variant", rf.safety, "file")):
            value = raw.get(key)
            if value is not None and value != want:
                bad(f"expected {want!r} as the {named_by} name says, got {_got(value)}", key)
        turns, replies = _dialogue(raw, bad)
        mcq = _questions(raw, "mcq", rf.safety, bad)
        tf = _questions(raw, "tf", rf.safety, bad)
        if len(problems) > before or row_id is None or turns is None or replies is None:
            continue
        items = sorted(mcq, key=lambda x: x[0].index) + sorted(tf, key=lambda x: x[0].index)
        case = Case(
            id=case_id(rf.split, row_id, rf.modality, rf.safety), split=rf.split, row_id=row_id,
            modality=rf.modality, safety=rf.safety, turns=turns, image=None, intent="",
            caption=captions.get(str(row_id)) if captions is not None else None,
            questions=tuple(q for q, _, _ in items), source=str(rf.path),
        )
        out.append(Transcript(
            model=rf.model, case=case, replies=replies,
            answers={q.suffix: raw_answer for q, raw_answer, _ in items},
            official_parsed={q.suffix: parsed for q, _, parsed in items},
        ))
    return out


_Bad = Callable[[str, str], None]


def _dialogue(raw: dict[str, Any], bad: _Bad) -> tuple[tuple[str, str, str] | None,
                                                      tuple[str, str, str] | None]:
    dlg = raw.get("dialogue")
    if not isinstance(dlg, dict):
        bad(f"expected an object with R1..R3 and R1_model_response..R3_model_response, got "
            f"{'nothing (missing)' if 'dialogue' not in raw else _got(dlg)}", "dialogue")
        return None, None
    turns: list[str] = []
    replies: list[str] = []
    for i in (1, 2, 3):
        turn = dlg.get(f"R{i}")
        if isinstance(turn, str) and turn.strip():
            turns.append(turn)
        else:
            got = "nothing (missing)" if f"R{i}" not in dlg else _got(turn)
            bad(f"expected user turn {i} as non-empty text, got {got}", f"dialogue.R{i}")
        key = f"R{i}_model_response"
        reply = dlg.get(key)
        if isinstance(reply, str):
            replies.append(reply)
        elif key not in dlg:
            bad("expected the model's reply, got nothing (the field is missing; the official run "
                "may have stopped before this turn: re-run it or drop the row)", f"dialogue.{key}")
        elif reply is None:
            bad("expected the model's reply, got null (the official run failed on this turn; "
                "re-run it or drop the row)", f"dialogue.{key}")
        else:
            bad(f"expected the model's reply as text, got {_got(reply)}", f"dialogue.{key}")
    if len(turns) != 3 or len(replies) != 3:
        return None, None
    return (turns[0], turns[1], turns[2]), (replies[0], replies[1], replies[2])


def _questions(raw: dict[str, Any], kind: str, safety: Safety,
               bad: _Bad) -> list[tuple[Question, str, str | None]]:
    """The record's `mcq` or `tf` items as (question, raw answer, official reading)."""
    items = raw.get(kind)
    if not isinstance(items, list):
        got = "nothing (missing)" if kind not in raw else _got(items)
        bad(f"expected a list of {'MCQ' if kind == 'mcq' else 'true/false'} items (possibly "
            f"empty), got {got}", kind)
        return []
    if kind == "tf" and safety == "safe" and items:
        bad(f"expected an empty list, got {_got(items)}: true/false items are asked on the unsafe "
            "transcript only, so a safe record carries none", kind)
        return []
    out: list[tuple[Question, str, str | None]] = []
    idx_at: dict[int, int] = {}
    for pos, item in enumerate(items):
        where = f"{kind}[{pos}]"
        if not isinstance(item, dict):
            bad(f"expected an object per question, got {_got(item)}", where)
            continue
        ok = True

        def fail(message: str, field: str, where: str = where) -> None:
            nonlocal ok
            ok = False
            bad(message, f"{where}.{field}")

        index: int | None = pos  # no idx: the position in this record's list
        value = item.get("idx")
        if value is not None:
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                index = value
            else:
                index = None
                fail(f"expected the question's index in the row's {kind} list (a non-negative "
                     f"integer), got {_got(value)}", "idx")
        if index is not None and index in idx_at:
            fail(f"index {index} is already used by {kind}[{idx_at[index]}] of this record; each "
                 "question of a record needs its own idx", "idx")
        elif index is not None:
            idx_at[index] = pos
        text = item.get("question")
        if not isinstance(text, str):
            fail(f"expected the question text, got {_got(text) if 'question' in item else 'nothing'}",
                 "question")
        answer_raw = item.get("model_answer_raw")
        if answer_raw is not None and not isinstance(answer_raw, str):
            fail(f"expected the model's answer as text or null, got {_got(answer_raw)}",
                 "model_answer_raw")
        if kind == "mcq":
            parsed, truth, options, qtype = _mcq_fields(item, safety, fail)
        else:
            parsed, truth = _tf_fields(item, fail)
            options, qtype = (), None
        if not ok:
            continue
        assert isinstance(text, str) and truth is not None and index is not None
        question = Question(kind="mcq" if kind == "mcq" else "tf", index=index, question=text,
                            options=options, answer=truth, question_type=qtype)
        out.append((question, answer_raw if isinstance(answer_raw, str) else "", parsed))
    return out


def _mcq_fields(item: dict[str, Any], safety: Safety, fail: _Bad
                ) -> tuple[str | None, str | None, tuple[str, ...], str | None]:
    """(official reading, ground-truth letter, options, question type) of one MCQ."""
    options: tuple[str, ...] = ()
    value = item.get("options")
    if (isinstance(value, list) and all(isinstance(o, str) for o in value)
            and 2 <= len(value) <= len(LETTERS)):
        options = tuple(value)
    else:
        fail(f"expected a list of 2 to {len(LETTERS)} option strings, got "
             f"{_got(value) if 'options' in item else 'nothing'}", "options")
    truth: str | None = None
    value = item.get("ground_truth")
    if not isinstance(value, str) or not value.strip():
        fail(f"expected the correct option's letter, got "
             f"{_got(value) if 'ground_truth' in item else 'nothing (missing)'}", "ground_truth")
    elif len(letter := value.strip().upper()) != 1 or letter not in LETTERS:
        fail(f"expected one letter A-{LETTERS[-1]}, got {_got(value)}", "ground_truth")
    elif options and LETTERS.index(letter) >= len(options):
        fail(f"ground truth {letter!r} names no option: there are {len(options)} options "
             f"(A-{LETTERS[len(options) - 1]})", "ground_truth")
    else:
        truth = letter
    qtype = item.get("question_type")
    if qtype is not None:
        if not isinstance(qtype, str) or not qtype.lower().startswith(("safe", "unsafe")):
            fail(f"expected text starting with 'safe' or 'unsafe', got {_got(qtype)}", "question_type")
        elif ("unsafe" if qtype.lower().startswith("unsafe") else "safe") != safety:
            fail(f"expected a question type starting with {safety!r} in a {safety} record (the "
                 f"official script files each MCQ under the transcript it is asked on), got "
                 f"{_got(qtype)}", "question_type")
    parsed = item.get("model_answer_choice")
    if parsed is not None and not isinstance(parsed, str):
        fail(f"expected the official parser's letter or null, got {_got(parsed)}",
             "model_answer_choice")
        parsed = None
    reading = (parsed.strip().upper() or None) if isinstance(parsed, str) else None
    return reading, truth, options, qtype if isinstance(qtype, str) else None


def _tf_fields(item: dict[str, Any], fail: _Bad) -> tuple[str | None, str | None]:
    """(official reading, ground truth) of one true/false item, as "true"/"false"."""
    truth: str | None = None
    value = item.get("ground_truth")
    if isinstance(value, bool):
        truth = "true" if value else "false"
    else:
        fail(f"expected true or false, got {_got(value) if 'ground_truth' in item else 'nothing (missing)'}",
             "ground_truth")
    parsed = item.get("model_answer_bool")
    if parsed is None:
        return None, truth
    if not isinstance(parsed, bool):
        fail(f"expected the official parser's true/false or null, got {_got(parsed)}",
             "model_answer_bool")
        return None, truth
    return ("true" if parsed else "false"), truth
