"""The cells every HTML table of the report shares: outside text made inert and escaped, a rate
and a mean with their 95% intervals."""

from __future__ import annotations

import html

from pytest_mtmcs.scoring.metrics import Mean, Rate
from pytest_mtmcs.textsafety import for_terminal

__all__ = ["escape_text", "mean_cell", "rate_cell"]


def escape_text(text: object) -> str:
    """Text from the run, redacted (no fragment of an API key) and escaped for HTML text and
    attribute values alike; control characters are shown as escapes."""
    return html.escape(for_terminal(str(text)), quote=True)


def rate_cell(r: Rate | None) -> str:
    """`0.75 [0.30, 0.95] 6/8` (interval and k/n muted), a dash and `0/0` when nothing was
    measured, a dash alone for no rate."""
    if r is None:
        return "–"
    if r.value is None or r.ci is None:
        return f'–<span class="n">{r.k}/{r.n}</span>'
    return (f'{r.value:.2f}<span class="ci">[{r.ci[0]:.2f}, {r.ci[1]:.2f}]</span>'
            f'<span class="n">{r.k}/{r.n}</span>')


def mean_cell(m: Mean | None) -> str:
    """`3.50 [2.80, 4.20] n=6`, or a dash."""
    if m is None or m.value is None or m.ci is None:
        return "–" if m is None else f'–<span class="n">n={m.n}</span>'
    return (f'{m.value:.2f}<span class="ci">[{m.ci[0]:.2f}, {m.ci[1]:.2f}]</span>'
            f'<span class="n">n={m.n}</span>')
