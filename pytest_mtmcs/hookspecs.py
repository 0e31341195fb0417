"""pytest-mtmcs's own hooks, registered through `pytest_addhooks`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_mtmcs.bench import Case


@pytest.hookspec(firstresult=True)
def pytest_mtmcs_select_cases(config: Any, cases: list[Case]) -> list[Case] | None:
    """Filter or reorder the benchmark dialogues before items are made; return the new list.

    Example, in a conftest.py, to run only the dialogues of rows 0-99::

        def pytest_mtmcs_select_cases(config, cases):
            return [c for c in cases if c.row_id < 100]

    The first implementation that returns a list wins (firstresult).
    """


def pytest_mtmcs_run_summary(config: Any, report: Any) -> None:
    """Called on the controller with the finished `RunReport`, e.g. to post it somewhere.

    Example::

        def pytest_mtmcs_run_summary(config, report):
            print(report.summary[0].refusal_rate_unsafe.value)
    """
