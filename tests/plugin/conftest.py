"""Plugin tests run without xdist, with -n0 and with -n2 where it matters."""

from __future__ import annotations

import pytest

XDIST_MODES = {"plain": [], "n0": ["-n0"], "n2": ["-n2"]}


@pytest.fixture(params=list(XDIST_MODES))
def xdist_args(request: pytest.FixtureRequest) -> list[str]:
    """The same test without xdist, with -n0 and with -n2."""
    return XDIST_MODES[request.param]
