"""The public extension API through the plugin (black box, pytester): the README's custom
target and guardrail, in-process registration, cache identity across code versions, and our own
hooks implemented in a conftest.py.

Runs that register something in a conftest.py go through a subprocess: a registry lives as long
as its process, and an in-process run would leave the registration to the next test.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _runs import load_report, run_mtmcs

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "fixtures" / "mtmcs-sample"
SECTION = "## Extend it: your own target or guardrail"


def readme_examples() -> list[str]:
    """The ```python blocks of the README's "Extend it" section, exactly as written there."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"\n{SECTION}\n" in text, f"README.md has no section {SECTION!r}"
    section = text.split(f"\n{SECTION}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```python\n(.*?)^```$", section, re.DOTALL | re.MULTILINE)


def test_the_readme_shows_a_target_and_a_guardrail_in_about_ten_lines_each() -> None:
    blocks = readme_examples()
    assert len(blocks) == 2
    target, guardrail = blocks
    assert "register_target(" in target and "register_guardrail(" in guardrail
    for block in blocks:
        code = [line for line in block.splitlines() if line.strip() and not line.strip().startswith("#")]
        assert len(code) <= 14, f"{len(code)} lines of code:\n{block}"


def test_the_readme_examples_run(pytester: pytest.Pytester, xdist_args: list[str]) -> None:
    pytester.makeconftest("\n\n".join(readme_examples()))
    result = run_mtmcs(pytester, SAMPLE, *xdist_args, "--mtmcs-limit=1", "--mtmcs-skip-questions",
                       "--mtmcs-guardrail=none,blocklist", "--mtmcs-save-transcripts",
                       target="inhouse:demo")
    # 1 row x 2 splits x 2 modalities x (safe, unsafe), once per stack
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) + outcomes.get("failed", 0) == 16, result.stdout.str()
    result.stdout.fnmatch_lines(["A/B none -> blocklist: 8 dialogues matched"])
    report = load_report(pytester)
    assert report["target"] == "inhouse:demo"
    bare = [d for d in report["dialogues"] if d["guardrail"] == "none"]
    guarded = [d for d in report["dialogues"] if d["guardrail"] == "blocklist"]
    assert len(bare) == len(guarded) == 8
    # The custom target answered every turn of the bare stack ...
    assert {t["reply"] for d in bare for t in d["turns"]} == {
        "Sure! demo is happy to help with that."}
    assert all(d["turn_of_refusal"] is None for d in bare)
    # ... and the custom guardrail blocked every unsafe dialogue, before the call, where the
    # harm is named: at R3 of Type A ("hurt badly"), at R1 of Type B ("making it sick").
    for d in guarded:
        if d["safety"] == "unsafe":
            turn = {"type_a": 3, "type_b": 1}[d["split"]]
            blocked = d["turns"][turn - 1]
            assert d["turn_of_refusal"] == turn and blocked["blocked_by"] == "blocklist", d
            assert re.fullmatch(r"blocklist: '(hurt|sick)'", blocked["block_reason"])
            assert blocked["reply"] != "Sure! demo is happy to help with that."
    blocked = [t for d in guarded for t in d["turns"] if t["blocked_by"]]
    allowed = [t for d in guarded for t in d["turns"] if not t["blocked_by"]]
    assert blocked and allowed
    assert {t["reply"] for t in allowed} == {"Sure! demo is happy to help with that."}
    overall = {g["guardrail"]: g for g in report["summary"] if g["split"] == "all"}
    assert overall["none"]["refusal_rate_unsafe"]["value"] == 0.0
    assert overall["blocklist"]["refusal_rate_unsafe"]["value"] == 1.0


def test_the_readme_examples_type_check(tmp_path: Path) -> None:
    """The examples pass `mypy --strict` against the package's own annotations."""
    pytest.importorskip("mypy", reason='needs pip install "pytest-mtmcs[dev]"')
    example = tmp_path / "conftest.py"
    example.write_text("\n\n".join(readme_examples()), encoding="utf-8")
    env = {**os.environ, "MYPYPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--config-file", str(ROOT / "pyproject.toml"),
         "--cache-dir", str(tmp_path / ".mypy_cache"), "--no-error-summary", str(example)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    mine = [line for line in proc.stdout.splitlines() if line.startswith(str(example))]
    assert not mine, proc.stdout
    assert proc.returncode == 0, proc.stdout + proc.stderr


COUNTED = """
from pathlib import Path

from pytest_mtmcs import (Conversation, GenParams, GuardContext, Guardrail, Reply, Target,
                          TargetOptions, register_guardrail, register_target)

LOG = Path(__file__).with_name("calls.log")


def log(what: str) -> None:
    with LOG.open("a") as f:
        f.write(what + "\\n")


class Counted(Target):
    version = "{target_version}"

    def __init__(self, rest: str, options: TargetOptions) -> None:
        pass

    async def respond(self, conversation: Conversation, params: GenParams) -> Reply:
        log("target")
        return Reply(text="Sure, here is a helpful answer.")


class Passing(Guardrail):
    version = "{guard_version}"

    def identity(self) -> str:  # an override: the stack still adds class and version
        return "passing"

    async def respond(self, ctx: GuardContext) -> Reply:
        log("guard")
        return await ctx.answer()


register_target("counted", Counted)
register_guardrail("passing", lambda arg, options, target: Passing())
"""


def test_a_new_version_of_a_custom_target_or_guardrail_is_never_served_stale_replies(
        pytester: pytest.Pytester, xdist_args: list[str]) -> None:
    log = pytester.path / "calls.log"

    def run(target_version: str, guard_version: str) -> dict[str, int]:
        pytester.makeconftest(COUNTED.format(target_version=target_version,
                                             guard_version=guard_version))
        log.write_text("")
        result = run_mtmcs(pytester, SAMPLE, *xdist_args, "--mtmcs-limit=1",
                           "--mtmcs-split=type_b", "--mtmcs-skip-questions",
                           "--mtmcs-guardrail=none,passing", target="counted:x")
        outcomes = result.parseoutcomes()  # 1 row x 2 modalities x 2 labels, per stack
        assert outcomes.get("passed", 0) + outcomes.get("failed", 0) == 8, result.stdout.str()
        lines = log.read_text().split()
        return {"target": lines.count("target"), "guard": lines.count("guard")}

    cold = run("1", "1")
    # Type B: 3 turns of safe and 3 of unsafe per modality, no turn shared: 12 target calls;
    # the guarded stack's target calls are the bare stack's, from the store.
    assert cold == {"target": 12, "guard": 12}
    assert run("1", "1") == {"target": 0, "guard": 0}  # cache-warm: nothing is called
    # A new target version: every key changes, the target is called again for both stacks.
    assert run("2", "1") == {"target": 12, "guard": 12}
    # A new guardrail version: the guardrail runs again; the target's own replies still hold.
    assert run("2", "2") == {"target": 0, "guard": 12}


def _registration_run(pytester: pytest.Pytester, conftest: str, *args: str) -> pytest.RunResult:
    pytester.makeconftest(textwrap.dedent(conftest))
    return run_mtmcs(pytester, SAMPLE, "--mtmcs-limit=1", "--mtmcs-skip-questions", *args,
                     subprocess=True)


def test_a_registered_guardrail_name_is_checked_when_the_run_starts(pytester: pytest.Pytester) -> None:
    result = _registration_run(pytester, """
        from pytest_mtmcs import register_guardrail

        def blocklist(arg, options, target):
            raise AssertionError("never built: the name is misspelt")

        register_guardrail("blocklist", blocklist)
    """, "--mtmcs-guardrail=none,blocklst")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "*--mtmcs-guardrail 'none,blocklst': unknown guardrail 'blocklst'; expected none or one "
        "of adashield, adashield-a, adashield-s, blocklist, cot, *register_guardrail*"])


def test_a_name_registered_twice_with_different_factories_is_an_error(
        pytester: pytest.Pytester) -> None:
    result = _registration_run(pytester, """
        from pytest_mtmcs import register_guardrail

        def first(arg, options, target): ...
        def second(arg, options, target): ...

        register_guardrail("mine", first)
        register_guardrail("mine", first)  # the same factory again: fine
        register_guardrail("mine", second)
    """)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "*SpecError: register_guardrail: name 'mine' is already registered with conftest.first; "
        "pick another name (known guardrails: adashield, *, mine, *)"])


def test_a_built_in_scheme_cannot_be_taken(pytester: pytest.Pytester) -> None:
    result = _registration_run(pytester, """
        from pytest_mtmcs import register_target

        register_target("openai", lambda rest, options: None)
    """)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "*SpecError: register_target: scheme 'openai' is built in; pick another name "
        "(known schemes: baseline, hf, openai, scripted, smollm2*)"])


def test_a_factory_must_build_a_target(pytester: pytest.Pytester) -> None:
    result = _registration_run(pytester, """
        from pytest_mtmcs import register_target

        register_target("broken", lambda rest, options: "not a target")
    """, "--mtmcs-target=broken:x")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "*--mtmcs-target 'broken:x': the factory of target scheme 'broken' returned "
        "'not a target', not a pytest_mtmcs.Target*"])


# -- our own hooks, implemented in a conftest.py --------------------------------------------------

def test_select_cases_chooses_the_dialogues(pytester: pytest.Pytester, dataset: Path,
                                            xdist_args: list[str]) -> None:
    pytester.makeconftest("""
        import pytest

        from pytest_mtmcs import Case


        def pytest_mtmcs_select_cases(config: pytest.Config, cases: list[Case]) -> list[Case]:
            assert config.getoption("mtmcs") and all(isinstance(c, Case) for c in cases)
            return [c for c in cases if c.split == "type_a" and c.safety == "unsafe"]
    """)
    result = run_mtmcs(pytester, dataset, *xdist_args, "--mtmcs-skip-questions")
    # 16 dialogues in the data (2 rows x 2 splits x 2 modalities x 2 labels); 4 kept
    result.assert_outcomes(passed=4)
    report = load_report(pytester)
    assert sorted(d["id"] for d in report["dialogues"]) == [
        f"type_a-{r:04d}-{m}-unsafe" for r in (0, 1) for m in ("multimodal", "unimodal")]


def test_select_cases_returning_none_keeps_them_all(pytester: pytest.Pytester, dataset: Path) -> None:
    pytester.makeconftest("""
        def pytest_mtmcs_select_cases(config, cases):
            return None
    """)
    run_mtmcs(pytester, dataset, "--mtmcs-skip-questions").assert_outcomes(passed=8, failed=8)


def test_run_summary_receives_the_run_once_on_the_controller(
        pytester: pytest.Pytester, dataset: Path, xdist_args: list[str]) -> None:
    pytester.makeconftest("""
        import json
        import os

        import pytest

        from pytest_mtmcs import RunReport


        def pytest_mtmcs_run_summary(config: pytest.Config, report: RunReport) -> None:
            overall = [g for g in report.summary if g.split == "all"]
            seen = {"type": type(report).__name__, "pid": os.getpid(),
                    "worker": hasattr(config, "workerinput"), "dialogues": len(report.dialogues),
                    "refused": [[g.guardrail, g.refusal_rate_unsafe.k, g.refusal_rate_unsafe.n,
                                 g.over_refusal_rate_safe.k, g.over_refusal_rate_safe.n]
                                for g in overall]}
            with open(config.rootpath / "summaries.jsonl", "a") as f:
                f.write(json.dumps(seen) + "\\n")
    """)
    result = run_mtmcs(pytester, dataset, *xdist_args, "--mtmcs-skip-questions",
                       "--mtmcs-guardrail=none,dpp")
    result.assert_outcomes(passed=16, failed=16)
    lines = (pytester.path / "summaries.jsonl").read_text().splitlines()
    assert len(lines) == 1, lines  # once per run, never on a worker
    seen = json.loads(lines[0])
    assert seen["type"] == "RunReport" and not seen["worker"]
    report = load_report(pytester)
    assert seen["dialogues"] == len(report["dialogues"]) == 32
    assert seen["refused"] == [
        [g["guardrail"], g["refusal_rate_unsafe"]["k"], g["refusal_rate_unsafe"]["n"],
         g["over_refusal_rate_safe"]["k"], g["over_refusal_rate_safe"]["n"]]
        for g in report["summary"] if g["split"] == "all"]
    assert [r[0] for r in seen["refused"]] == ["none", "dpp"]
    assert all(r[1:] == [8, 8, 8, 8] for r in seen["refused"])  # baseline:refuse refuses all
