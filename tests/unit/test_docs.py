"""The documentation stays true to the code.

- every `--mtmcs-*` option and `mtmcs_*` ini key that README.md, docs/ or examples/ names is one
  the plugin registers (read through pytest's own parser), and the options page lists them all;
- examples/github-actions.yml is a GitHub Actions workflow that serves a model on this machine,
  runs `pytest --mtmcs` with gates, uploads the HTML report and writes the job summary;
- relative links in README.md and docs/ point at files (and headings) that exist, and the
  MkDocs navigation names every page.

CI also builds the site with `mkdocs build --strict`; these checks need no MkDocs and say which
file and line is wrong.
"""

from __future__ import annotations

import re
import shlex
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_mtmcs import plugin
from pytest_mtmcs.settings import GATE_OPTIONS, OPTIONS

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
WORKFLOW = ROOT / "examples" / "github-actions.yml"
WORKFLOWS = (WORKFLOW, ROOT / "examples" / "github-actions-cpu.yml")
"""The CI recipes: vLLM on a GPU runner, `transformers serve` on a hosted CPU runner."""

OPTION = re.compile(r"--mtmcs(?:-[a-z0-9]+)+")
INI_KEY = re.compile(r"\bmtmcs_[a-z][a-z0-9_]*[a-z0-9]\b")
NOT_INI_KEYS = {"mtmcs_results"}
"""`mtmcs_*` names in the docs that are not ini keys (the fixture)."""
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)


# ------------------------------------------------------------------------------------ helpers
@dataclass(frozen=True)
class RealOption:
    flag: str
    takes_value: bool


@pytest.fixture(scope="module")
def real_options() -> dict[str, RealOption]:
    """The plugin's options, as its `pytest_addoption` registers them with pytest's parser."""
    parser = pytest.Parser(_ispytest=True)
    plugin.pytest_addoption(parser)
    found: dict[str, RealOption] = {}
    for argument in parser.getgroup("mtmcs").options:
        takes_value = argument.attrs().get("action") not in ("store_true", "store_const")
        for name in argument.names():
            found[name] = RealOption(name, takes_value)
    return found


def doc_files() -> list[Path]:
    """Every file whose text names options: README.md, docs/**/*.md, examples/*.yml."""
    files = [README, *sorted(DOCS.rglob("*.md")), *sorted((ROOT / "examples").glob("*.yml"))]
    assert len(files) > 3, "the docs are missing"
    return files


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def named_options(text: str) -> list[tuple[int, str]]:
    """(line number, option) for every `--mtmcs...` flag written in `text`."""
    return [(n, m.group(0)) for n, line in enumerate(text.splitlines(), 1)
            for m in OPTION.finditer(line)]


def unknown_options(files: list[Path], real: set[str]) -> list[str]:
    """`file:line: --mtmcs-x` for each option named in `files` that `real` lacks."""
    return [f"{rel(f)}:{n}: {opt}" for f in files
            for n, opt in named_options(f.read_text(encoding="utf-8")) if opt not in real]


def strip_code(markdown: str) -> str:
    """Markdown without fenced blocks and code spans (links and headings there are not real);
    line numbers are kept."""
    markdown = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), markdown)
    return CODE_SPAN.sub("``", markdown)


