"""The pytest11 entry point of pytest-mtmcs. Import-light: at module level only pytest and the
wiring it needs at start-up (settings, the session object), which import no pydantic, no model
library and no HTTP SDK; everything else is imported when a hook needs it.

Without `--mtmcs` (or `mtmcs = true` in the ini file) the plugin registers its options and
markers and does nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pytest_mtmcs.session import STASH_KEY, MtmcsSession
from pytest_mtmcs.settings import add_options

if TYPE_CHECKING:
    from pytest_mtmcs.fixture import MtmcsResults

MARKERS = {
    "mtmcs": "an MTMCS-Bench item (dialogue or intent question)",
    "type_a": "MTMCS-Bench Type A: harm escalates across turns",
    "type_b": "MTMCS-Bench Type B: harm stated up front, then hidden",
    "multimodal": "dialogue grounded in an image",
    "unimodal": "text-only rewrite of the dialogue",
    "safe": "benign dialogue (should be answered)",
    "unsafe": "harmful dialogue (should be refused)",
    "mcq": "multiple-choice intent question",
    "tf": "true/false intent question",
    "variant": "multimodal dialogue (or its question) rolled out with a variant image of its "
               "row (--mtmcs-variants)",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from pytest_mtmcs import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    # pytest chose the rootdir and config file before it knew our options take values: a value
    # written after a space (`--mtmcs-data /abs/dataset`) was read as a test path. Run again
    # with `--mtmcs-data=/abs/dataset`, which pytest reads right (see invocation.py).
    from pytest_mtmcs.invocation import rerun_args, run_again

    rerun = rerun_args(config)
    return None if rerun is None else run_again(config, rerun)


def _active(config: pytest.Config) -> bool:
    return bool(config.getoption("mtmcs") or config.getini("mtmcs"))


def _session(config: pytest.Config) -> MtmcsSession | None:
    return config.stash.get(STASH_KEY, None)


def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    if not _active(config):
        given = _given_options(config)
        if given and not hasattr(config, "workerinput"):
            raise pytest.UsageError(
                f"{', '.join(given)} given but the benchmark is off: add --mtmcs (or mtmcs = true "
                "under [tool.pytest.ini_options]) to run it")
        return
    mt = MtmcsSession(config)
    config.stash[STASH_KEY] = mt
    # The session object receives pytest_runtest_logreport for every report, local or shipped
    # by an xdist worker, and aggregates the records riding on them.
    config.pluginmanager.register(mt, "mtmcs-session")
    mt.load_cases()  # fail fast on bad data (a usage error), before collecting anything
    mt.open_store()  # and on a store that cannot be ours: checked before the first call


def _given_options(config: pytest.Config) -> list[str]:
    """Our options given on the command line (or in addopts)."""
    from pytest_mtmcs.settings import OPTIONS, dest

    return [f"--mtmcs-{o.name}" for o in OPTIONS if config.getoption(dest(o)) is not None]


def _xdist_controller(config: pytest.Config) -> bool:
    return bool(getattr(config.option, "dist", "no") != "no" and
                getattr(config.option, "numprocesses", None))


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):  # type: ignore[no-untyped-def]
    # The benchmark joins the collection tree as one more top-level collector, so its items
    # are counted, selected (-k, -m, --lf, --deselect) and reported like any other test.
    report = yield
    mt = _session(collector.config)
    if mt is not None and isinstance(collector, pytest.Session) and report.passed:
        from pytest_mtmcs.items import MtmcsSuite

        report.result.append(MtmcsSuite.for_session(collector, mt))
    return report


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: object) -> None:
    # xdist controller: give every worker the run's id, under which they share the work queue.
    mt = _session(node.config)  # type: ignore[attr-defined]
    if mt is not None:
        node.workerinput["mtmcs_run"] = mt.run_id  # type: ignore[attr-defined]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    # xdist controller: a worker finished; keep its model-server call counters for the report.
    mt = _session(node.config)  # type: ignore[attr-defined]
    output = getattr(node, "workeroutput", None)
    if mt is not None and isinstance(output, dict):
        if output.get("mtmcs_calls"):
            mt.worker_calls.append(output["mtmcs_calls"])
        if isinstance(output.get("mtmcs_progress"), dict):
            mt.worker_progress.append(output["mtmcs_progress"])


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    # Tests that read the run's results go after every benchmark item, so they see all of it.
    if _session(config) is None:
        return
    late = [i for i in items if "mtmcs_results" in getattr(i, "fixturenames", ())]
    if late:
        keep = [i for i in items if "mtmcs_results" not in getattr(i, "fixturenames", ())]
        items[:] = keep + late


@pytest.fixture
def mtmcs_results(request: pytest.FixtureRequest) -> MtmcsResults:
    """The records, metrics and A/B comparisons of the benchmark items of this run (tests
    using it run after them). Needs --mtmcs; not available under xdist, where each worker
    holds only its share of the results (use --mtmcs-report or --mtmcs-snapshot there)."""
    mt = _session(request.config)
    if mt is None:
        pytest.fail("mtmcs_results needs a benchmark run: pass --mtmcs", pytrace=False)
    if mt.is_worker:
        pytest.fail("mtmcs_results is not available under xdist: each worker holds only its "
                    "share of the results. Run with -n 0, or check the run through "
                    "--mtmcs-report / --mtmcs-snapshot / gates", pytrace=False)
    from pytest_mtmcs.fixture import MtmcsResults

    return MtmcsResults(mt.build_report())


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> None:
    mt = _session(session.config)
    if mt is None or session.config.option.collectonly or not session.items:
        return
    if _xdist_controller(session.config):
        return  # the xdist controller runs no items
    from pytest_mtmcs.items import rollout_jobs

    mt.start(rollout_jobs(session.items))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    mt = _session(item.config)
    if mt is not None and call.when == "setup":
        mt.progress_text.clear()
    yield


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    mt = _session(config)
    if mt is None:
        return None
    s = mt.settings
    variants = "" if s.variants == "none" else f", variant images {s.variants}"
    return [f"mtmcs: target {s.target}, data {s.data}, splits {','.join(s.split)}, "
            f"modalities {','.join(s.modality)}{variants}, concurrency {s.concurrency}, "
            f"store {s.store}"]


@pytest.hookimpl(tryfirst=True)  # before junitxml writes its file: our metrics go into it
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    mt = _session(session.config)
    if mt is not None:
        mt.finish(session)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    mt = _session(terminalreporter.config)
    if mt is not None:
        from pytest_mtmcs.terminal_summary import write_summary

        write_summary(terminalreporter, mt)
