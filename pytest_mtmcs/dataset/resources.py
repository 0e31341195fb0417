"""Folders of data that ship inside the wheel (the guardrail configs, the sample dataset), read
through `importlib.resources`.

The repository keeps them in top-level folders (`guardrails/`, `fixtures/mtmcs-sample/`) that
pyproject.toml maps to data packages without an `__init__.py` (`pytest_mtmcs.guardrail_configs`,
`pytest_mtmcs.sample_data`). Such a namespace package may be spread over several folders, or sit
in a zip file, so `files()` returns a `Traversable`, not a path: read files through it
(`read_text`, `read_bytes`), and call `as_folder` where a library needs a real folder. Never turn
a Traversable into a path with `str()`: a namespace package's is `MultiplexedPath('...')`.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

if sys.version_info >= (3, 11):
    from importlib.resources.abc import Traversable
else:  # pragma: no cover - Python 3.10
    from importlib.abc import Traversable

__all__ = ["CHECKOUT", "Traversable", "as_folder", "copy_tree", "describe", "join", "packaged"]

CHECKOUT = Path(__file__).resolve().parents[2]
"""The folder above the package: a source checkout's root when pyproject.toml sits there."""


def packaged(package: str, checkout_folder: str) -> Traversable:
    """The data package `package` as installed, e.g. `packaged("pytest_mtmcs.guardrail_configs",
    "guardrails")`.

    Under an editable install (`pip install -e .`) setuptools' finder cannot import a namespace
    package mapped from another folder, so a source checkout (pyproject.toml next to the
    package) reads `checkout_folder` of the checkout instead. A wheel install never looks
    outside site-packages (next to it may sit an unrelated top-level `guardrails` package).
    Raises FileNotFoundError naming both places when neither exists."""
    try:
        return resources.files(package)
    except ModuleNotFoundError:
        folder = CHECKOUT / checkout_folder
        if (CHECKOUT / "pyproject.toml").is_file() and folder.is_dir():
            return folder
        raise FileNotFoundError(f"pytest-mtmcs: the packaged data {package} is missing (and no "
                                f"source checkout at {folder}); reinstall pytest-mtmcs") from None


def join(root: Traversable, *parts: str) -> Traversable:
    """`root / part / ...`, one part at a time (Python 3.10's namespace packages join one
    name per call)."""
    for part in parts:
        root = root / part
    return root


def describe(item: Traversable) -> str:
    """A path for messages: the real path where there is one, else the resource's repr."""
    return str(item) if isinstance(item, Path) else repr(item)


def copy_tree(source: Traversable, dest: Path) -> list[Path]:
    """Copy the files under `source` into the folder `dest` (made as needed), `__pycache__`
    left out; returns the files written, in order."""
    written: list[Path] = []
    dest.mkdir(parents=True, exist_ok=True)
    for child in sorted(source.iterdir(), key=lambda c: c.name):
        if child.name == "__pycache__":
            continue
        if child.is_dir():
            written += copy_tree(child, dest / child.name)
        elif child.is_file():
            out = dest / child.name
            out.write_bytes(child.read_bytes())
            written.append(out)
    return written


@contextmanager
def as_folder(folder: Traversable) -> Iterator[Path]:
    """A real filesystem folder with `folder`'s files, for the block: the folder itself when it
    is one, else a temporary copy (a namespace package spread over several folders, a zip),
    removed afterwards. `importlib.resources.as_file` does this from Python 3.12 on; this works
    on 3.10 and 3.11 too."""
    if isinstance(folder, Path):
        yield folder
        return
    if sys.version_info >= (3, 12):
        with resources.as_file(folder) as path:
            yield path
        return
    tmp = Path(tempfile.mkdtemp(prefix="mtmcs-resources-"))
    try:
        copy_tree(folder, tmp / folder.name)
        yield tmp / folder.name
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