def slug(heading: str) -> str:
    """The anchor of a heading as MkDocs (Python-Markdown's toc) makes it, which is also
    GitHub's for the headings written here."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(path: Path) -> set[str]:
    return {slug(h) for h in HEADING.findall(strip_code(path.read_text(encoding="utf-8")))}


def broken_links(path: Path) -> list[str]:
    """Relative links of a Markdown file whose file or heading does not exist; links from
    docs/ must also stay inside docs/, since the site holds nothing else."""
    text = strip_code(path.read_text(encoding="utf-8"))
    wrong = []
    for n, line in enumerate(text.splitlines(), 1):
        for target in LINK.findall(line):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
                continue
            file_part, _, anchor = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            where = f"{rel(path)}:{n}: ({target})"
            if not dest.exists():
                wrong.append(f"{where} points at a missing file")
            elif DOCS in path.parents and DOCS not in dest.parents:
                wrong.append(f"{where} leaves docs/, which the site cannot follow")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                wrong.append(f"{where} names a heading that {rel(dest)} does not have")
    return wrong


# ------------------------------------------------------------------------------------ options
def test_every_option_the_docs_name_exists(real_options: dict[str, RealOption]) -> None:
    wrong = unknown_options(doc_files(), set(real_options))
    assert not wrong, "options named in the docs that the plugin does not have:\n" + "\n".join(wrong)


def test_a_renamed_option_is_caught(real_options: dict[str, RealOption], tmp_path: Path) -> None:
    """The check above fails when an option the docs name goes away (here: as if renamed)."""
    page = tmp_path / "page.md"
    page.write_text("Gate with `--mtmcs-max-over-refusal 0.2`,\nand --mtmcs-html=run.html.\n")
    assert unknown_options([page], set(real_options)) == []
    renamed = set(real_options) - {"--mtmcs-max-over-refusal"} | {"--mtmcs-max-overrefusal"}
    assert unknown_options([page], renamed) == [f"{page}:1: --mtmcs-max-over-refusal"]


def test_the_options_page_lists_every_option(real_options: dict[str, RealOption]) -> None:
    listed = {opt for _, opt in named_options((DOCS / "options.md").read_text(encoding="utf-8"))}
    missing = sorted(set(real_options) - listed - {"--mtmcs"})
    assert not missing, f"docs/options.md does not describe: {', '.join(missing)}"
    assert {f"--mtmcs-{opt.name}" for opt in OPTIONS} <= set(real_options)


def test_every_ini_key_the_docs_name_exists(pytestconfig: pytest.Config) -> None:
    wrong = []
    for f in doc_files():
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            for key in INI_KEY.findall(line):
                if key in NOT_INI_KEYS:
                    continue
                try:
                    pytestconfig.getini(key)
                except ValueError:
                    wrong.append(f"{rel(f)}:{n}: {key}")
    assert not wrong, "ini keys named in the docs that the plugin does not have:\n" + "\n".join(wrong)


def test_the_readme_opens_with_the_commands_ci_runs() -> None:
    first_screen = "\n".join(README.read_text(encoding="utf-8").splitlines()[:60])
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    for command in ("bash scripts/setup.sh", ".venv/bin/pytest tests -n 2 -p no:cacheprovider"):
        assert command in ci, f".ci/run no longer runs {command!r}: update the README and this test"
        assert command in first_screen, f"README.md's first screen lacks {command!r}"
    for words in (".venv/bin/pytest --mtmcs fixtures", "openai+http://", "hf:PATH",
                  "examples/github-actions.yml", "--mtmcs-min-"):
        assert words in first_screen, f"README.md's first screen lacks {words!r}"


# ------------------------------------------------------------------------------- the CI recipe
@pytest.fixture(scope="module", params=WORKFLOWS, ids=[w.name for w in WORKFLOWS])
def workflow(request: pytest.FixtureRequest) -> dict[Any, Any]:
    path: Path = request.param
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{rel(path)} is not a YAML mapping"
    return data


def steps_of(workflow: dict[Any, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(job, step) pairs in order."""
    return [(job, step) for job in workflow["jobs"].values() for step in job["steps"]]


def shell_lines(script: str) -> list[str]:
    """A step's `run` script as logical lines (backslash continuations joined)."""
    return [line.strip() for line in re.sub(r"\\\n\s*", " ", script).splitlines() if line.strip()]


def expand(value: str, env: dict[str, Any]) -> str:
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?",
                  lambda m: str(env.get(m.group(1), m.group(0))), value)


@dataclass
class PytestCall:
    step: dict[str, Any]
    index: int
    options: dict[str, str | None]


def pytest_calls(workflow: dict[Any, Any], real: dict[str, RealOption]) -> list[PytestCall]:
    """Every `pytest --mtmcs ...` line of the workflow, its `--mtmcs*` options parsed the way
    pytest would (a value follows an option that takes one) and env variables expanded."""
    calls = []
    for index, (job, step) in enumerate(steps_of(workflow)):
        env = {**job.get("env", {}), **step.get("env", {})}
        for line in shell_lines(step.get("run", "")):
            words = shlex.split(line, comments=True)
            if "pytest" not in words[:3] or "--mtmcs" not in words:
                continue
            options: dict[str, str | None] = {}
            i = 0
            while i < len(words):
                flag, eq, value = words[i].partition("=")
                if flag.startswith("--mtmcs"):
                    assert flag in real, f"{rel(WORKFLOW)}: {flag} is not an option of the plugin"
                    if real[flag].takes_value and not eq:
                        i += 1
                        value = words[i]
                    options[flag] = expand(value, env) if real[flag].takes_value else None
                i += 1
            calls.append(PytestCall(step, index, options))
    return calls


def test_the_ci_recipe_is_a_github_actions_workflow(workflow: dict[Any, Any]) -> None:
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert triggers, "the workflow has no `on:` triggers"
    assert workflow.get("jobs"), "the workflow has no jobs"
    for name, job in workflow["jobs"].items():
        assert job.get("runs-on"), f"job {name} has no runs-on"
        assert job.get("steps"), f"job {name} has no steps"
        for step in job["steps"]:
            assert ("uses" in step) != ("run" in step), f"job {name}: a step needs uses or run: {step}"
    uses = [step.get("uses", "") for _, step in steps_of(workflow)]
    assert any(u.startswith("actions/checkout@") for u in uses)
    assert any(u.startswith("actions/setup-python@") for u in uses)
    installs = " ".join(step.get("run", "") for _, step in steps_of(workflow))
    assert re.search(r"pip install [^\n]*pytest-mtmcs", installs), "pytest-mtmcs is never installed"


