"""Quiet model loading: no progress bars from transformers in CI logs.

transformers draws tqdm bars while it loads a model ("Loading checkpoint shards", "Loading
weights") and huggingface_hub while it downloads; each redraw is a line in a CI log. Every local
model pytest-mtmcs loads (the `hf` and `smollm2` targets, Llama Guard, AdaShield-A's sentence
model) is loaded inside `quiet_loading()`, which hides them.

The rule, one environment variable: unless `HF_HUB_DISABLE_PROGRESS_BARS` is set, the bars are
hidden while pytest-mtmcs loads a model; set, it decides as huggingface_hub documents it
(`HF_HUB_DISABLE_PROGRESS_BARS=0` shows them, `=1` hides them everywhere). Nothing else changes:
the previous state is restored after each load, so the bars of your own code stay as they were.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["ENV", "quiet_loading"]

ENV = "HF_HUB_DISABLE_PROGRESS_BARS"
"""huggingface_hub's switch, which transformers follows; when set, we leave the bars to it."""


class _QuietLoads:
    """How many quiet loads are running (threads may load at once) and whether the bars were on
    before the first: the last one to end turns them back on."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depth = 0
        self.restore = False


_LOADS = _QuietLoads()


@contextmanager
def quiet_loading() -> Iterator[None]:
    """Hide transformers' and huggingface_hub's progress bars for the block, unless the user set
    HF_HUB_DISABLE_PROGRESS_BARS (see the module). Needs transformers installed."""
    if os.environ.get(ENV) is not None:
        yield
        return
    from transformers.utils import logging as hf_logging

    with _LOADS.lock:
        if _LOADS.depth == 0:
            _LOADS.restore = hf_logging.is_progress_bar_enabled()
            if _LOADS.restore:
                hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        _LOADS.depth += 1
    try:
        yield
    finally:
        with _LOADS.lock:
            _LOADS.depth -= 1
            if _LOADS.depth == 0 and _LOADS.restore:
                hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]
