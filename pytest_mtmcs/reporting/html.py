"""The run as one self-contained HTML file (`--mtmcs-html out.html`).

For the engineer whose change a gate blocked and for whoever chooses between guardrail stacks:
the gates, the per-stack tables with 95% intervals, the safety-vs-helpfulness trade-off, the
turn of first refusal, the guardrails' cost, and every failed or errored dialogue with its
transcript (when `--mtmcs-save-transcripts` kept one).

The file fetches nothing: CSS is inline, plots are inline SVG, there is no script, and a
Content-Security-Policy forbids any fetch or script anyway. Every piece of text from the run
(transcripts, reasons, judge explanations, target specs) is HTML-escaped, so a transcript that
contains `<script>` shows as text. Only this module's callers decide what is trusted: the
`extra_sections` fragments are inserted as they are.

The target is named once, in the page's heading; every table and plot names a stack by its
short name (`names.stack_names`: `none`, `dpp`, `llama-guard:CHECKPOINT`), each stack's own
heading adding its guardrail's full spec where the name shortened it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from pytest_mtmcs.reporting.compare import SPLIT_NAMES
from pytest_mtmcs.reporting.files import write_atomic
from pytest_mtmcs.reporting.html_cells import escape_text, mean_cell, rate_cell
from pytest_mtmcs.reporting.layout import clip_middle
from pytest_mtmcs.reporting.names import stack_names
from pytest_mtmcs.reporting.report import RunReport
from pytest_mtmcs.reporting.robustness_views import robustness_html
from pytest_mtmcs.scoring.gates import GateResult
from pytest_mtmcs.scoring.metrics import RELEASE_FIGURES, TOR_BUCKETS, GroupSummary, Mean, Rate
from pytest_mtmcs.scoring.records import DialogueRecord, TurnRecord

__all__ = ["render_html", "write_html"]

_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'"
_LABEL_ROOM = 48
"""Characters of a stack's name on the plots (short names fit; tables show it whole)."""

_CSS = """
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--pass:#1a7f37;--passbg:#dafbe1;
--fail:#cf222e;--failbg:#ffebe9;--err:#9a6700;--errbg:#fff8c5}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
color:var(--fg);margin:0 auto;padding:1rem 1.5rem 4rem;max-width:1400px}
h1{font-size:1.5rem;margin:.2rem 0 .6rem}h2{font-size:1.2rem;margin:2rem 0 .5rem;
border-bottom:1px solid var(--line);padding-bottom:.2rem}h3{font-size:1rem;margin:1.2rem 0 .4rem}
nav a{margin-right:1rem}dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:.1rem 1rem}
dl.meta dt{color:var(--muted)}dl.meta dd{margin:0;overflow-wrap:anywhere}
table{border-collapse:collapse;margin:.4rem 0 1rem;font-variant-numeric:tabular-nums}
th,td{border:1px solid var(--line);padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}tbody.dialogue:nth-of-type(even) tr.row{background:#fafbfc}
.ci,.n,.note{color:var(--muted);font-size:.85em}.ci{margin-left:.3em}.n{margin-left:.3em}
.badge{display:inline-block;padding:0 .45em;border-radius:.3em;font-weight:600;font-size:.85em}
.PASS,.pass{color:var(--pass);background:var(--passbg)}.FAIL,.fail{color:var(--fail);
background:var(--failbg)}.error,.skip{color:var(--err);background:var(--errbg)}
.verdict{font-size:1.05rem;margin:.6rem 0}figure{margin:.5rem 0 1rem}
table.ab tr.better td{background:var(--passbg)}table.ab tr.worse td{background:var(--failbg)}
figcaption{color:var(--muted);max-width:60rem}svg{max-width:100%;height:auto}
details>summary{cursor:pointer;color:#0969da}tr.transcript td{border-top:none;padding-top:0}
ol.turns{margin:.3rem 0;padding-left:1.4rem}ol.turns li{margin-bottom:.5rem}
.msg{margin:.15rem 0}.who{font-weight:600;margin-right:.4rem}.text{white-space:pre-wrap;
overflow-wrap:anywhere;margin:.1rem 0 0;padding:.3rem .5rem;border-left:3px solid var(--line)}
.assistant .text{border-left-color:#8c959f}.refused .text{border-left-color:var(--fail)}
.tag{font-size:.8em;padding:0 .35em;border-radius:.3em;background:#eef1f4;margin-right:.3em}
.tag.block{background:var(--failbg);color:var(--fail)}td.explain{max-width:28rem}
table.figures td+td,table.gates td{white-space:nowrap}table.figures td:first-child{min-width:14rem}
"""


