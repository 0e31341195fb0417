"""pytest-mtmcs's own hooks, registered through `pytest_addhooks`.

Implement them in a conftest.py or a plugin, like any pytest hook. The types are only imported
for type checkers, so this module stays as light as the plugin that registers it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_mtmcs.dataset import Case
    from pytest_mtmcs.reporting.report import RunReport


@pytest.hookspec(firstresult=True)
def pytest_mtmcs_select_cases(config: pytest.Config, cases: list[Case]) -> list[Case] | None:
    """Filter or reorder the benchmark dialogues before items are made; return the new list,
    or None to leave them as they are.

    Called once per process (each xdist worker too, so it must be deterministic), as the run
    is configured: implement it in a conftest.py that pytest loads before that (the rootdir's, or
    one beside the test paths given), or in a plugin. The cases it returns are the benchmark
    the run measures: a run that leaves some of them unrun (`-k`, `--lf`, `-x`) is partial.
    With `--mtmcs-variants`, the list holds the variant-image dialogues too (`case.variant`
    >= 1, ids ending in `-vN`), each right after its row's multimodal pair.

    Example, in a conftest.py, to run only the Type A dialogues of rows 0-99::

        from pytest_mtmcs import Case

        def pytest_mtmcs_select_cases(config: pytest.Config, cases: list[Case]) -> list[Case]:
            return [c for c in cases if c.split == "type_a" and c.row_id < 100]

    The first implementation that returns a list wins (firstresult).
    """


@pytest.hookspec
def pytest_mtmcs_run_summary(config: pytest.Config, report: RunReport) -> None:
    """Called once per run, on the controller (never on an xdist worker), with the finished
    `RunReport`: the same model `--mtmcs-report` writes as JSON. Example, to post it somewhere::

        from pytest_mtmcs import RunReport

        def pytest_mtmcs_run_summary(config: pytest.Config, report: RunReport) -> None:
            for group in report.summary:
                if group.split == "all":  # each guardrail stack's overall figures
                    print(group.guardrail, group.refusal_rate_unsafe.value)
    """
