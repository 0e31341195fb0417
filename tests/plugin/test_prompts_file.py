"""`--mtmcs-prompts FILE`: replaced templates reach the server verbatim, change the cache keys and
are recorded in the report; a bad file is exit 4 naming the file and the field (black box,
against the loopback mock server)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _runs import load_report, run_mtmcs

from pytest_mtmcs.scoring.prompts import DEFAULT_PROMPTS, load_prompts
from pytest_mtmcs.testing import MockOpenAIServer

DIALOGUES_ONLY = ("--mtmcs-skip-questions",)


def _judge_reply(body: dict[str, Any]) -> str:
    return json.dumps({"score": 4, "explanation": "fine"})


def _user_text(body: dict[str, Any]) -> str:
    c = body["messages"][-1]["content"]
    return c if isinstance(c, str) else " ".join(p["text"] for p in c if p["type"] == "text")


def _prompts(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(("text", "line"), [
    ('mcq = "{transcript} {question}"',
     ", field 'mcq': missing the placeholder {options}; this template needs {options}, "
     "{question}, {transcript}*"),
    ('judge_user = "{transcript} {reply}"', ", field 'judge_user': unknown placeholder {reply}*"),
    ('rubric_type_a = ["a list"]', ", field 'rubric_type_a': expected a string, got list*"),
    ('rubric_typ_a = "x"', ", field 'rubric_typ_a': unknown field; the fields are *"),
    ("judge_user = ", ": not a TOML file*"),
], ids=["missing-placeholder", "unknown-placeholder", "wrong-type", "unknown-field", "not-toml"])
def test_a_bad_prompts_file_is_exit_4_naming_file_and_field(pytester: pytest.Pytester,
                                                             dataset: Path, text: str,
                                                             line: str) -> None:
    path = _prompts(pytester.path, "prompts.toml", text)
    result = run_mtmcs(pytester, dataset, f"--mtmcs-prompts={path}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--mtmcs-prompts: file {path}{line}"])


def test_the_ini_key_reads_a_file_beside_the_ini(pytester: pytest.Pytester, dataset: Path) -> None:
    _prompts(pytester.path, "wording.toml", 'tf = "{transcript}"')
    pytester.makeini("[pytest]\nmtmcs_prompts = wording.toml\n")
    result = run_mtmcs(pytester, dataset)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*file {pytester.path / 'wording.toml'}, field 'tf': missing "
                                 "the placeholder {question}*"])


def test_a_missing_file_is_exit_4(pytester: pytest.Pytester, dataset: Path) -> None:
    result = run_mtmcs(pytester, dataset, "--mtmcs-prompts=nowhere.toml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--mtmcs-prompts: file *nowhere.toml: cannot read the prompts "
                                 "file*"])


def test_judge_templates_reach_the_judge_change_its_keys_and_are_reported(
        pytester: pytest.Pytester, dataset: Path) -> None:
    first = _prompts(pytester.path, "first.toml",
                     'judge_user = "DIALOGUE <<{transcript}>> END"\n'
                     'judge_output = \'Answer {"score": <1-5>} only.\'\n')
    second = _prompts(pytester.path, "second.toml", 'judge_user = "Transcript:\\n{transcript}"\n')
    with MockOpenAIServer(reply=_judge_reply) as judge:
        spec = f"--mtmcs-judge=openai+{judge.base_url}:acme/judge"
        run_mtmcs(pytester, dataset, *DIALOGUES_ONLY, spec, f"--mtmcs-prompts={first}",
                  target="baseline:comply")
        calls = [c.body for c in judge.calls]
        report = load_report(pytester)
        judge.reset()
        run_mtmcs(pytester, dataset, *DIALOGUES_ONLY, spec, f"--mtmcs-prompts={first}",
                  target="baseline:comply")
        again = len(judge.calls)
        judge.reset()
        run_mtmcs(pytester, dataset, *DIALOGUES_ONLY, spec, f"--mtmcs-prompts={second}",
                  target="baseline:comply")
        other = [c.body for c in judge.calls]
        judge.reset()
        run_mtmcs(pytester, dataset, *DIALOGUES_ONLY, spec, target="baseline:comply")
        plain = [c.body for c in judge.calls]
        default_report = load_report(pytester)
    unimodal = [b for b in calls if "Image description" not in _user_text(b)]
    assert len(calls) == 16 and len(unimodal) == 8  # one judgement per dialogue
    for body in unimodal:
        assert _user_text(body).startswith("DIALOGUE <<User R1: ")
        assert _user_text(body).endswith(">> END")
    for body in calls:
        assert body["messages"][0]["content"].endswith('\n\nAnswer {"score": <1-5>} only.')
    assert again == 0  # the same templates: every judgement from the store
    assert len(other) == 16  # other templates: other requests, other keys
    assert all(_user_text(b).startswith("Transcript:\nUser R1: ") for b in other
               if "Image description" not in _user_text(b))
    # our wording: the multimodal judgements are those of second.toml (same requests, same
    # keys, from the store); only the unimodal ones are asked again
    assert len(plain) == 8
    assert all(_user_text(b).startswith("Conversation:\nUser R1: ") for b in plain)
    assert report["settings"]["prompts"] == {"file": str(first),
                                             "sha256": load_prompts(first).fingerprint()}
    assert default_report["settings"]["prompts"] == {"file": None,
                                                     "sha256": DEFAULT_PROMPTS.fingerprint()}
    assert {d["judge"]["score"] for d in report["dialogues"]} == {4}


def _question_calls(bodies: list[dict[str, Any]]) -> list[str]:
    return [_user_text(b) for b in bodies if len(b["messages"]) == 1
            and not _user_text(b).strip().startswith(("MM", "UM"))]  # not a first turn


def test_a_replaced_mcq_template_reaches_the_target_changes_keys_and_is_reported(
        pytester: pytest.Pytester, dataset: Path) -> None:
    first = _prompts(pytester.path, "first.toml",
                     'mcq = """MCQ>> {question}\n{options}\n<<{transcript}>> Letter?"""\n')
    second = _prompts(pytester.path, "second.toml",
                      'mcq = "Pick one. {question} {options} {transcript}"\n')
    with MockOpenAIServer() as srv:
        spec = f"openai+{srv.base_url}:acme/vlm-7b"
        run_mtmcs(pytester, dataset, "-m", "mcq", f"--mtmcs-prompts={first}", target=spec)
        calls = [c.body for c in srv.calls]
        report = load_report(pytester)
        srv.reset()
        run_mtmcs(pytester, dataset, "-m", "mcq", f"--mtmcs-prompts={first}", target=spec)
        again = len(srv.calls)
        srv.reset()
        run_mtmcs(pytester, dataset, "-m", "mcq", f"--mtmcs-prompts={second}", target=spec)
        other = [c.body for c in srv.calls]
    asked = _question_calls(calls)
    mcqs = [q for q in report["questions"] if q["kind"] == "mcq"]
    assert mcqs and len(asked) == len({q["id"] for q in mcqs})
    for text in asked:  # the template, verbatim, around what it was given
        assert text.startswith("MCQ>> ") and text.endswith(">> Letter?")
        assert "\nA. " in text and "\n<<User: " in text and "\nAssistant: " in text
        assert "Reply with the letter" not in text
    assert again == 0  # the same template: every answer from the store
    assert len(other) == len(asked)  # another template: only the questions are asked again
    assert all(t.startswith("Pick one. ") for t in _question_calls(other))
    assert report["settings"]["prompts"] == {"file": str(first),
                                             "sha256": load_prompts(first).fingerprint()}
