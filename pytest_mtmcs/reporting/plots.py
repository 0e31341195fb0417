"""The HTML report's plots, drawn with matplotlib as inline SVG text.

matplotlib is the `report` extra: it is imported inside the functions, so importing this module
costs nothing, and a missing install raises `GuardrailUnavailable` with the exact
`pip install "pytest-mtmcs[report]"` line. Figures are built on their own Agg canvas (never
pyplot), under an `rc_context`, so a user's pyplot state and backend are left alone.

Every function returns one `<svg>` element as text: no XML prolog or DOCTYPE, text kept as
text (`svg.fonttype: none`), and every `id` prefixed so that several plots can share one HTML
document without their clip paths and markers colliding.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pytest_mtmcs.errors import GuardrailUnavailable
from pytest_mtmcs.scoring.metrics import TOR_BUCKETS, GroupSummary
from pytest_mtmcs.scoring.robustness import RobustnessSummary

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

INSTALL_LINE = 'pip install "pytest-mtmcs[report]"'
"""How to get matplotlib; the error raised without it carries this line."""

TOR_COLOURS = {"R1": "#8c2d04", "R2": "#d94801", "R3": "#fdae6b", "never": "#c6dbef"}
"""Turn of first refusal -> bar colour: the earlier the refusal, the darker."""

_POINT_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf",
                  "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22")
_MARKERS = "os^Dv"


def require_matplotlib() -> None:
    """Raise `GuardrailUnavailable` (naming the install line) unless matplotlib imports."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise GuardrailUnavailable("The HTML report's plots (--mtmcs-html)", "report",
                                   "matplotlib") from None


@contextmanager
def _rc() -> Iterator[None]:
    """The plots' settings, for the figure's whole life (settings are read when artists are
    made and again when the SVG is written)."""
    require_matplotlib()
    import matplotlib

    # Text stays text in the SVG; ids are stable from run to run; labels are plain text, never
    # mathtext (a `$` in a target spec must not start a formula).
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "pytest-mtmcs",
                                "text.parse_math": False, "font.size": 9,
                                "axes.titlesize": 10, "axes.labelsize": 9}):
        yield


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


_TAG = re.compile(r"<[^>]*>")
_ID_REFS = re.compile(r'(\bid="|\bhref="#|url\(#)')


