"""Packaged data read through importlib.resources: the guardrail configs as an installed wheel
gives them (a namespace package, here spread over two real folders on sys.path), the override
order of the config folder, and a NeMo config that is no real folder until it is copied out."""

from __future__ import annotations

import asyncio
import importlib
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_mtmcs.dataset.resources import as_folder, describe, join, packaged
from pytest_mtmcs.errors import SpecError
from pytest_mtmcs.guardrails import (
    GuardrailOptions,
    default_config_dir,
    make_guardrail,
    shipped_configs,
)
from pytest_mtmcs.guardrails.llama_guard_prompt import load_policy
from pytest_mtmcs.guardrails.prompt_edits import read_prompt
from pytest_mtmcs.targets.scripted import ScriptedTarget

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "guardrails"


@pytest.fixture
def namespace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path, Path]]:
    """(name, folder A, folder B) of a fresh namespace package (no __init__.py) whose files are
    split over two folders, both on sys.path: what `files()` calls a MultiplexedPath."""
    name = f"mtmcs_ns_{uuid.uuid4().hex[:8]}"
    a, b = tmp_path / "a" / name, tmp_path / "b" / name
    for folder in (a, b):
        folder.mkdir(parents=True)
    monkeypatch.syspath_prepend(str(tmp_path / "a"))
    monkeypatch.syspath_prepend(str(tmp_path / "b"))
    importlib.invalidate_caches()
    yield name, a, b
    sys.modules.pop(name, None)


def copy(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, dest)


def test_guardrail_configs_spread_over_a_namespace_package(namespace: tuple[str, Path, Path]) -> None:
    name, a, b = namespace
    copy(REPO_CONFIGS / "prompts" / "dpp.txt", a / "prompts" / "dpp.txt")
    copy(REPO_CONFIGS / "llama_guard" / "categories.json", b / "llama_guard" / "categories.json")
    root = packaged(name, "no-such-folder")
    assert not isinstance(root, Path)  # the case `Path(str(files(...)))` got wrong
    options = GuardrailOptions(config_dir=root)

    assert read_prompt(options, "dpp.txt") == (REPO_CONFIGS / "prompts" / "dpp.txt").read_text().strip()
    policy = load_policy(options.config("llama_guard", "categories.json"))
    assert policy.path == str(b / "llama_guard" / "categories.json")
    guard = make_guardrail("dpp", None, options, ScriptedTarget())
    assert guard.name == "dpp"

    with pytest.raises(SpecError, match=r"guardrail config .*missing\.txt does not exist"):
        options.config("prompts", "missing.txt")


def test_as_folder_copies_a_spread_folder_and_removes_the_copy(namespace: tuple[str, Path, Path]) -> None:
    name, a, b = namespace
    (a / "one.txt").write_text("1")
    (b / "sub").mkdir()
    (b / "sub" / "two.txt").write_text("2")
    (b / "__pycache__").mkdir()
    (b / "__pycache__" / "x.pyc").write_bytes(b"")
    root = packaged(name, "no-such-folder")
    with as_folder(root) as folder:
        assert isinstance(folder, Path) and folder.is_dir()
        assert (folder / "one.txt").read_text() == "1"
        assert (folder / "sub" / "two.txt").read_text() == "2"
    assert not folder.exists()
    with as_folder(a) as same:  # a real folder is used as it is, and kept
        assert same == a
    assert a.is_dir()


def test_a_nemo_config_in_a_spread_package_is_copied_out_for_the_guard_s_life(
        namespace: tuple[str, Path, Path]) -> None:
    pytest.importorskip("nemoguardrails", reason='needs the nemo extra: pip install "pytest-mtmcs[nemo]"')
    from pytest_mtmcs.guardrails.nemo import NemoGuard

    name, a, b = namespace
    copy(REPO_CONFIGS / "nemo" / "self_check" / "config.yml", a / "config.yml")
    copy(REPO_CONFIGS / "nemo" / "self_check" / "prompts.yml", b / "prompts.yml")
    guard = NemoGuard(packaged(name, "no-such-folder"), ScriptedTarget(), GuardrailOptions())
    folder = Path(guard.folder)
    assert sorted(p.name for p in folder.iterdir()) == ["config.yml", "prompts.yml"]
    asyncio.run(guard.aclose())
    assert not folder.exists()


def test_packaged_names_the_missing_data() -> None:
    with pytest.raises(FileNotFoundError, match=r"mtmcs_missing_pkg is missing.*reinstall"):
        packaged("mtmcs_missing_pkg", "no-such-folder")


def test_config_folder_order(tmp_path: Path) -> None:
    """The rootdir's guardrails/ first, else the shipped configs (--mtmcs-guardrails-dir, before
    both, is applied where the options are built)."""
    shipped = shipped_configs()
    assert join(shipped, "prompts", "dpp.txt").is_file()
    assert join(shipped, "nemo", "self_check", "config.yml").is_file()
    assert describe(default_config_dir(tmp_path)) == describe(shipped)
    (tmp_path / "guardrails").mkdir()
    assert default_config_dir(tmp_path) == tmp_path / "guardrails"
    assert describe(default_config_dir(None)) == describe(shipped)
