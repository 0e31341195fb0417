"""The plugin in a user's own project: its config is the one read whatever the spelling of our
path options, a run on that selects no benchmark item fails, and gates refuse a partial run
(black box, pytester).

pytest picks the rootdir and the config file from the command line's test paths before our
options are known, so `--mtmcs-data /abs/dataset` once read the dataset folder as a test path:
the rootdir moved, another project's config (or none) was read, and the benchmark did not run.
Each test here runs from a project with its own pyproject.toml and test, beside a decoy project
whose config would give other counts, and checks the counts the project's config gives.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from _data import small_dataset

PROJECT_INI = """\
[tool.pytest.ini_options]
mtmcs = true
mtmcs_target = "baseline:refuse"
mtmcs_split = "type_a"
mtmcs_limit = "1"
mtmcs_skip_questions = true
"""
# Read by mistake, this config would run every split and row, comply with everything, and
# look for tests where there are none.
DECOY_INI = """\
[tool.pytest.ini_options]
mtmcs = true
mtmcs_target = "baseline:comply"
testpaths = ["no-tests-here"]
"""

# With the project's config: 1 row of type_a = 4 dialogues (2 safe over-refused: failed; 2 unsafe
# refused: passed) and the project's own test (passed).
PROJECT_OUTCOMES = {"passed": 3, "failed": 2}

PATH_OPTIONS = ("data", "captions", "baseline", "prompts", "guardrails-dir", "store", "report",
                "markdown", "html", "snapshot-dir")
PLACES = ("inside-relative", "inside-absolute", "outside-relative", "outside-absolute")


def _projects(root: Path) -> tuple[Path, Path]:
    """`root/project` (the user's, with a test) and `root/elsewhere` (a decoy project)."""
    project, elsewhere = root / "project", root / "elsewhere"
    for folder, ini in ((project, PROJECT_INI), (elsewhere, DECOY_INI)):
        folder.mkdir()
        (folder / "pyproject.toml").write_text(ini)
    (project / "test_own.py").write_text("def test_own():\n    assert True\n")
    return project, elsewhere


def _input(option: str, folder: Path, pytester: pytest.Pytester, data: Path) -> Path:
    """An existing file or folder for a path option, in `folder`: an existing path is what
    pytest would read as a test path (the store is made by the run)."""
    if option == "data":
        return data
    if option == "captions":
        path = folder / "captions.json"
        path.write_text(json.dumps({"0": "A kitchen.", "1": "A garden."}))
    elif option == "prompts":
        path = folder / "prompts.toml"
        path.write_text('mcq = "{transcript}\\n{question}\\n{options}\\nLetter only."\n')
    elif option in ("guardrails-dir", "snapshot-dir"):
        path = folder / option
        path.mkdir()
    elif option == "store":
        path = folder / "store.sqlite"
    elif option == "baseline":
        path = folder / "baseline.json"
        result = pytester.runpytest(f"--mtmcs-data={data}", f"--mtmcs-report={path}",
                                    f"--mtmcs-store={folder / 'baseline-store.sqlite'}", "-q",
                                    "-p", "no:cacheprovider")
        assert path.is_file(), result.stdout.str()
    else:  # report, markdown, html: an existing output file is the case pytest misreads
        path = folder / f"out.{option}"
        path.write_text("")
    return path


def _value(path: Path, place: str, project: Path) -> str:
    if place.endswith("absolute"):
        return str(path)
    return str(Path("..") / path.relative_to(project.parent)) if place.startswith("outside") else (
        str(path.relative_to(project)))


def _run_with(pytester: pytest.Pytester, project: Path, folder: Path, options: Sequence[str],
              place: str, spelling: str) -> pytest.RunResult:
    """Run from the project with each path option given a value in `folder`."""
    folder.mkdir()
    data = small_dataset(folder / "dataset", 2)
    paths = {option: _input(option, folder, pytester, data) for option in options}
    words: list[str] = [] if "data" in options else [f"--mtmcs-data={data}"]
    for option, path in paths.items():
        flag, value = f"--mtmcs-{option}", _value(path, place, project)
        words += [flag, value] if spelling == "space" else [f"{flag}={value}"]
    result = pytester.runpytest(*words, "-p", "no:cacheprovider")
    result.assert_outcomes(**PROJECT_OUTCOMES)
    out = result.stdout.str()
    assert f"rootdir: {project}" in out
    assert "configfile: pyproject.toml" in out
    for option in {"report", "markdown", "html", "store"} & set(options):
        assert paths[option].stat().st_size > 0, f"--mtmcs-{option} was not written"
    return result


@pytest.mark.parametrize("spelling", ["space", "equals"])
@pytest.mark.parametrize("place", PLACES)
def test_path_options_never_change_the_config_read(pytester: pytest.Pytester,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   place: str, spelling: str) -> None:
    """Every path option at once, in each spelling and place: one value read as a test path
    would move the rootdir, and the counts would be the decoy's."""
    project, elsewhere = _projects(pytester.path)
    monkeypatch.chdir(project)
    folder = (project if place.startswith("inside") else elsewhere) / "inputs"
    # --mtmcs-html (matplotlib, seconds a run) is left to the option-by-option test.
    _run_with(pytester, project, folder, [o for o in PATH_OPTIONS if o != "html"], place, spelling)


@pytest.mark.parametrize("option", PATH_OPTIONS)
def test_each_path_option_alone_outside_the_project(pytester: pytest.Pytester,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    option: str) -> None:
    """The reported case, option by option: an absolute path outside the project, after a
    space."""
    project, elsewhere = _projects(pytester.path)
    monkeypatch.chdir(project)
    _run_with(pytester, project, elsewhere / "inputs", (option,), "outside-absolute", "space")


def test_the_rerun_keeps_xdist_and_addopts(pytester: pytest.Pytester,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The space spelling through PYTEST_ADDOPTS, under -n 2 in a real subprocess."""
    project, elsewhere = _projects(pytester.path)
    monkeypatch.chdir(project)
    data = small_dataset(elsewhere / "dataset", 2)
    monkeypatch.setenv("PYTEST_ADDOPTS", f"--mtmcs-data {data}")
    result = pytester.run(sys.executable, "-m", "pytest", "-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(**PROJECT_OUTCOMES)
    assert f"rootdir: {project}" in result.stdout.str()


def test_a_run_that_selects_no_benchmark_dialogue_fails(pytester: pytest.Pytester,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    project, _ = _projects(pytester.path)
    monkeypatch.chdir(project)
    data = small_dataset(project / "dataset", 2)
    (project / "conftest.py").write_text(
        "def pytest_mtmcs_select_cases(config, cases):\n    return []\n")
    result = pytester.runpytest(f"--mtmcs-data={data}", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*pytest-mtmcs is on but selects no benchmark dialogue: the "
                                 "pytest_mtmcs_select_cases hook returned no dialogue*"])


# --------------------------------------------------------------------------- partial runs
GATE = "--mtmcs-max-over-refusal=1"  # passes on any figure: only the coverage can fail it


def _gated(pytester: pytest.Pytester, dataset: Path, *args: str) -> pytest.RunResult:
    return pytester.runpytest("--mtmcs", f"--mtmcs-data={dataset}", "--mtmcs-target=baseline:refuse",
                              "--mtmcs-skip-questions", "--mtmcs-split=type_a",
                              f"--mtmcs-store={pytester.path / 'store.sqlite'}", GATE, *args)


@pytest.mark.parametrize("selection", [["-k", "multimodal"], ["-x"], ["--deselect", "X"]])
def test_gates_refuse_a_partial_run(pytester: pytest.Pytester, dataset: Path,
                                    selection: list[str]) -> None:
    if selection[0] == "--deselect":
        # the suite's node id: the data's path from the rootdir, or its absolute path
        label = dataset.resolve().as_posix().lstrip("/")
        selection = ["--deselect", f"{label}::mtmcs[type_a-0000-unimodal-unsafe]"]
    result = _gated(pytester, dataset, *selection)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*FAIL  benchmark items run*>= 1*n=8*"])
    result.stdout.fnmatch_lines(["partial run: the figures cover * of 8 dialogues (*)"])
    allowed = _gated(pytester, dataset, *selection, "--mtmcs-allow-partial")
    allowed.stdout.fnmatch_lines(["partial run: the figures cover * of 8 dialogues (*)"])
    allowed.stdout.no_fnmatch_line("*benchmark items run*")
    if selection != ["-x"]:  # -x stops at the first over-refusal, which is a failed item
        assert allowed.ret == pytest.ExitCode.OK


def test_gates_refuse_a_last_failed_rerun(pytester: pytest.Pytester, dataset: Path) -> None:
    """The reported case: after a run with failures, `--lf` with a gate passed on the failures
    alone."""
    first = _gated(pytester, dataset)
    assert first.ret == pytest.ExitCode.OK  # the whole benchmark, and the gate passes
    result = _gated(pytester, dataset, "--lf")
    result.stdout.fnmatch_lines(["partial run: the figures cover 4 of 8 dialogues (--lf)"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_a_whole_run_is_not_partial(pytester: pytest.Pytester, dataset: Path) -> None:
    result = _gated(pytester, dataset, "-m", "mtmcs")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.no_fnmatch_line("*partial run*")
    report = pytester.path / "r.json"
    _gated(pytester, dataset, f"--mtmcs-report={report}")
    cov = json.loads(report.read_text())["coverage"]
    assert cov == {"dialogues": 8, "questions": 0, "dialogues_run": 8, "questions_run": 0,
                   "reasons": []}
