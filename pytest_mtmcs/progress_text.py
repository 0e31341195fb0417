"""The transient rollout progress written next to an item that waits for its result.

pytest writes an item's outcome only once the item finishes; while it waits for its rollout
the terminal would sit still. On an interactive terminal the rollout's progress line is
written after the item's name, replaced as it changes, and erased before the outcome. It is
kept to the rest of the terminal's line (pytest's width): a line that wrapped could not be
erased, so whole fields are dropped from its end, never part of a figure.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_mtmcs.rollout.progress import Progress

__all__ = ["ProgressText"]


class ProgressText:
    """The rollout's progress, written after the name of an item that waits for its result
    (on an interactive terminal only) and erased before pytest writes the item's outcome."""

    def __init__(self, config: pytest.Config, progress: Callable[[], Progress | None]) -> None:
        self.config = config
        self.progress = progress
        """The rollout's counters now (None before the engine started)."""
        self._shown = 0
        """Characters of progress text on the terminal now."""
        self._column: int | None = None
        """Where the progress text starts on the line (read once per item)."""

    def item_started(self) -> None:
        """Called as each item starts (resets the transient progress text)."""
        self._shown = 0
        self._column = None

    def _fit(self, line: str) -> str:
        """` [line]` with as many of its comma-separated fields as fit the rest of the
        terminal's line; empty when not even the first one does."""
        writer = self.config.get_terminal_writer()
        if self._column is None:
            # pytest cannot measure a line that holds an earlier erase (its backspaces): then
            # assume the line is half full.
            at = writer.width_of_current_line
            self._column = at if at >= 0 else writer.fullwidth // 2
        room = writer.fullwidth - self._column - 1
        fields = line.split(", ")
        for keep in range(len(fields), 0, -1):
            text = f" [{', '.join(fields[:keep])}]"
            if len(text) <= room:
                return text
        return ""

    def show(self, waited: float) -> None:
        """Show the progress once an item has waited a second, replacing the text shown before."""
        progress = self.progress()
        if progress is None or waited < 1.0:
            return
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        if tr is None or self.config.get_verbosity() < 0 or not sys.stdout.isatty():
            return
        text = self._fit(progress.line())
        erase = "\b" * self._shown + " " * self._shown + "\b" * self._shown
        tr.write(erase + text, flush=True)
        self._shown = len(text)

    def clear(self) -> None:
        """Erase the transient progress text before pytest writes the item's outcome."""
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        if self._shown and tr is not None:
            tr.write("\b" * self._shown + " " * self._shown + "\b" * self._shown, flush=True)
        self._shown = 0
