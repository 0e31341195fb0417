"""The sample dataset that ships inside the wheel, and `mtmcs sample DEST`, which writes it out.

The sample is the repository's `fixtures/mtmcs-sample` (12 rows per split in the official
MTMCS-Bench schema, written for pytest-mtmcs, not the benchmark), packaged as the data package
`pytest_mtmcs.sample_data`: its parquet files (images embedded) and its captions. A pip user has
no checkout, so the quick start begins with `mtmcs sample`:

    mtmcs sample && pytest --mtmcs --mtmcs-data mtmcs-sample --mtmcs-target baseline:refuse
"""

from __future__ import annotations

from pathlib import Path

from pytest_mtmcs.dataset.resources import Traversable, join, packaged
from pytest_mtmcs.version import __version__

__all__ = ["DEFAULT_DEST", "SAMPLE_FILES", "SamplePlacementError", "sample_data", "write_sample"]

DEFAULT_DEST = "mtmcs-sample"
"""Where `mtmcs sample` writes when no folder is named."""

SAMPLE_FILES: tuple[tuple[str, ...], ...] = (
    ("captions.json",),
    ("data", "type_a-00000-of-00001.parquet"),
    ("data", "type_b-00000-of-00001.parquet"),
)
"""The files of the sample, relative to its folder (what pyproject.toml packages)."""

README = """\
# mtmcs-sample

A 12-row-per-split dataset in the official MTMCS-Bench schema (splits type_a and type_b,
parquet with embedded images, plus captions.json: row id -> caption), written by `mtmcs sample`
(pytest-mtmcs {version}). It was written for pytest-mtmcs and is NOT the benchmark: every
dialogue, question, intent and caption is pytest-mtmcs's own text, and the images are freely
licensed sample photographs that ship with scikit-image. Use it for tests, demos and smoke runs;
use the real release (`--mtmcs-data ND-25/MCS-bench`) for any result you report.

    pytest --mtmcs --mtmcs-data {dest} --mtmcs-target baseline:refuse -p no:cacheprovider

(`baseline:refuse` refuses everything: the run fails by design, showing over-refusal failing.)
"""


class SamplePlacementError(Exception):
    """The destination cannot take the sample (a file, or a folder that is not empty)."""


def sample_data() -> Traversable:
    """The packaged sample folder (`pytest_mtmcs.sample_data`; in a source checkout with an
    editable install, `fixtures/mtmcs-sample`)."""
    return packaged("pytest_mtmcs.sample_data", "fixtures/mtmcs-sample")


def write_sample(dest: Path) -> list[Path]:
    """Write the sample's files and a README.md into the folder `dest` (made when missing);
    returns the files written. Raises SamplePlacementError, before writing anything, when
    `dest` is a file or a folder that is not empty: nothing of the user's is overwritten."""
    if dest.exists() and not dest.is_dir():
        raise SamplePlacementError(f"{dest} is a file, not a folder; name a new folder, e.g. "
                                   f"`mtmcs sample {DEFAULT_DEST}`")
    if dest.is_dir() and any(dest.iterdir()):
        raise SamplePlacementError(f"{dest} already exists and is not empty; not overwriting it. "
                                   "Name a new or empty folder (`mtmcs sample DEST`), or remove "
                                   f"{dest} first")
    source = sample_data()
    written = []
    for parts in SAMPLE_FILES:
        out = dest.joinpath(*parts)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(join(source, *parts).read_bytes())
        written.append(out)
    readme = dest / "README.md"
    readme.write_text(README.format(version=__version__, dest=dest), encoding="utf-8")
    written.append(readme)
    return written
