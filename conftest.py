"""The project's own test fixtures: pytester, a loopback-only network guard, datasets, servers."""

from __future__ import annotations

import ipaddress
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "tests"))

pytest_plugins = ["pytester"]

# In-process pytester runs restore sys.modules afterwards, so a library first imported inside
# one would be imported a second time by the next: torch refuses that outright, and the openai
# SDK's exception classes would stop matching. Import them once, up front, in every process.
for _name in ("openai", "pyarrow.parquet", "torch", "transformers", "datasets"):
    try:
        __import__(_name)
    except ImportError:
        pass

ROOT = Path(__file__).parent
SAMPLE = ROOT / "fixtures" / "mtmcs-sample"


def _loopback(address: object) -> bool:
    if not isinstance(address, tuple) or not address:
        return True  # unix sockets and the like
    host = str(address[0])
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def _no_job_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs made by the tests never append to the CI job's own summary (tests that check the
    summary set the variable to a file of their own)."""
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any connection to an address other than loopback: the tests never leave the machine."""
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def connect(self: socket.socket, address: object) -> object:
        if not _loopback(address):
            raise AssertionError(f"test tried to connect to non-loopback address {address!r}")
        return real_connect(self, address)  # type: ignore[arg-type]

    def connect_ex(self: socket.socket, address: object) -> int:
        if not _loopback(address):
            raise AssertionError(f"test tried to connect to non-loopback address {address!r}")
        return real_connect_ex(self, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """A two-rows-per-split dataset in the official parquet layout."""
    import _data

    return _data.small_dataset(tmp_path / "ds", 2)


@pytest.fixture
def mock_server() -> Iterator[object]:
    """A real OpenAI-compatible server on 127.0.0.1 with the default reply."""
    from pytest_mtmcs.testing import MockOpenAIServer

    with MockOpenAIServer() as srv:
        yield srv
