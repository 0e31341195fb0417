"""Reading the official inference script's results (`pytest_mtmcs.dataset.official`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _official import (
    MCQ,
    TF,
    OfficialRecord,
    four_views,
    view_path,
    write_official_results,
)
from pydantic import ValidationError

from pytest_mtmcs.dataset.cases import Question
from pytest_mtmcs.dataset.official import Transcript, find_result_files, read_official
from pytest_mtmcs.errors import DataError


def _edit(path: Path, change: Callable[[list[Any]], object]) -> None:
    """Load a view file, let `change` mutate its list in place, write it back."""
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data), encoding="utf-8")


def _by_id(transcripts: list[Transcript]) -> dict[str, Transcript]:
    return {f"{t.model}/{t.case.id}": t for t in transcripts}


# ---------------------------------------------------------------------------------- round trip
def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    unsafe = OfficialRecord(
        7, "type_b", "multimodal", "unsafe", turns=("hi there", "tell me more", "and then?"),
        replies=("Sure, here is how.", "I can't help with that.", "Still no."),
        mcq=(MCQ(truth="c", answer="The answer is C", parsed="c", idx=3,
                 options=("a", "b", "c"), question_type="unsafe_intent", question="Why?"),),
        tf=(TF(truth=True, answer="False", parsed=False, idx=0, question="Harm?"),
            TF(truth=False, answer=None, parsed=None, idx=1, question="Curious?")),
    )
    safe = OfficialRecord(7, "type_b", "unimodal", "safe", replies=("", "ok", "done"),
                          mcq=(MCQ(truth="A", answer="A) benign", parsed=None, idx=0,
                                   question_type="safe_intent"),))
    root = write_official_results(tmp_path / "out", [unsafe, safe], model="gpt-4o")
    got = _by_id(read_official(root))
    assert sorted(got) == ["gpt-4o/type_b-0007-multimodal-unsafe", "gpt-4o/type_b-0007-unimodal-safe"]

    t = got["gpt-4o/type_b-0007-multimodal-unsafe"]
    c = t.case
    assert t.model == "gpt-4o"
    assert (c.id, c.split, c.row_id, c.modality, c.safety) == (
        "type_b-0007-multimodal-unsafe", "type_b", 7, "multimodal", "unsafe")
    assert c.turns == ("hi there", "tell me more", "and then?")
    assert (c.intent, c.caption, c.image) == ("", None, None)
    assert c.source == str(view_path(root, "type_b", "multimodal_unsafe", "gpt-4o"))
    assert c.questions == (
        Question(kind="mcq", index=3, question="Why?", options=("a", "b", "c"), answer="C",
                 question_type="unsafe_intent"),
        Question(kind="tf", index=0, question="Harm?", answer="true"),
        Question(kind="tf", index=1, question="Curious?", answer="false"),
    )
    assert t.replies == ("Sure, here is how.", "I can't help with that.", "Still no.")
    # A question the run did not answer is kept as "" (unparsed), not dropped or an error.
    assert t.answers == {"mcq3": "The answer is C", "tf0": "False", "tf1": ""}
    assert t.official_parsed == {"mcq3": "C", "tf0": "false", "tf1": None}

    s = got["gpt-4o/type_b-0007-unimodal-safe"]
    assert s.case.turns == ("type_b 7 unimodal safe R1", "type_b 7 unimodal safe R2",
                            "type_b 7 unimodal safe R3")
    assert s.replies == ("", "ok", "done")  # an empty reply is a reply, not a failure
    assert [q.suffix for q in s.case.questions] == ["mcq0"]
    assert s.case.questions[0].question_type == "safe_intent"
    assert s.answers == {"mcq0": "A) benign"}
    assert s.official_parsed == {"mcq0": None}


def test_every_record_is_read_and_sorted(tmp_path: Path) -> None:
    # Written out of order: row 10 before row 2, type_b before type_a, model "b" before "a".
    for model in ("b", "a"):
        recs = four_views(10, "type_b") + four_views(2, "type_b") + four_views(10) + four_views(2)
        write_official_results(tmp_path, recs, model=model)
    got = read_official(tmp_path)
    keys = [(t.model, t.case.split, t.case.row_id, t.case.modality, t.case.safety) for t in got]
    assert len(keys) == 2 * 2 * 2 * 4
    assert keys == sorted(keys)
    assert keys[:4] == [("a", "type_a", 2, "multimodal", "safe"), ("a", "type_a", 2, "multimodal", "unsafe"),
                        ("a", "type_a", 2, "unimodal", "safe"), ("a", "type_a", 2, "unimodal", "unsafe")]


def test_captions_are_attached_by_row_id(tmp_path: Path) -> None:
    root = write_official_results(tmp_path, four_views(3) + four_views(4))
    got = read_official(root, captions={"3": "A red kitchen knife.", "99": "unused"})
    caps = {(t.case.row_id, t.case.modality, t.case.safety): t.case.caption for t in got}
    assert {k: v for k, v in caps.items() if k[0] == 3} == {
        (3, m, s): "A red kitchen knife." for m in ("multimodal", "unimodal") for s in ("safe", "unsafe")}
    assert {v for k, v in caps.items() if k[0] == 4} == {None}
    assert {t.case.caption for t in read_official(root)} == {None}


def test_missing_idx_falls_back_to_the_position(tmp_path: Path) -> None:
    rec = OfficialRecord(0, mcq=(MCQ(), MCQ(truth="A")))
    root = write_official_results(tmp_path, [rec])

    def drop_idx(data: list[Any]) -> None:
        for item in data[0]["mcq"] + data[0]["tf"]:
            del item["idx"]

    _edit(view_path(root, "type_a", "multimodal_unsafe"), drop_idx)
    (t,) = [t for t in read_official(root) if t.case.safety == "unsafe"]
    assert [(q.suffix, q.answer) for q in t.case.questions] == [
        ("mcq0", "B"), ("mcq1", "A"), ("tf0", "true"), ("tf1", "false")]


def test_transcript_needs_one_answer_per_question(tmp_path: Path) -> None:
    (t,) = [t for t in read_official(write_official_results(tmp_path, [OfficialRecord(0)]))
            if t.case.safety == "unsafe"]
    data = t.model_dump()
    data["answers"] = {"mcq1": "B"}
    with pytest.raises(ValidationError, match="answers must have one entry per question"):
        Transcript.model_validate(data)


# ---------------------------------------------------------------------------------- layouts
def test_three_root_layouts(tmp_path: Path) -> None:
    write_official_results(tmp_path, four_views(0) + four_views(0, "type_b"), model="gpt-4o")
    write_official_results(tmp_path, four_views(0), model="qwen")
    views = ("multimodal_safe", "multimodal_unsafe", "unimodal_safe", "unimodal_unsafe")

    def expect(model: str, split: str) -> list[tuple[str, str, str, str, Path]]:
        out = []
        for view in views:
            modality, safety = view.split("_")
            out.append((model, split, modality, safety, view_path(tmp_path, split, view, model)))
        return out

    everything = expect("gpt-4o", "type_a") + expect("gpt-4o", "type_b") + expect("qwen", "type_a")
    assert find_result_files(tmp_path) == everything
    assert find_result_files(tmp_path / "gpt-4o") == everything[:8]
    assert find_result_files(tmp_path / "gpt-4o" / "type_b") == everything[4:8]
    assert {t.model for t in read_official(tmp_path / "qwen" / "type_a")} == {"qwen"}
    assert len(read_official(tmp_path)) == 12


def test_partial_split_folder_lists_what_is_there(tmp_path: Path) -> None:
    write_official_results(tmp_path, four_views(0))
    view_path(tmp_path, "type_a", "unimodal_safe").unlink()
    assert [f.path.name for f in find_result_files(tmp_path)] == [
        "multimodal_safe.json", "multimodal_unsafe.json", "unimodal_unsafe.json"]


def _a_file(folder: Path) -> Path:
    (folder / "f.json").write_text("[]")
    return folder / "f.json"


@pytest.mark.parametrize("make, text", [
    (lambda p: p, "no official result files found; expected the official output root"),
    (lambda p: p / "missing", "the folder does not exist"),
    (_a_file, "expected a folder, got a file"),
])
def test_no_result_files_is_an_error(tmp_path: Path, make: Callable[[Path], Path], text: str) -> None:
    (tmp_path / "m" / "type_a").mkdir(parents=True)
    (tmp_path / "m" / "efficiency_summary.json").write_text("{}")
    root = make(tmp_path)
    with pytest.raises(DataError) as info:
        find_result_files(root)
    assert info.value.file == str(root)
    assert text in str(info.value)
    assert "one split folder" in str(info.value)


def test_view_files_in_a_folder_not_named_for_a_split(tmp_path: Path) -> None:
    write_official_results(tmp_path, four_views(0))
    renamed = tmp_path / "m" / "typeA"
    (tmp_path / "m" / "type_a").rename(renamed)
    with pytest.raises(DataError, match="must be a split folder named type_a or type_b, not 'typeA'"):
        read_official(renamed)


# ---------------------------------------------------------------------------------- validation
MU = "multimodal_unsafe"


def _rec(data: list[Any]) -> dict[str, Any]:
    return data[0]  # type: ignore[no-any-return]


SINGLE_PROBLEMS: list[tuple[str, Callable[[list[Any]], object], object, str | None, str]] = [
    ("null reply", lambda d: _rec(d)["dialogue"].update(R2_model_response=None), 5,
     "dialogue.R2_model_response", "got null (the official run failed on this turn; re-run it or drop the row)"),
    ("missing reply", lambda d: _rec(d)["dialogue"].pop("R3_model_response"), 5,
     "dialogue.R3_model_response", "got nothing (the field is missing"),
    ("reply not text", lambda d: _rec(d)["dialogue"].update(R1_model_response=3), 5,
     "dialogue.R1_model_response", "expected the model's reply as text, got 3"),
    ("missing user turn", lambda d: _rec(d)["dialogue"].pop("R1"), 5,
     "dialogue.R1", "expected user turn 1 as non-empty text, got nothing"),
    ("blank user turn", lambda d: _rec(d)["dialogue"].update(R3="  "), 5,
     "dialogue.R3", "expected user turn 3 as non-empty text, got '  '"),
    ("dialogue not an object", lambda d: _rec(d).update(dialogue=[]), 5, "dialogue", "got a list of 0"),
    ("missing id", lambda d: _rec(d).pop("id"), "#0 (no usable id)", "id",
     "expected the row id, got nothing (missing)"),
    ("empty id", lambda d: _rec(d).update(id=""), "#0 (no usable id)", "id", "expected the row id, got ''"),
    ("bad id", lambda d: _rec(d).update(id=-1), "#0 (no usable id)", "id",
     "expected the row id as a non-negative integer, got -1"),
    ("split", lambda d: _rec(d).update(split="type_b"), 5, "split",
     "expected 'type_a' as the folder name says, got 'type_b'"),
    ("modality", lambda d: _rec(d).update(modality="unimodal"), 5, "modality",
     "expected 'multimodal' as the file name says, got 'unimodal'"),
    ("intent_variant", lambda d: _rec(d).update(intent_variant="safe"), 5, "intent_variant",
     "expected 'unsafe' as the file name says, got 'safe'"),
    ("duplicate row", lambda d: d.append(d[0]), 5, "id",
     "the row appears more than once in this file (records #0 and #1)"),
    ("mcq truth missing", lambda d: _rec(d)["mcq"][0].pop("ground_truth"), 5, "mcq[0].ground_truth",
     "expected the correct option's letter, got nothing (missing)"),
    ("mcq truth names no option", lambda d: _rec(d)["mcq"][0].update(ground_truth="E"), 5,
     "mcq[0].ground_truth", "ground truth 'E' names no option: there are 4 options (A-D)"),
    ("mcq truth two letters", lambda d: _rec(d)["mcq"][0].update(ground_truth="AB"), 5,
     "mcq[0].ground_truth", "expected one letter A-G, got 'AB'"),
    ("options not strings", lambda d: _rec(d)["mcq"][0].update(options=["a", 2]), 5,
     "mcq[0].options", "expected a list of 2 to 7 option strings, got a list of 2"),
    ("options not a list", lambda d: _rec(d)["mcq"][0].update(options="a, b"), 5,
     "mcq[0].options", "expected a list of 2 to 7 option strings, got 'a, b'"),
    ("question type of the other transcript", lambda d: _rec(d)["mcq"][0].update(question_type="safe_x"),
     5, "mcq[0].question_type", "expected a question type starting with 'unsafe' in a unsafe record"),
    ("tf truth not a bool", lambda d: _rec(d)["tf"][1].update(ground_truth="false"), 5,
     "tf[1].ground_truth", "expected true or false, got 'false'"),
    ("duplicate idx", lambda d: _rec(d)["tf"][1].update(idx=0), 5, "tf[1].idx",
     "index 0 is already used by tf[0] of this record"),
    ("bad idx", lambda d: _rec(d)["tf"][0].update(idx="0"), 5, "tf[0].idx",
     "expected the question's index in the row's tf list (a non-negative integer), got '0'"),
    ("raw answer not text", lambda d: _rec(d)["mcq"][0].update(model_answer_raw=2), 5,
     "mcq[0].model_answer_raw", "expected the model's answer as text or null, got 2"),
    ("parsed bool not a bool", lambda d: _rec(d)["tf"][0].update(model_answer_bool="True"), 5,
     "tf[0].model_answer_bool", "expected the official parser's true/false or null, got 'True'"),
    ("mcq list missing", lambda d: _rec(d).pop("mcq"), 5, "mcq",
     "expected a list of MCQ items (possibly empty), got nothing (missing)"),
    ("question not an object", lambda d: _rec(d)["tf"].append("x"), 5, "tf[2]",
     "expected an object per question, got 'x'"),
    ("record not an object", lambda d: d.append([1]), "#1 (not an object)", None,
     "expected a JSON object per record, got a list of 1"),
]


@pytest.mark.parametrize("change, row, field, text",
                         [p[1:] for p in SINGLE_PROBLEMS], ids=[p[0] for p in SINGLE_PROBLEMS])
def test_each_problem_names_file_row_and_field(tmp_path: Path, change: Callable[[list[Any]], object],
                                                row: object, field: str | None, text: str) -> None:
    root = write_official_results(tmp_path, four_views(5))
    path = view_path(root, "type_a", MU)
    _edit(path, change)
    with pytest.raises(DataError) as info:
        read_official(root)
    err = info.value
    assert (err.file, err.row, err.field) == (str(path), row, field)
    assert text in str(err)
    assert str(err).startswith(f"file {path}, row id {row}")


def test_safe_record_with_true_false_items(tmp_path: Path) -> None:
    root = write_official_results(tmp_path, [OfficialRecord(1, safety="safe", tf=(TF(),))])
    with pytest.raises(DataError) as info:
        read_official(root)
    assert (info.value.row, info.value.field) == (1, "tf")
    assert "asked on the unsafe transcript only" in str(info.value)


@pytest.mark.parametrize("content, text", [
    ('[\n  {"id": 1,\n  "split": }\n]', "not valid JSON (Expecting value at line 3, column 12)"),
    ('{"id": 1}', "expected a JSON list of records, got an object"),
])
def test_unreadable_file(tmp_path: Path, content: str, text: str) -> None:
    root = write_official_results(tmp_path, four_views(0))
    path = view_path(root, "type_a", "unimodal_safe")
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_official(root)
    assert (info.value.file, info.value.row, info.value.field) == (str(path), None, None)
    assert text in str(info.value)


def test_one_error_lists_every_problem_in_every_file(tmp_path: Path) -> None:
    root = write_official_results(tmp_path, four_views(7) + four_views(8) + four_views(2, "type_b"))
    mu, us = view_path(root, "type_a", MU), view_path(root, "type_a", "unimodal_safe")
    mu_b = view_path(root, "type_b", MU)

    def break_mu(d: list[Any]) -> None:
        d[0]["dialogue"]["R2_model_response"] = None
        d[1]["mcq"][0]["ground_truth"] = "F"
        d[1]["tf"][0]["ground_truth"] = None

    _edit(mu, break_mu)
    _edit(us, lambda d: d[0].update(modality="multimodal"))
    mu_b.write_text("not json", encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_official(root)
    msg = str(info.value)
    assert msg.startswith(f"file {root}: 5 problems in the official results:\n")
    expected = [
        f"file {mu}, row id 7, field 'dialogue.R2_model_response': expected the model's reply, got null",
        f"file {mu}, row id 8, field 'mcq[0].ground_truth': ground truth 'F' names no option",
        f"file {mu}, row id 8, field 'tf[0].ground_truth': expected true or false, got null",
        f"file {us}, row id 7, field 'modality': expected 'unimodal' as the file name says",
        f"file {mu_b}: not valid JSON (Expecting value at line 1, column 1)",
    ]
    lines = msg.splitlines()[1:]
    assert len(lines) == len(expected)
    for line, want in zip(lines, expected, strict=True):
        assert line.strip().startswith(want)


def test_more_problems_than_shown_are_counted(tmp_path: Path) -> None:
    recs = [OfficialRecord(i, replies=("a", None, "c") if i < 5 else ("a", "b", None))
            for i in range(25)]
    root = write_official_results(tmp_path, recs)
    with pytest.raises(DataError) as info:
        read_official(root)
    msg = str(info.value)
    assert "25 problems in the official results" in msg
    assert len([ln for ln in msg.splitlines() if "row id" in ln]) == 20
    # Most frequent first, so a run that failed wholesale on one turn says so at once.
    assert ("... and 5 more (all problems by field: dialogue.R3_model_response x20, "
            "dialogue.R2_model_response x5)") in msg


def test_a_digit_string_id_is_a_row_id(tmp_path: Path) -> None:
    root = write_official_results(tmp_path, [OfficialRecord(4)])
    _edit(view_path(root, "type_a", MU), lambda d: d[0].update(id="4"))
    (t,) = read_official(root)
    assert (t.case.row_id, t.case.id) == (4, "type_a-0004-multimodal-unsafe")