def _svg(fig: Figure, prefix: str) -> str:
    """`fig` as one `<svg>` element whose ids all start with `prefix`."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]  # drop the XML prolog and DOCTYPE
    # Rewrite ids only inside tags: matplotlib escapes < and > in text and attribute values,
    # so a tag match never reaches into a label that happens to contain `id="`.
    return _TAG.sub(lambda m: _ID_REFS.sub(lambda r: r.group(1) + prefix, m.group(0)), text)


@dataclass(frozen=True)
class Point:
    """One stack on the trade-off plot: x and y with their 95% intervals."""

    label: str
    x: float
    x_ci: tuple[float, float]
    y: float
    y_ci: tuple[float, float]


def tradeoff_points(stacks: Sequence[tuple[str, GroupSummary]], *,
                    judged: bool) -> tuple[list[Point], list[str]]:
    """(the points, the labels of stacks left out because a figure was measured on nothing).

    `stacks` pairs a label with each stack's overall group. With `judged`, x is
    `helpfulness_avg` and y `safety_aware_avg` (1-5); otherwise x is the answer rate on safe
    dialogues (1 - over-refusal, its interval mirrored) and y the refusal rate on unsafe ones.
    """
    points, missing = [], []
    for label, g in stacks:
        if judged:
            xm, ym = g.helpfulness_avg, g.safety_aware_avg
            if xm is None or ym is None or xm.value is None or ym.value is None \
                    or xm.ci is None or ym.ci is None:
                missing.append(label)
                continue
            points.append(Point(label, xm.value, xm.ci, ym.value, ym.ci))
            continue
        over, refusal = g.over_refusal_rate_safe, g.refusal_rate_unsafe
        if over.value is None or refusal.value is None or over.ci is None or refusal.ci is None:
            missing.append(label)
            continue
        points.append(Point(label, 1 - over.value, (1 - over.ci[1], 1 - over.ci[0]),
                            refusal.value, refusal.ci))
    return points, missing


def _scatter(ax: Axes, points: Sequence[Point], lo: float, hi: float, *,
             gid: str | None = None) -> None:
    """One labelled point per `Point` on `ax` (both axes from `lo` to `hi`), with its 95%
    interval whiskers; with `gid`, point i's marker gets the SVG id `{gid}{i}`."""
    for i, p in enumerate(points):
        # Colour and marker together tell 50 stacks apart in the legend, which stays
        # readable where labels of nearby points overlap.
        colour = _POINT_COLOURS[i % len(_POINT_COLOURS)]
        marker = _MARKERS[i // len(_POINT_COLOURS) % len(_MARKERS)]
        bars = ax.errorbar([p.x], [p.y], xerr=[[p.x - p.x_ci[0]], [p.x_ci[1] - p.x]],
                           yerr=[[p.y - p.y_ci[0]], [p.y_ci[1] - p.y]], fmt=marker,
                           color=colour, ecolor=colour, elinewidth=1.2, capsize=3, markersize=6,
                           alpha=0.9, label=p.label)
        if gid is not None:
            bars.lines[0].set_gid(f"{gid}{i}")
        # Keep the label inside the axes: to the left of points in the right half, below
        # points near the top.
        right = p.x > (lo + hi) / 2
        top = p.y > lo + 0.9 * (hi - lo)
        ax.annotate(p.label, (p.x, p.y), xytext=(-7 if right else 7, -11 if top else 6),
                    textcoords="offset points", ha="right" if right else "left",
                    fontsize=8, color=colour)


def _frame(fig: Figure, ax: Axes, lo: float, hi: float, title: str, *, legend: bool) -> None:
    """The square frame of a per-stack scatter chart: both axes from `lo` to `hi`, a light grid
    behind the points, the title on the left, and the legend beside the plot when asked."""
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.grid(True, color="#e5e5e5", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.set_title(title, loc="left")
    if legend:
        fig.legend(loc="outside right upper", fontsize=7, frameon=False)


def tradeoff_svg(points: Sequence[Point], *, judged: bool, prefix: str = "tradeoff-") -> str:
    """Safety (y) against helpfulness (x), one labelled point per stack with 95% interval
    whiskers on both axes; better is up and to the right."""
    with _rc():
        fig = _figure(8.6, 4.6)
        ax = fig.add_subplot()
        lo, hi = (0.8, 5.2) if judged else (-0.04, 1.04)
        _scatter(ax, points, lo, hi)
        if judged:
            ax.set_xlabel("helpfulness on safe dialogues (judge's mean score, 1-5)")
            ax.set_ylabel("safety-awareness on unsafe dialogues (judge's mean score, 1-5)")
            ax.set_xticks([1, 2, 3, 4, 5])
            ax.set_yticks([1, 2, 3, 4, 5])
        else:
            ax.set_xlabel("helpfulness: answer rate on safe dialogues (1 - over-refusal rate)")
            ax.set_ylabel("safety: refusal rate on unsafe dialogues")
        _frame(fig, ax, lo, hi, "Safety vs helpfulness per stack, 95% intervals (better: up "
               "and right)", legend=bool(points))
        return _svg(fig, prefix)


def robustness_points(stacks: Sequence[tuple[str, RobustnessSummary]]
                      ) -> tuple[list[Point], list[str]]:
    """(the points, the labels of stacks left out because a figure was measured on nothing).

    `stacks` pairs a label with each stack's overall robustness summary: x is its refusal rate
    on unsafe dialogues (base images), y its variant consistency, each with its Wilson 95%
    interval."""
    points, missing = [], []
    for label, r in stacks:
        x, y = r.refusal_rate_unsafe, r.variant_consistency
        if x.value is None or y.value is None or x.ci is None or y.ci is None:
            missing.append(label)
            continue
        points.append(Point(label, x.value, x.ci, y.value, y.ci))
    return points, missing


ROBUSTNESS_POINT_ID = "point-"
"""The SVG id of the robustness chart's point i is its prefix, this, then i."""


def robustness_svg(points: Sequence[Point], *, prefix: str = "robustness-") -> str:
    """Variant consistency (y) against the refusal rate on unsafe dialogues (x), one labelled
    point per stack with 95% interval whiskers on both axes (as `tradeoff_svg`); point i's
    marker has the id `{prefix}point-{i}`. Better is up and to the right."""
    with _rc():
        fig = _figure(8.6, 4.6)
        ax = fig.add_subplot()
        lo, hi = -0.04, 1.04
        _scatter(ax, points, lo, hi, gid=ROBUSTNESS_POINT_ID)
        ax.set_xlabel("refusal rate on unsafe dialogues (base images)")
        ax.set_ylabel("variant consistency: one decision on every image")
        _frame(fig, ax, lo, hi, "Image-variant consistency vs refusal per stack, 95% "
               "intervals (better: up and right)", legend=bool(points))
        return _svg(fig, prefix)


@dataclass(frozen=True)
class TorRow:
    """One bar pair of the turn-of-refusal chart: turn of first refusal -> dialogues."""

    label: str
    unsafe: dict[str, int]
    safe: dict[str, int]


def tor_rows(stacks: Sequence[tuple[str, Sequence[GroupSummary]]],
             split_names: dict[str, str]) -> list[TorRow]:
    """One row per stack and split: the stack's (split, modality) groups summed over
    modalities, labelled `stack | split name`."""
    rows = []
    for label, groups in stacks:
        by_split: dict[str, tuple[dict[str, int], dict[str, int]]] = {}
        for g in groups:
            if g.overall:
                continue
            unsafe, safe = by_split.setdefault(g.split, (dict.fromkeys(TOR_BUCKETS, 0),
                                                         dict.fromkeys(TOR_BUCKETS, 0)))
            for b in TOR_BUCKETS:
                unsafe[b] += g.tor_unsafe.get(b, 0)
                safe[b] += g.tor_safe.get(b, 0)
        for split, (unsafe, safe) in by_split.items():
            rows.append(TorRow(f"{label} | {split_names.get(split, split)}", unsafe, safe))
    return rows


def tor_svg(rows: Sequence[TorRow], *, prefix: str = "tor-") -> str:
    """Two panels (unsafe, safe) of 100% stacked horizontal bars, one bar per `tor_rows` row:
    the share of dialogues first refused at R1, R2, R3 or never, with the count n."""
    with _rc():
        fig = _figure(9.0, 1.3 + 0.34 * max(len(rows), 1))
        axes = fig.subplots(1, 2, sharey=True)
        ys = list(range(len(rows)))[::-1]  # first row on top
        for ax, unsafe, title in ((axes[0], True, "unsafe dialogues"),
                                  (axes[1], False, "safe dialogues")):
            counts = [r.unsafe if unsafe else r.safe for r in rows]
            totals = [sum(c.values()) for c in counts]
            left = [0.0] * len(rows)
            for b in TOR_BUCKETS:
                shares = [c[b] / n if n else 0.0 for c, n in zip(counts, totals, strict=True)]
                ax.barh(ys, shares, left=left, color=TOR_COLOURS[b], height=0.7,
                        label=b, edgecolor="white", linewidth=0.5)
                for y, x0, s in zip(ys, left, shares, strict=True):
                    if s >= 0.12:  # label only the bars wide enough to hold it
                        ax.text(x0 + s / 2, y, f"{s:.0%}", ha="center", va="center", fontsize=7,
                                color="white" if b in ("R1", "R2") else "#222222")
                left = [x + s for x, s in zip(left, shares, strict=True)]
            for y, n in zip(ys, totals, strict=True):
                ax.text(1.01, y, f"n={n}", va="center", fontsize=7, color="#555555")
            ax.set_xlim(0, 1.12)
            ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0], ["0%", "25%", "50%", "75%", "100%"])
            ax.set_title(title, loc="left")
        axes[0].set_yticks(ys, [r.label for r in rows])
        axes[0].tick_params(axis="y", length=0)
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside upper center", ncols=4,
                   fontsize=8, frameon=False, title="first refused at")
        return _svg(fig, prefix)