def test_the_ci_recipe_gates_and_reports(workflow: dict[Any, Any],
                                         real_options: dict[str, RealOption]) -> None:
    calls = pytest_calls(workflow, real_options)
    assert len(calls) == 1, "expected one `pytest --mtmcs` run in the workflow"
    opts = calls[0].options
    assert {f"--mtmcs-{g}" for g in GATE_OPTIONS} & set(opts), "the run sets no gate"
    for flag, value in opts.items():
        spec = next((o for o in OPTIONS if f"--mtmcs-{o.name}" == flag), None)
        if spec is None or value is None or spec.kind not in ("int", "float"):
            continue
        number = float(value)
        if spec.bounds:
            assert spec.bounds[0] <= number <= spec.bounds[1], f"{flag} {value} is out of range"
    assert opts.get("--mtmcs-data"), "the run does not say which data to use"

    html = opts.get("--mtmcs-html")
    assert html, "the run writes no HTML report"
    uploads = [(i, step) for i, (_, step) in enumerate(steps_of(workflow))
               if step.get("uses", "").startswith("actions/upload-artifact@")
               and html in str(step.get("with", {}).get("path", "")).split()]
    assert uploads, f"no actions/upload-artifact step uploads {html}"
    index, upload = uploads[0]
    assert index > calls[0].index, "the HTML report is uploaded before it is written"
    assert "always()" in str(upload.get("if", "")), "the report must be uploaded when a gate fails"

    scripts = " ".join(step.get("run", "") for _, step in steps_of(workflow))
    assert "--mtmcs-markdown" in opts or "GITHUB_STEP_SUMMARY" in scripts, "no job summary is written"


def test_the_ci_recipe_serves_the_model_on_this_machine(workflow: dict[Any, Any],
                                                        real_options: dict[str, RealOption]) -> None:
    call = pytest_calls(workflow, real_options)[0]
    target = call.options.get("--mtmcs-target") or ""
    m = re.fullmatch(r"openai\+http://(127\.0\.0\.1|localhost):(\d+)/v1:(\S+)", target)
    assert m, f"--mtmcs-target {target!r} is not an OpenAI-compatible server on this machine"
    host, port = m.group(1), m.group(2)
    before = [step.get("run", "") for _, step in steps_of(workflow)[:call.index]]
    started = [s for s in before if "&" in s and f"--port {port}" in s
               and re.search(r"--host (127\.0\.0\.1|localhost)\b", s)]
    assert started, f"no earlier step starts a server in the background on 127.0.0.1:{port}"
    waits = [s for s in before if re.search(rf"curl [^\n]*http://{re.escape(host)}:{port}/", s)]
    assert waits, "no earlier step waits for the server to answer"
    assert any(re.search(r"\$\(seq |\btimeout ", s) for s in waits), "the wait is not bounded"


# -------------------------------------------------------------------------- links and the site
def test_relative_links_resolve() -> None:
    pages = [README, *sorted(DOCS.rglob("*.md"))]
    wrong = [problem for page in pages for problem in broken_links(page)]
    assert not wrong, "\n".join(wrong)


def test_the_link_check_sees_a_broken_link(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other\n\n## A heading\n")
    page = tmp_path / "page.md"
    page.write_text("[ok](other.md#a-heading) [gone](missing.md) [no](other.md#nope)\n"
                    "`[code](x.md)` [web](https://example.org/x.md) [here](#page)\n# Page\n")
    wrong = broken_links(page)
    assert len(wrong) == 2 and "missing.md" in wrong[0] and "#nope" in wrong[1]
    assert slug("Scoring runs made with the benchmark's own scripts") == \
        "scoring-runs-made-with-the-benchmarks-own-scripts"
    assert slug("A/B and baseline") == "ab-and-baseline"


def nav_pages(nav: list[Any]) -> list[str]:
    out: list[str] = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        out += nav_pages(value) if isinstance(value, list) else [value]
    return out


def test_the_site_navigation_names_every_page() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    assert config["theme"]["name"] == "material"
    pages = nav_pages(config["nav"])
    on_disk = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert sorted(pages) == on_disk, "mkdocs.yml's nav and the pages in docs/ differ"
    for name in ("options.md", "architecture.md", "performance.md"):
        assert name in pages


def test_api_pages_name_modules_that_import() -> None:
    import importlib

    modules = [m for page in sorted((DOCS / "api").glob("*.md"))
               for m in re.findall(r"^::: ([\w.]+)", page.read_text(encoding="utf-8"), re.M)]
    assert "pytest_mtmcs.targets.base" in modules and "pytest_mtmcs.hookspecs" in modules
    for module in modules:
        importlib.import_module(module)


def test_the_module_map_lists_every_module_with_its_docstring() -> None:
    """docs/architecture.md's module map is what scripts/module_map.py writes from the package."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("module_map", ROOT / "scripts" / "module_map.py")
    assert spec is not None and spec.loader is not None
    module_map = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module_map)
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    assert "`invocation.py`" in text and "`rollout/engine.py`" in text
    assert module_map.page_with_map(text) == text, (
        "the module map in docs/architecture.md is out of date: run python scripts/module_map.py")