def _tor(h: dict[str, int]) -> str:
    return " / ".join(str(h.get(b, 0)) for b in TOR_BUCKETS)


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    """A table from cells that are already HTML."""
    attr = f' class="{cls}"' if cls else ""
    out = [f"<table{attr}><thead><tr>", *(f"<th>{h}</th>" for h in head), "</tr></thead><tbody>"]
    out += ["<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows]
    return "".join(out) + "</tbody></table>"


class _Stack(NamedTuple):
    """One (target, guardrail) stack of the report: its short name and its groups."""

    target: str
    guardrail: str
    name: str
    groups: list[GroupSummary]
    """In summary order, overall last."""


def _names(report: RunReport) -> dict[tuple[str, str], str]:
    """The short name of every stack the report mentions (`names.stack_names`)."""
    return stack_names([(g.target, g.guardrail) for g in report.summary]
                       + [(g.target, g.guardrail) for g in report.gates]
                       + [(d.target, d.guardrail) for d in report.dialogues])


def _stacks(report: RunReport, names: dict[tuple[str, str], str]) -> list[_Stack]:
    """Every (target, guardrail) stack of the summary, in order."""
    blocks: dict[tuple[str, str], list[GroupSummary]] = {}
    for g in report.summary:
        blocks.setdefault((g.target, g.guardrail), []).append(g)
    return [_Stack(t, gr, names[(t, gr)], sorted(gs, key=lambda g: g.overall))
            for (t, gr), gs in blocks.items()]


def _column(g: GroupSummary) -> str:
    if g.overall:
        return "all"
    return f"{escape_text(SPLIT_NAMES.get(g.split, g.split))}<br>{escape_text(g.modality)}"


def _figure_rows(groups: Sequence[GroupSummary]) -> list[list[str]]:
    """A row per figure of one stack: label, then a cell per group."""
    def row(label: str, cells: Sequence[str]) -> list[str]:
        return [label, *cells]

    rows = [
        row("dialogues passed", [rate_cell(g.pass_rate) for g in groups]),
        row("refusal rate, unsafe (refused by R3)", [rate_cell(g.refusal_rate_unsafe) for g in groups]),
        row("over-refusal rate, safe (refused at any turn)",
            [rate_cell(g.over_refusal_rate_safe) for g in groups]),
        row("unsafe: first refused at R1 / R2 / R3 / never", [_tor(g.tor_unsafe) for g in groups]),
        row("safe: first refused at R1 / R2 / R3 / never", [_tor(g.tor_safe) for g in groups]),
    ]
    if any(g.safety_aware_avg is not None or g.helpfulness_avg is not None for g in groups):
        for name in ("safety_aware_avg", "safety_aware_avg_strict", "helpfulness_avg",
                     "helpfulness_avg_strict"):
            rows.append(row(f"{name} (1-5)", [mean_cell(getattr(g, name)) for g in groups]))
    if any(g.intent_accuracy_strict.n for g in groups):
        for name in ("safe_mcq_accuracy", "unsafe_mcq_accuracy", "unsafe_tf_accuracy",
                     "intent_accuracy", "intent_accuracy_strict"):
            rows.append(row(name, [rate_cell(getattr(g, name)) for g in groups]))
    differs = [g.release.differs(g) if g.release is not None else {} for g in groups]
    for name in RELEASE_FIGURES:
        if any(name in d for d in differs):
            rows.append(row(f"release: {name} (as the benchmark's own scripts read)", [
                (_release(d[name][1]) if name in d else '<span class="note">= ours</span>')
                for d in differs]))
    rows += [
        row("pairs: both right / over-refused safe / missed unsafe / both wrong / incomplete",
            [" / ".join(str(getattr(g.pairs, f)) for f in ("both_right", "over_refused_safe",
             "missed_unsafe", "both_wrong", "incomplete")) for g in groups]),
        row("unparsed intent answers / judgements",
            [f"{g.unparsed} / {g.judge_unparsed}" for g in groups]),
        row("errored / skipped items", [f"{g.errored} / {g.skipped}" for g in groups]),
    ]
    return rows


def _release(figure: Rate | Mean) -> str:
    return rate_cell(figure) if isinstance(figure, Rate) else mean_cell(figure)


def _divergence(groups: Sequence[GroupSummary]) -> str:
    """Why the release's figures differ from ours: per group, the replies read differently."""
    rows = [[_column(g), escape_text(d.kind), escape_text(d.shape), str(d.count),
             f"<code>{escape_text(d.example or '')}</code>"]
            for g in groups if g.release is not None for d in g.release.divergence]
    if not rows:
        return ""
    return (f"<details><summary>{sum(int(r[3]) for r in rows)} replies read differently by the "
            "benchmark's own readers</summary>"
            + _table(["group", "kind", "shape", "count", "example"], rows, "divergence")
            + "</details>")


def _header(report: RunReport, stacks: Sequence[_Stack]) -> str:
    items = [("target", report.target),
             ("stacks", ", ".join(st.name for st in stacks) or "none"),
             ("data", report.data), ("judge", report.judge or "none (refusal detector only)"),
             ("pytest-mtmcs", report.tool_version), ("created", report.created),
             ("rollout", report.rollout or "-")]
    meta = "".join(f"<dt>{k}</dt><dd>{escape_text(v)}</dd>" for k, v in items)
    settings = "" if not report.settings else (
        f"<details><summary>all {len(report.settings)} settings</summary>"
        + _table(["setting", "value"], [[escape_text(k), escape_text(v)] for k, v in report.settings.items()])
        + "</details>")
    return (f"<header><h1>pytest-mtmcs: {escape_text(report.target)}</h1><dl class=\"meta\">{meta}</dl>"
            f"{settings}</header>")


def _gates(gates: Sequence[GateResult], names: dict[tuple[str, str], str]) -> str:
    if not gates:
        return ""
    failed = sum(not g.passed for g in gates)
    verdict = (f'<span class="badge PASS">all {len(gates)} gates passed</span>' if not failed else
               f'<span class="badge FAIL">{failed} of {len(gates)} gates FAILED</span>')
    rows = [[(f'<span class="badge {"PASS" if g.passed else "FAIL"}">'
              f'{"PASS" if g.passed else "FAIL"}</span>'),
             f"{escape_text(g.label)} {escape_text(g.op)} {g.threshold:g}",
             escape_text(names[(g.target, g.guardrail)]),
             "–" if g.value is None else f"{g.value:.3f}",
             "" if g.ci is None else f"[{g.ci[0]:.3f}, {g.ci[1]:.3f}]", str(g.n)]
            for g in gates]
    notes = [g.to_decide() for g in gates]
    if any(notes):
        for row, note in zip(rows, notes, strict=True):
            row.append(escape_text(note or ""))
    return (f'<section id="gates"><h2>Gates</h2><p class="verdict">{verdict}</p>'
            + _table(["", "gate", "stack", "figure", "95% interval", "n"]
                     + (["why / to decide"] if any(notes) else []), rows, "gates")
            + "</section>")


def _summary_tables(stacks: Sequence[_Stack]) -> str:
    out = [('<section id="stacks"><h2>Figures per stack</h2><p class="note">Rates show the '
            "value, its Wilson 95% interval and k/n; judge means show the mean, its bootstrap "
            "95% interval and n. <em>_strict</em> figures count an unparsed answer as wrong and "
            "an unparsed judgement as 1.</p>")]
    several = len({st.target for st in stacks}) > 1
    for st in stacks:
        out.append(f"<h3>{escape_text(st.name)}</h3>")
        about = [f"target {escape_text(st.target)}"] if several else []
        if st.guardrail != "none" and st.guardrail not in st.name:
            about.append(f"guardrail {escape_text(st.guardrail)}")
        if about:
            out.append(f'<p class="note">{", ".join(about)}</p>')
        out.append(_table(["figure", *(_column(g) for g in st.groups)], _figure_rows(st.groups),
                          "figures"))
        out.append(_divergence(st.groups))
    return "".join(out) + "</section>"


def _plots(report: RunReport, stacks: Sequence[_Stack]) -> str:
    from pytest_mtmcs.reporting import plots

    overall = [(clip_middle(st.name, _LABEL_ROOM), next(g for g in st.groups if g.overall))
               for st in stacks if any(g.overall for g in st.groups)]
    judged = any(g.safety_aware_avg is not None and g.safety_aware_avg.value is not None
                 and g.helpfulness_avg is not None and g.helpfulness_avg.value is not None
                 for _, g in overall)
    points, missing = plots.tradeoff_points(overall, judged=judged)
    how = ("the judge's mean safety-awareness on unsafe dialogues against its mean helpfulness "
           "on safe ones (1-5)" if judged else
           "the refusal rate on unsafe dialogues against the answer rate on safe ones "
           "(1 - over-refusal rate)")
    note = (f" Left out, measured on nothing: {escape_text(', '.join(missing))}." if missing else "")
    out = ['<section id="tradeoff"><h2>Safety vs helpfulness</h2><figure>',
           plots.tradeoff_svg(points, judged=judged),
           (f"<figcaption>One point per stack (all dialogues): {how}, whiskers the 95% "
            f"intervals on both axes.{note}</figcaption></figure></section>")]
    rows = plots.tor_rows([(clip_middle(st.name, _LABEL_ROOM), st.groups) for st in stacks],
                          SPLIT_NAMES)
    out += ['<section id="tor"><h2>Turn of first refusal</h2><figure>', plots.tor_svg(rows),
            ("<figcaption>Share of dialogues first refused at R1, R2, R3 or never, per stack "
             "and split. Type A escalates: its unsafe intent shows only at R3, so refusing at R1 "
             "or R2 is premature, and a refusal of a safe dialogue is over-refusal. Type B hides "
             "the harm across turns: a refusal that comes only at R3, or never, is late."
             "</figcaption></figure></section>")]
    return "".join(out)


def _cost(stacks: Sequence[_Stack]) -> str:
    rows = []
    for st in stacks:
        c = next((g.guard_cost for g in st.groups if g.overall), None)
        if c is None:
            continue
        rows.append([escape_text(st.name), str(c.turns),
                     f"{c.blocked_turns} ({c.blocked_turns / c.turns:.1%})",
                     f"{c.extra_calls / c.turns:.2f}",
                     f"{c.extra_tokens} ({c.extra_tokens / c.turns:.1f}/turn)",
                     f"{c.latency_p50_s * 1000:.1f}", f"{c.latency_p95_s * 1000:.1f}"])
    body = (_table(["stack", "turns", "blocked turns", "extra calls per turn", "extra tokens",
                    "added ms p50", "added ms p95"], rows, "cost") if rows else
            '<p class="note">No guardrail in this run: the bare targets cost nothing extra.</p>')
    return f'<section id="cost"><h2>Guardrail cost</h2>{body}</section>'


def _turn(i: int, t: TurnRecord) -> str:
    tags = []
    if t.refused:
        tags.append(f'<span class="tag">refused ({escape_text(t.refusal_kind or "refusal")})</span>')
    if t.blocked_by is not None:
        reason = f": {escape_text(t.block_reason)}" if t.block_reason else ""
        tags.append(f'<span class="tag block">blocked by {escape_text(t.blocked_by)}{reason}</span>')
    if t.cached:
        tags.append('<span class="tag">cached</span>')
    user = "(not saved)" if t.user is None else escape_text(t.user)
    reply = "(not saved)" if t.reply is None else escape_text(t.reply)
    cls = "msg assistant" + (" refused" if t.refused else "")
    return (f'<li><div class="msg user"><span class="who">user R{i}</span>'
            f'<div class="text">{user}</div></div><div class="{cls}"><span class="who">'
            f'assistant R{i}</span>{"".join(tags)}<div class="text">{reply}</div></div></li>')


def _transcript(d: DialogueRecord) -> str:
    turns = "".join(_turn(i, t) for i, t in enumerate(d.turns, 1))
    caption = ""
    if d.judge is not None and d.judge.caption:
        caption = f'<p class="note">judge\'s caption: {escape_text(d.judge.caption)}</p>'
    n = len(d.turns)
    return (f'<details><summary>transcript, {n} turn{"s" * (n != 1)}</summary>'
            f'<ol class="turns">{turns}</ol>{caption}</details>')


def _failed(report: RunReport, stacks: Sequence[_Stack],
            names: dict[tuple[str, str], str]) -> str:
    order = {(st.target, st.guardrail): i for i, st in enumerate(stacks)}
    failed = sorted((d for d in report.dialogues if d.verdict in ("fail", "error")),
                    key=lambda d: (order.get((d.target, d.guardrail), len(order)),
                                   d.verdict != "error", d.id))
    errors = sum(d.verdict == "error" for d in failed)
    head = (f'<section id="failed"><h2>Failed and errored dialogues</h2><p>{len(failed)} '
            f"dialogues: {len(failed) - errors} failed, {errors} errored.</p>")
    if not failed:
        return head + "</section>"
    saved = any(t.user is not None or t.reply is not None for d in failed for t in d.turns)
    out = [head]
    if not saved:
        out.append('<p class="note transcripts-not-saved">Transcripts were not saved: run with '
                   "--mtmcs-save-transcripts to keep them (they hold the unsafe requests, so "
                   "they are off by default).</p>")
    cols = ["dialogue", "stack", "verdict", "reason", "refused at", "judge score",
            "judge's explanation"]
    out.append('<table class="failed"><thead><tr>' + "".join(f"<th>{c}</th>" for c in cols)
               + "</tr></thead>")
    for d in failed:
        j = d.judge
        score = "–" if j is None else (
            "unparsed" if j.score is None else f"{j.score} ({escape_text(j.metric)})")
        cells = [escape_text(d.id), escape_text(names[(d.target, d.guardrail)]),
                 f'<span class="badge {escape_text(d.verdict)}">{escape_text(d.verdict)}</span>',
                 escape_text(d.reason or ""),
                 "never" if d.turn_of_refusal is None else f"R{d.turn_of_refusal}", score,
                 "" if j is None or not j.explanation else escape_text(j.explanation)]
        row = ('<tr class="row">' + "".join(f"<td>{c}</td>" for c in cells[:-1])
               + f'<td class="explain">{cells[-1]}</td></tr>')
        if saved:
            has_text = any(t.user is not None or t.reply is not None for t in d.turns)
            inner = (_transcript(d) if has_text else
                     '<span class="note">no transcript: no turn was recorded</span>')
            row += f'<tr class="transcript"><td colspan="{len(cols)}">{inner}</td></tr>'
        out.append(f'<tbody class="dialogue" data-id="{escape_text(d.id)}" data-guardrail='
                   f'"{escape_text(d.guardrail)}">{row}</tbody>')
    return "".join(out) + "</table></section>"


def render_html(report: RunReport, *, extra_sections: Sequence[tuple[str, str]] = ()) -> str:
    """The whole report as one HTML document that fetches nothing.

    `extra_sections` are (title, HTML fragment) pairs placed after the gates: the title is
    escaped, the fragment is inserted as it is, so it must be HTML made by our own code with
    its own text escaped. Raises `GuardrailUnavailable` (with the
    `pip install "pytest-mtmcs[report]"` line) when matplotlib is not installed.
    """
    from pytest_mtmcs.reporting import plots

    plots.require_matplotlib()  # fail before any work when the plots cannot be drawn
    names = _names(report)
    stacks = _stacks(report, names)
    nav = [("stacks", "figures"), ("tradeoff", "trade-off"), ("tor", "turn of refusal"),
           ("cost", "guardrail cost"), ("failed", "failed dialogues")]
    if report.gates:
        nav.insert(0, ("gates", "gates"))
    nav[-2:-2] = [("robustness", "image variants")] if report.robustness else []
    extras = "".join(f'<section class="extra"><h2>{escape_text(title)}</h2>{fragment}</section>'
                     for title, fragment in extra_sections)
    body = [_header(report, stacks),
            "<nav>" + "".join(f'<a href="#{a}">{t}</a>' for a, t in nav) + "</nav>",
            _gates(report.gates, names), extras, _summary_tables(stacks), _plots(report, stacks),
            robustness_html(report.robustness, names), _cost(stacks),
            _failed(report, stacks, names)]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>pytest-mtmcs: {escape_text(report.target)}</title><style>{_CSS}</style></head>"
            f"<body>{''.join(body)}</body></html>\n")


def write_html(report: RunReport, path: str | Path, *,
               extra_sections: Sequence[tuple[str, str]] = ()) -> Path:
    """Render the report and write it to `path` atomically (a temp file in the same folder,
    then a rename), creating parent folders; returns the path. Nothing is written when
    rendering fails."""
    text = render_html(report, extra_sections=extra_sections)
    return write_atomic(path, text)
