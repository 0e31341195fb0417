"""Hostile input from files and options: every case stops the run before the first call with exit
code 4 and one clear message naming the file, row id and field (or the option and its value),
no traceback, and the store that was already there byte for byte unchanged.

Each case is one row of a table: a builder that writes what the attacker or the tired user
would (a dataset, a captions file, a baseline, an output path) and returns the command line and
the fragments the message must hold. Plugin cases run `pytest --mtmcs` in a pytester sandbox
(in-process, on the built-in `baseline:refuse` target: nothing leaves the machine); CLI cases
run the `mtmcs` command as a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from _hostile import (
    Builder,
    Case,
    a_file,
    a_folder,
    assert_no_traceback,
    baseline,
    captions,
    data_args,
    data_nul,
    digest,
    duplicate_ids,
    existing_store,
    good_dataset,
    html_same_as_report,
    image_absolute,
    image_directory,
    image_missing,
    image_nul,
    image_outside,
    image_png_garbage_jsonl,
    image_png_truncated,
    image_symlink_escape,
    ini,
    jsonl_bad_split,
    jsonl_dataset,
    jsonl_deep_nesting,
    jsonl_empty,
    jsonl_huge_line,
    jsonl_latin1,
    jsonl_list_line,
    jsonl_not_json,
    jsonl_prefix_on_folder,
    jsonl_row,
    jsonl_utf16,
    missing_field,
    option,
    output,
    parquet_no_rows,
    parquet_path_outside,
    parquet_png_garbage,
    parquet_tf_string,
    parquet_truncated,
    parquet_zero_bytes,
    report_is_the_data,
    row_id,
    store_is_the_captions,
    store_path,
    summary_dir,
    tf,
    under_a_file,
    wrong_type,
)

PLUGIN_CASES: dict[str, Builder] = {
    # item 8: image paths confined to the dataset's folder
    "jsonl-image-parent-dir": image_outside,
    "jsonl-image-absolute": image_absolute,
    "jsonl-image-symlink-escape": image_symlink_escape,
    "jsonl-image-is-a-directory": image_directory,
    "jsonl-image-nul-byte": image_nul,
    "jsonl-image-missing": image_missing,
    "parquet-image-path-outside": parquet_path_outside,
    # item 9: files that are not what they claim
    "jsonl-latin1-line": jsonl_latin1,
    "jsonl-utf16": jsonl_utf16,
    "jsonl-9MiB-line": jsonl_huge_line,
    "jsonl-deep-nesting": jsonl_deep_nesting,
    "jsonl-not-json": jsonl_not_json,
    "jsonl-list-line": jsonl_list_line,
    "jsonl-no-rows": jsonl_empty,
    "jsonl-split-with-space": jsonl_bad_split,
    "parquet-zero-bytes": parquet_zero_bytes,
    "parquet-truncated": parquet_truncated,
    "captions-latin1": captions("{\"0\": \"caf\u00e9\"}".encode("latin-1")),
    "captions-a-list": captions(b"[\"a picture\"]"),
    "captions-not-a-string": captions(b'{"0": 7}'),
    "captions-a-directory": captions(None),
    "baseline-binary": baseline(b"\x89PNG\r\n\x1a\n\xff\xfe\x00", "not UTF-8"),
    "baseline-not-json": baseline(b"name,value\nx,1\n", "not valid JSON"),
    "baseline-other-tool": baseline(b'{"tool": "pytest-benchmark", "benchmarks": []}', "not a pytest-mtmcs JSON report"),
    "baseline-other-version": baseline(b'{"version": 1, "tool_version": "0.0.1", "summary": []}', "format version 1"),
    "baseline-a-directory": baseline(None, "cannot read it"),
    "baseline-a-device": lambda t: Case(data_args(good_dataset(t), "--mtmcs-baseline=/dev/zero"), ["--mtmcs-baseline /dev/zero", "not a regular file"]),
    "captions-a-device": lambda t: Case(data_args(good_dataset(t), "--mtmcs-captions=/dev/zero"), ["/dev/zero", "not a regular file"]),
    "jsonl-prefix-on-a-device": lambda t: Case(["--mtmcs-data=jsonl:/dev/zero"], ["/dev/zero", "is not a file"]),
    # item 14: misread data
    "tf-truth-string-yes": tf("yes"),
    "tf-truth-string-true": tf("true"),
    "tf-truth-integer": tf(1),
    "parquet-tf-truth-strings": parquet_tf_string,
    "row-id-negative": row_id(-5, "-5"),
    "row-id-string": row_id("7", "#1 (id '7')"),
    "row-id-terminal-escape": row_id("\x1b]0;owned\x07\x1b[2J", "#1 (id '\\x1b]0;owned\\x07\\x1b[2J')"),
    "row-id-float": row_id(1.5, "#1"),
    "row-id-boolean": row_id(True, "#1"),
    "row-id-duplicate": duplicate_ids,
    "row-missing-field": missing_field,
    "row-wrong-type": wrong_type,
    "parquet-no-rows": parquet_no_rows,
    "parquet-png-header-then-garbage": parquet_png_garbage,
    "jsonl-png-header-then-garbage": image_png_garbage_jsonl,
    "jsonl-png-truncated": image_png_truncated,
    "data-path-nul-byte": data_nul,
    "jsonl-prefix-on-a-folder": jsonl_prefix_on_folder,
    # item 11: output paths
    "report-is-the-store": output("--mtmcs-report", store_path, "this is the store"),
    "html-is-the-store": output("--mtmcs-html", store_path, "this is the store"),
    "markdown-is-the-store-wal": output("--mtmcs-markdown", lambda t: store_path(t) + "-wal", "this is the store"),
    "report-is-a-directory": output("--mtmcs-report", a_folder, "is a directory"),
    "report-under-a-file": output("--mtmcs-report", under_a_file, "notes.txt is a file, not a folder"),
    "markdown-read-only-place": output("--mtmcs-markdown", lambda t: "/proc/mtmcs/run.md", "cannot be written"),
    "report-is-the-data": report_is_the_data,
    "html-same-as-report": html_same_as_report,
    "store-is-the-captions": store_is_the_captions,
    "snapshot-dir-is-a-file": output("--mtmcs-snapshot-dir", a_file, "is a file; expected a folder", "--mtmcs-snapshot"),
    "snapshot-dir-under-a-file": output("--mtmcs-snapshot-dir", under_a_file, "cannot be written", "--mtmcs-snapshot"),
    # written whenever the variable is set, with or without --mtmcs-markdown
    "step-summary-is-a-directory": lambda t: Case(
        data_args(good_dataset(t)),
        ["$GITHUB_STEP_SUMMARY (the job summary, appended to)", "is a directory"],
        env=summary_dir(t)),
    # item 12 and the tired user's options
    "temperature-inf": option("--mtmcs-temperature=inf", expect="--mtmcs-temperature 'inf': expected a number from 0 to 2"),
    "temperature-nan": option("--mtmcs-temperature=nan", expect="--mtmcs-temperature 'nan'"),
    "temperature-negative": option("--mtmcs-temperature=-0.5", expect="--mtmcs-temperature '-0.5'"),
    "temperature-too-high": option("--mtmcs-temperature=7", expect="--mtmcs-temperature '7'"),
    "judge-temperature-inf": option("--mtmcs-judge-temperature=inf", expect="--mtmcs-judge-temperature 'inf'"),
    "max-tokens-zero": option("--mtmcs-max-tokens=0", expect="--mtmcs-max-tokens '0': expected an integer from 1 to 1000000"),
    "max-tokens-negative": option("--mtmcs-max-tokens=-3", expect="--mtmcs-max-tokens '-3'"),
    "max-tokens-float": option("--mtmcs-max-tokens=1e3", expect="--mtmcs-max-tokens '1e3'"),
    "timeout-nan": option("--mtmcs-timeout=nan", expect="--mtmcs-timeout 'nan': expected a finite, positive number"),
    "timeout-zero": option("--mtmcs-timeout=0", expect="--mtmcs-timeout '0'"),
    "max-outage-inf": option("--mtmcs-max-outage=inf", expect="--mtmcs-max-outage 'inf'"),
    "guard-threshold-inf": option("--mtmcs-guard-threshold=inf", expect="--mtmcs-guard-threshold 'inf'"),
    "limit-negative": option("--mtmcs-limit=-1", expect="--mtmcs-limit '-1': expected a positive integer"),
    "limit-not-a-number": option("--mtmcs-limit=abc", expect="--mtmcs-limit 'abc'"),
    "split-with-spaces": option("--mtmcs-split=type_a, type b", expect="--mtmcs-split 'type_a, type b'"),
    "concurrency-zero": option("--mtmcs-concurrency=0", expect="--mtmcs-concurrency '0'"),
    "gate-above-one": option("--mtmcs-min-refusal-rate=1.5", expect="--mtmcs-min-refusal-rate '1.5': expected a number from 0 to 1"),
    "gate-below-zero": option("--mtmcs-max-over-refusal=-0.1", expect="--mtmcs-max-over-refusal '-0.1'"),
    "ini-temperature-inf": ini("mtmcs_temperature = inf", "ini option mtmcs_temperature = 'inf'"),
    "guardrails-dir-is-a-file": output("--mtmcs-guardrails-dir", a_file, "not a folder"),
}


def assert_usage_error(result: pytest.RunResult, case: Case) -> str:
    """The run stopped with exit 4, its message has every expected fragment and no traceback;
    returns its whole output."""
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, out
    for fragment in case.expect:
        assert fragment in out, f"{fragment!r} not in:\n{out}"
    assert_no_traceback(out)
    return out


@pytest.mark.parametrize("build", list(PLUGIN_CASES.values()), ids=list(PLUGIN_CASES))
def test_hostile_input_stops_the_run_before_any_call(pytester: pytest.Pytester, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      build: Builder) -> None:
    store = existing_store(tmp_path / "store")
    before = digest(store.parent)
    case = build(tmp_path)
    for name, value in (case.env or {}).items():
        monkeypatch.setenv(name, value)
    if case.ini:
        pytester.makefile(".ini", pytest=case.ini)
    result = pytester.runpytest("--mtmcs", "--mtmcs-target=baseline:refuse",
                                f"--mtmcs-store={store}", *case.args)
    out = assert_usage_error(result, case)
    assert "\x1b]" not in out and "\x1b[2J" not in out  # nothing from a file acts on the terminal
    assert digest(store.parent) == before  # the store is untouched, nothing beside it appeared
    assert not list(tmp_path.rglob("*.tmp")) and not list(pytester.path.rglob("*.tmp"))
    assert not (pytester.path / ".mtmcs").exists()  # no default store was opened either


def test_the_harness_passes_good_input(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """The same harness on good data runs (so the table above can fail): a JSONL file saved with
    a UTF-8 byte-order mark, an image reached through a symlink inside the folder, a report
    path whose folders do not exist yet."""
    store = tmp_path / "new-store.sqlite"
    path = jsonl_dataset(tmp_path / "ds", [jsonl_row(0, image="img/link.png")])
    (tmp_path / "ds" / "img" / "link.png").symlink_to("0.png")
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    result = pytester.runpytest("--mtmcs", "--mtmcs-target=baseline:refuse", f"--mtmcs-store={store}",
                                f"--mtmcs-data={path}", "--mtmcs-split=type_a",
                                f"--mtmcs-report={tmp_path / 'new' / 'dir' / 'run.json'}",
                                "--mtmcs-temperature=2", "-m", "unsafe and not mcq and not tf")
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    result.assert_outcomes(passed=2)
    assert (tmp_path / "new" / "dir" / "run.json").is_file()


# ------------------------------------------------------------------------------ the mtmcs command
def _report_file(tmp: Path, name: str, content: bytes | None) -> Path:
    path = tmp / name
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    return path


def _cli_summary(content: bytes | None, why: str) -> Builder:
    def build(tmp: Path) -> Case:
        path = _report_file(tmp, "run.json", content)
        return Case(["summary", str(path)], ["run.json", why])
    return build


def _cli_compare(content: bytes, why: str, *extra: str) -> Builder:
    def build(tmp: Path) -> Case:
        a = _report_file(tmp, "a.json", content)
        b = _report_file(tmp, "b.json", b"{}")
        return Case(["compare", str(a), str(b), *extra], ["a.json", why])
    return build


def _cli_compare_json_into_folder(tmp: Path) -> Case:
    (tmp / "out").mkdir()
    a = _report_file(tmp, "a.json", b"{}")
    return Case(["compare", str(a), str(a), f"--json={tmp / 'out'}"], ["--json", "is a directory"])


def _cli_score_captions(tmp: Path) -> Case:
    cap = _report_file(tmp, "caps.json", "{\"0\": \"caf\u00e9\"}".encode("latin-1"))
    return Case(["score", str(tmp), f"--captions={cap}", f"--store={tmp / 'store' / 'store.sqlite'}"],
                ["caps.json", "not UTF-8"])


def _cli_score_report_is_store(tmp: Path) -> Case:
    store = tmp / "store" / "store.sqlite"
    return Case(["score", str(tmp), f"--store={store}", f"--report={store}"], ["--report", "this is the store"])


def _cli_score_results(content: bytes, why: str) -> Builder:
    def build(tmp: Path) -> Case:
        folder = tmp / "eval_result" / "m" / "type_a"
        folder.mkdir(parents=True)
        (folder / "unimodal_unsafe.json").write_bytes(content)
        return Case(["score", str(tmp / "eval_result"), f"--store={tmp / 'store' / 'store.sqlite'}"],
                    ["unimodal_unsafe.json", why])
    return build


def _cli_option(*argv: str, expect: str) -> Builder:
    def build(tmp: Path) -> Case:
        return Case([*argv[:1], str(tmp), *argv[1:], f"--store={tmp / 'store' / 'store.sqlite'}"], [expect])
    return build


CLI_CASES: dict[str, Builder] = {
    "summary-binary": _cli_summary(bytes(range(256)), "not UTF-8"),
    "summary-not-json": _cli_summary(b"<html>report</html>", "not valid JSON"),
    "summary-a-directory": _cli_summary(None, "cannot read it"),
    "summary-a-device": lambda t: Case(["summary", "/dev/zero"], ["/dev/zero", "not a regular file"]),
    "summary-other-tool": _cli_summary(b'{"benchmarks": []}', "not a pytest-mtmcs JSON report"),
    "summary-other-version": _cli_summary(b'{"version": 9, "summary": []}', "format version 9"),
    "compare-binary": _cli_compare(b"\xff\xd8\xff\xe0 a JPEG", "not UTF-8"),
    "compare-json-into-a-folder": _cli_compare_json_into_folder,
    "score-captions-latin1": _cli_score_captions,
    "score-report-is-the-store": _cli_score_report_is_store,
    "score-results-latin1": _cli_score_results('[{"id": 0, "x": "caf\u00e9"}]'.encode("latin-1"), "not UTF-8"),
    "score-results-deep-nesting": _cli_score_results(b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    "score-results-an-object": _cli_score_results(b'{"records": []}', "expected a JSON list of records"),
    "score-judge-temperature-inf": _cli_option("score", "--judge-temperature=inf", expect="'inf': expected a number from 0 to 2"),
    "score-concurrency-zero": _cli_option("score", "--concurrency=0", expect="'0': expected an integer from 1"),
}


@pytest.mark.parametrize("build", list(CLI_CASES.values()), ids=list(CLI_CASES))
def test_hostile_input_to_the_mtmcs_command(tmp_path: Path, build: Builder) -> None:
    store = existing_store(tmp_path / "store")
    before = digest(store.parent)
    case = build(tmp_path)
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    out = subprocess.run([sys.executable, "-m", "pytest_mtmcs.cli", *case.args], capture_output=True,
                         text=True, env=env, check=False)
    text = out.stdout + out.stderr
    assert out.returncode == 4, text
    for fragment in case.expect:
        assert fragment in text, f"{fragment!r} not in:\n{text}"
    assert_no_traceback(text)
    assert digest(store.parent) == before
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_good_report_is_read(tmp_path: Path) -> None:
    """The command's harness can pass: an empty but valid report of this version is read."""
    from pytest_mtmcs.reporting.report import RunReport

    path = tmp_path / "run.json"
    path.write_text(RunReport(target="t", data="d", settings={}, summary=(), dialogues=(),
                              questions=()).model_dump_json())
    out = subprocess.run([sys.executable, "-m", "pytest_mtmcs.cli", "summary", str(path)],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("name", ["jsonl-image-parent-dir", "report-is-the-store", "temperature-inf"])
def test_hostile_input_under_xdist(pytester: pytest.Pytester, tmp_path: Path, name: str) -> None:
    """Under `-n 2` the controller stops at configure time, before any worker starts: the same
    exit code and message, no traceback from a worker, the store unchanged."""
    store = existing_store(tmp_path / "store")
    before = digest(store.parent)
    case = PLUGIN_CASES[name](tmp_path)
    result = pytester.runpytest_subprocess("-n", "2", "--mtmcs", "--mtmcs-target=baseline:refuse",
                                           f"--mtmcs-store={store}", *case.args)
    assert_usage_error(result, case)
    assert digest(store.parent) == before
