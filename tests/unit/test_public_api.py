"""The public API of `pytest_mtmcs`: its names, a light import, registry errors, cache identity."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest

import pytest_mtmcs
from pytest_mtmcs import (
    Case,
    Conversation,
    GenParams,
    GuardContext,
    GuardedTarget,
    Guardrail,
    Reply,
    RunReport,
    Target,
    TargetOptions,
    register_guardrail,
    register_target,
)
from pytest_mtmcs.errors import SpecError
from pytest_mtmcs.hookspecs import pytest_mtmcs_run_summary, pytest_mtmcs_select_cases
from pytest_mtmcs.targets import make_target

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers", "openai", "httpx", "pyarrow", "nemoguardrails", "datasets")


def _loaded_heavy(code: str) -> list[str]:
    """The heavy top-level modules a fresh interpreter holds after running `code`."""
    probe = (f"{code}\nimport json, sys\n"
             f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r})))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    return list(json.loads(out.splitlines()[-1]))


def test_importing_the_package_and_the_plugin_loads_no_heavy_library() -> None:
    assert _loaded_heavy("import pytest_mtmcs, pytest_mtmcs.plugin") == []


def test_the_public_names_load_no_heavy_library_either() -> None:
    code = "import pytest_mtmcs\nfor name in pytest_mtmcs.__all__: getattr(pytest_mtmcs, name)"
    assert _loaded_heavy(code) == []


def test_every_public_name_resolves() -> None:
    for name in pytest_mtmcs.__all__:
        assert getattr(pytest_mtmcs, name) is not None, name
    assert set(pytest_mtmcs.__all__) <= set(dir(pytest_mtmcs))
    namespace: dict[str, object] = {}
    exec("from pytest_mtmcs import *", namespace)
    assert set(pytest_mtmcs.__all__) <= set(namespace)
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        pytest_mtmcs.Nope  # noqa: B018


def test_the_exports_are_the_classes_the_package_uses() -> None:
    from pytest_mtmcs.guardrails import register_guardrail as guardrails_register
    from pytest_mtmcs.guardrails.base import Guardrail as GuardrailBase
    from pytest_mtmcs.targets.base import Target as TargetBase

    assert Target is TargetBase and Guardrail is GuardrailBase
    assert register_guardrail is guardrails_register
    assert issubclass(GuardedTarget, Target)


def test_the_package_is_marked_typed_and_the_wheel_ships_the_marker() -> None:
    assert (ROOT / "pytest_mtmcs" / "py.typed").is_file()
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "py.typed" in pyproject["tool"]["setuptools"]["package-data"]["pytest_mtmcs"]


def test_the_hookspecs_are_typed() -> None:
    names = {"Case": Case, "RunReport": RunReport}
    select = typing.get_type_hints(pytest_mtmcs_select_cases, localns=names)
    assert select == {"config": pytest.Config, "cases": list[Case], "return": list[Case] | None}
    summary = typing.get_type_hints(pytest_mtmcs_run_summary, localns=names)
    assert summary == {"config": pytest.Config, "report": RunReport, "return": type(None)}
    for spec in (pytest_mtmcs_select_cases, pytest_mtmcs_run_summary):
        assert spec.__doc__ is not None and "Example" in spec.__doc__


# -- registries ------------------------------------------------------------------------------------

def _factory(rest: str, options: TargetOptions) -> Target:
    raise AssertionError("never built")


def _guard_factory(arg: str | None, options: object, target: Target) -> Guardrail:
    raise AssertionError("never built")


@pytest.mark.parametrize("scheme", ["", "in house", "my:scheme", "my+scheme", "1st", "-x"])
def test_a_malformed_scheme_is_refused(scheme: str) -> None:
    with pytest.raises(SpecError, match=re.escape(f"register_target: invalid scheme {scheme!r}; expected")):
        register_target(scheme, _factory)


@pytest.mark.parametrize("scheme", ["openai", "hf", "baseline", "scripted", "smollm2"])
def test_a_built_in_scheme_is_refused(scheme: str) -> None:
    with pytest.raises(SpecError, match=rf"scheme {scheme!r} is built in; pick another name "
                                        r"\(known schemes: baseline, hf, openai, scripted, smollm2"):
        register_target(scheme, _factory)


@pytest.mark.parametrize("name", ["", "none", "a,b", "lg:x", "my guard", "-x", "a[b]"])
def test_a_malformed_guardrail_name_is_refused(name: str) -> None:
    with pytest.raises(SpecError, match=re.escape(f"register_guardrail: invalid name {name!r}; expected")):
        register_guardrail(name, _guard_factory)


@pytest.mark.parametrize("name", ["dpp", "adashield", "llama-guard", "nemo"])
def test_a_built_in_guardrail_name_is_refused(name: str) -> None:
    with pytest.raises(SpecError, match=rf"name {name!r} is built in; pick another name "
                                        r"\(known guardrails: adashield, adashield-a, "):
        register_guardrail(name, _guard_factory)


def test_a_factory_must_be_callable() -> None:
    with pytest.raises(SpecError, match="the factory is not callable"):
        register_target("mine", "pkg.mod:factory")  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="the factory is not callable"):
        register_guardrail("mine", None)  # type: ignore[arg-type]


# -- cache identity --------------------------------------------------------------------------------

class Echo(Target):
    spec = "echo:x"

    async def respond(self, conversation: Conversation, params: GenParams) -> Reply:
        return Reply(text=conversation[-1].text)


class EchoV2(Echo):
    version = "2"


class Quiet(Guardrail):
    name = "quiet"

    def identity(self) -> str:  # an override that forgets class and version
        return "quiet"

    async def respond(self, ctx: GuardContext) -> Reply:
        return await ctx.answer()


class QuietV2(Quiet):
    version = "2"


def test_the_default_identity_names_class_version_and_spec() -> None:
    assert Echo().identity() == f"{__name__}.Echo|echo:x"
    assert EchoV2().identity() == f"{__name__}.EchoV2@2|echo:x"
    bumped = Echo()
    bumped.version = "3"
    assert bumped.identity() == f"{__name__}.Echo@3|echo:x" != Echo().identity()


def test_a_stack_names_its_guardrails_class_and_version_even_when_identity_is_overridden() -> None:
    one, two = GuardedTarget(Echo(), Quiet()), GuardedTarget(Echo(), QuietV2())
    assert one.identity() == f"{Echo().identity()}|guardrail={__name__}.Quiet|quiet"
    assert two.identity() == f"{Echo().identity()}|guardrail={__name__}.QuietV2@2|quiet"
    assert GuardedTarget(EchoV2(), Quiet()).identity() != one.identity()


def test_identities_are_the_same_in_every_process() -> None:
    code = ("from pathlib import Path\n"
            "from pytest_mtmcs import GuardedTarget\n"
            "from pytest_mtmcs.guardrails import GuardrailOptions, make_guardrail\n"
            "from pytest_mtmcs.targets import make_target\n"
            "t = make_target('baseline:refuse')\n"
            f"o = GuardrailOptions(config_dir=Path({str(ROOT / 'guardrails')!r}))\n"
            "print(t.identity()); print(GuardedTarget(t, make_guardrail('dpp', None, o, t)).identity())")
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           timeout=120).stdout for _ in range(2)]
    assert runs[0] == runs[1]
    bare = runs[0].splitlines()[0]
    assert bare == make_target("baseline:refuse").identity() == (
        "pytest_mtmcs.targets.baseline.BaselineTarget|baseline:refuse")
    assert "|guardrail=pytest_mtmcs.guardrails.prompting.DefensivePromptPatch|dpp|" in runs[0]
