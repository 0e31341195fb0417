"""Fitting terminal lines into a width without cutting anything.

A figure is never truncated: a table too wide for the terminal is split into several tables
(each repeating the row labels), a row of cells breaks only between cells, and a sentence only
between words. A single cell or word wider than the whole width is written whole (the terminal
wraps it) rather than cut.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

__all__ = ["DEFAULT_WIDTH", "clip_middle", "label_table", "wrap_cells", "wrap_words"]

DEFAULT_WIDTH = 80
"""The width when the terminal's is unknown (pytest falls back to the same)."""

_GAP = 2
"""Spaces between two columns of a table."""


def clip_middle(text: str, room: int) -> str:
    """`text`, or its start and end around `...` when longer than `room` (a long spec such as
    `scripted:/a/long/path/replies.json` keeps its scheme and file name)."""
    if len(text) <= room:
        return text
    keep = max(room - 3, 2)
    head = keep // 3
    return text[:head] + "..." + text[len(text) - (keep - head):]


def wrap_words(text: str, width: int, *, indent: str = "", subsequent: str = "    ") -> list[str]:
    """`text` wrapped between words (never inside one, never at a hyphen)."""
    return textwrap.wrap(text, max(width, 1), initial_indent=indent, subsequent_indent=subsequent,
                         break_long_words=False, break_on_hyphens=False) or [indent.rstrip()]


def wrap_cells(cells: Sequence[str], width: int, *, indent: str = "  ", sep: str = "  ",
               cont: str = "        ") -> list[str]:
    """`indent` + the cells joined by `sep`; a cell that would pass `width` starts a new line
    indented by `cont`. Empty cells are left out."""
    lines: list[str] = []
    line = indent
    fresh = True
    for cell in (c for c in cells if c):
        candidate = line + ("" if fresh else sep) + cell
        if not fresh and len(candidate) > width:
            lines.append(line.rstrip())
            line, fresh = cont + cell, False
            continue
        line, fresh = candidate, False
    lines.append(line.rstrip())
    return lines


def label_table(heads: Sequence[str], rows: Sequence[tuple[str, Sequence[str]]],
                width: int) -> list[str]:
    """A table of a label column and one column per head, each column as wide as its widest
    cell. When it is wider than `width`, the value columns are split into consecutive tables
    of as many columns as fit, each with the labels again; a table holds at least one column."""
    label_w = max((len(label) for label, _ in rows), default=0) + _GAP
    col_w = [max([len(h), *(len(cells[i]) for _, cells in rows)]) + _GAP
             for i, h in enumerate(heads)]
    chunks: list[list[int]] = []
    used = label_w
    for i, w in enumerate(col_w):
        if not chunks or used + w - _GAP > width:
            chunks.append([])
            used = label_w
        chunks[-1].append(i)
        used += w
    lines: list[str] = []
    for chunk in chunks:
        lines.append((" " * label_w + "".join(f"{heads[i]:<{col_w[i]}}" for i in chunk)).rstrip())
        for label, cells in rows:
            lines.append((f"{label:<{label_w}}"
                          + "".join(f"{cells[i]:<{col_w[i]}}" for i in chunk)).rstrip())
    return lines
