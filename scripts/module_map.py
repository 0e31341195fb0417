"""Write the module map of docs/architecture.md from the package's module docstrings.

Every module of `pytest_mtmcs/` with the first paragraph of its docstring (its one
responsibility), folder by folder from the bottom stage up. `tests/unit/test_docs.py` fails when
the page and the package disagree; run `python scripts/module_map.py` to rewrite the section.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "architecture.md"
FOLDERS = ("dataset", "targets", "guardrails", "scoring", "rollout", "reporting", "testing")
HEAD, TAIL = "## Module map\n", "## Decisions and their reasons\n"


def first_paragraph(path: Path) -> str:
    """The first paragraph of a module's docstring, on one line ('' without one)."""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return " ".join(doc.split("\n\n")[0].split()).replace("|", "\\|")


def module_map() -> str:
    """The section's text, from its heading to the next section's."""
    package = ROOT / "pytest_mtmcs"
    out = [HEAD, "", "Every module of the package with the first line of its docstring (the module's one",
           "responsibility), stage by stage from the bottom up.", ""]
    groups = [(f"**{name}/**", sorted((package / name).glob("*.py")), f"{name}/") for name in FOLDERS]
    groups.append(("**vocabulary and wiring (top level)**", sorted(package.glob("*.py")), ""))
    for title, files, prefix in groups:
        out += [title, "", "| module | what it does |", "| --- | --- |"]
        out += [f"| `{prefix}{f.name}` | {first_paragraph(f)} |" for f in files
                if f.name != "__init__.py" or not prefix]
        out.append("")
    return "\n".join(out) + "\n"


def page_with_map(text: str) -> str:
    """The page with its module-map section replaced by `module_map()`."""
    start, end = text.index(HEAD), text.index(TAIL)
    return text[:start] + module_map() + text[end:]


if __name__ == "__main__":
    text = PAGE.read_text(encoding="utf-8")
    new = page_with_map(text)
    if new != text:
        PAGE.write_text(new, encoding="utf-8")
        print(f"rewrote the module map in {PAGE.relative_to(ROOT)}")
    sys.exit(0)
