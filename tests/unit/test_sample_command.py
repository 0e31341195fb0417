"""`mtmcs sample [DEST]`: writes the packaged sample, which loads as the 96 dialogues of
fixtures/mtmcs-sample, and never overwrites anything; run as a real subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pytest_mtmcs.dataset import DataSelection, load_cases
from pytest_mtmcs.dataset.sample import SAMPLE_FILES

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "mtmcs-sample"


def mtmcs(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest_mtmcs.cli", *args], capture_output=True,
                          text=True, cwd=cwd)


def test_writes_a_loadable_sample_into_the_default_folder(tmp_path: Path) -> None:
    out = mtmcs("sample", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    dest = tmp_path / "mtmcs-sample"
    for parts in SAMPLE_FILES:
        assert dest.joinpath(*parts).read_bytes() == FIXTURE.joinpath(*parts).read_bytes()
        assert f"wrote {Path('mtmcs-sample', *parts)} (" in out.stdout
    assert "NOT the benchmark" in (dest / "README.md").read_text()
    assert "next: pytest --mtmcs --mtmcs-data mtmcs-sample --mtmcs-target baseline:refuse" in out.stdout
    cases = load_cases(DataSelection(data=str(dest)))
    assert len(cases) == 96


def test_an_empty_folder_is_fine(tmp_path: Path) -> None:
    (tmp_path / "here").mkdir()
    out = mtmcs("sample", "here", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "here" / "captions.json").is_file()


@pytest.mark.parametrize("existing", ["folder", "file"])
def test_refuses_to_overwrite(tmp_path: Path, existing: str) -> None:
    dest = tmp_path / "mine"
    if existing == "folder":
        dest.mkdir()
        (dest / "notes.txt").write_text("keep me")
    else:
        dest.write_text("keep me")
    out = mtmcs("sample", "mine", cwd=tmp_path)
    assert out.returncode == 4
    assert out.stdout == ""
    expected = "is not empty; not overwriting it" if existing == "folder" else "is a file, not a folder"
    assert f"mtmcs sample: mine {expected}" in out.stderr.replace("already exists and ", "")
    if existing == "folder":
        assert sorted(p.name for p in dest.iterdir()) == ["notes.txt"]
        assert (dest / "notes.txt").read_text() == "keep me"
    else:
        assert dest.read_text() == "keep me"
