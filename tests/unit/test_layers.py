"""The package's stages import in one direction only, and no two modules import each other.

Stages, lowest first (see README, "Architecture"): a module may import its own stage and the
stages below it, never one above. Every import counts: module level, inside functions, and under
`TYPE_CHECKING` (a type-only import is still a dependency a reader has to follow).
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import pytest_mtmcs

PACKAGE = Path(pytest_mtmcs.__file__).parent
NAME = "pytest_mtmcs"

# (stage, module prefixes) from the bottom up.
STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("vocabulary", ("pytest_mtmcs.chat", "pytest_mtmcs.errors", "pytest_mtmcs.textsafety",
                    "pytest_mtmcs.version")),
    ("testing", ("pytest_mtmcs.testing",)),
    ("dataset", ("pytest_mtmcs.dataset",)),
    ("targets", ("pytest_mtmcs.targets",)),
    ("guardrails", ("pytest_mtmcs.guardrails",)),
    ("scoring", ("pytest_mtmcs.scoring",)),
    ("rollout", ("pytest_mtmcs.rollout",)),
    ("reporting", ("pytest_mtmcs.reporting",)),
]
WIRING = len(STAGES)  # everything else: plugin, settings, session, items, cli, hookspecs, ...
TESTING = 1


def all_modules() -> list[str]:
    """Every module of the package, by dotted name."""
    names = [NAME]
    for info in pkgutil.walk_packages([str(PACKAGE)], prefix=f"{NAME}."):
        names.append(info.name)
    return sorted(names)


def module_file(name: str) -> Path:
    rel = Path(*name.split(".")[1:])
    package = PACKAGE / rel / "__init__.py"
    return package if package.exists() else (PACKAGE / rel).with_suffix(".py")


def rank(name: str) -> int:
    if name == NAME:
        return WIRING  # the package's own __init__ re-exports the public API: it sits on top
    for i, (_, prefixes) in enumerate(STAGES):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return i
    return WIRING


def stage_name(r: int) -> str:
    return STAGES[r][0] if r < WIRING else "wiring"


def imports_of(name: str, known: set[str]) -> set[str]:
    """The package modules `name` imports anywhere in its source (relative imports resolved)."""
    path = module_file(name)
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    here = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            bases = [alias.name for alias in node.names]
            found.update(b for b in bases if b == NAME or b.startswith(NAME + "."))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = here.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            if not (base == NAME or base.startswith(NAME + ".")):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
    found.discard(name)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    known = set(all_modules())
    return {m: imports_of(m, known) for m in known}


def test_every_module_imports() -> None:
    """Each module of each stage imports on its own (no hidden order dependency)."""
    for name in all_modules():
        importlib.import_module(name)


def test_stages_cover_the_package() -> None:
    """The stage folders exist, and only the wiring lives at the top level."""
    for stage, prefixes in STAGES:
        for prefix in prefixes:
            assert module_file(prefix).exists(), f"stage {stage}: {prefix} is missing"
    top = [m for m in all_modules() if m.count(".") == 1 and rank(m) == WIRING]
    assert "pytest_mtmcs.plugin" in top and "pytest_mtmcs.session" in top


def test_lower_stages_never_import_higher_ones(graph: dict[str, set[str]]) -> None:
    wrong = []
    for name, deps in sorted(graph.items()):
        for dep in sorted(deps):
            if rank(dep) > rank(name):
                wrong.append(f"{name} ({stage_name(rank(name))}) imports {dep} "
                             f"({stage_name(rank(dep))})")
            elif rank(name) == TESTING and rank(dep) not in (0, TESTING):
                wrong.append(f"{name} (testing) imports {dep}: the mock server stands alone")
    assert not wrong, "\n".join(wrong)


def test_no_stage_below_the_wiring_imports_the_testing_helpers(graph: dict[str, set[str]]) -> None:
    wrong = [f"{name} imports {dep}" for name, deps in graph.items() for dep in deps
             if rank(dep) == TESTING and TESTING < rank(name) < WIRING]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle(graph: dict[str, set[str]]) -> None:
    """No cycle between modules, type-only imports included (a package's `__init__` importing
    its own submodules is not a cycle: importing a submodule runs the parent first anyway)."""
    def parent_of(child: str, parent: str) -> bool:
        return child.startswith(parent + ".")

    edges = {m: {d for d in deps if not parent_of(d, m) and not parent_of(m, d)}
             for m, deps in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(edges.get(m, ())):
            if state.get(d) == 1:
                return [*stack[stack.index(d):], d]
            if d not in state:
                cycle = visit(d)
                if cycle:
                    return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(edges):
        if m not in state:
            cycle = visit(m)
            assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_private_name_crosses_a_module_boundary() -> None:
    """`from pytest_mtmcs.x import _name` is a private name used outside its module."""
    known = set(all_modules())
    wrong = []
    for name in sorted(known):
        path = module_file(name)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(NAME):
                wrong += [f"{name} imports {node.module}.{a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
    assert not wrong, "\n".join(wrong)


def test_every_module_states_its_responsibility() -> None:
    """A module docstring on every module: its first line is what the module map shows."""
    missing = [name for name in all_modules()
               if not ast.get_docstring(ast.parse(module_file(name).read_text(encoding="utf-8")))]
    assert not missing, "modules without a docstring: " + ", ".join(missing)
