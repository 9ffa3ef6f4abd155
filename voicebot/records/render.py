"""The figures as HTML (the operations page, a self-contained report file) and as terminal text.

``page_body`` is a fragment for any page: every element it uses has a ``vb-`` class, it carries
no ids, no scripts and no ``style`` attributes (the operations page's Content-Security-Policy
allows styles only from its own files), and its look is ``REPORT_CSS``: the operations page
serves that text as a stylesheet, ``standalone_page`` puts it in a ``<style>`` element. The charts
are inline SVG (``records.charts``); nothing refers to anything outside the page.

Names and words from the database (flows, steps, intents, transfer reasons, callers' comments)
are escaped in HTML and stripped of control characters in both forms: a comment is what a caller
said, and a terminal obeys escape sequences.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from typing import Any, Iterable, Sequence

from voicebot.records import charts
from voicebot.records.stats import Report

REPORT_CSS = """\
.vb-report { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  color: #1d2430; line-height: 1.4; max-width: 60rem; }
.vb-report h2 { font-size: 1.15rem; margin: 1.6rem 0 0.5rem; border-bottom: 1px solid #d8dde5;
  padding-bottom: 0.2rem; }
.vb-report h3 { font-size: 0.95rem; margin: 1rem 0 0.3rem; }
.vb-period { color: #4a5568; margin: 0 0 0.8rem; }
.vb-kpis { display: flex; flex-wrap: wrap; gap: 0.6rem; margin: 0; padding: 0; }
.vb-kpi { background: #f3f6fa; border: 1px solid #d8dde5; border-radius: 6px; padding: 0.45rem 0.8rem;
  min-width: 7.5rem; }
.vb-kpi dt { font-size: 0.75rem; color: #4a5568; }
.vb-kpi dd { margin: 0; font-size: 1.3rem; font-weight: 600; }
.vb-charts { display: flex; flex-wrap: wrap; gap: 0.5rem 1.5rem; align-items: flex-start; }
.vb-chart { display: block; width: 100%; max-width: 45rem; height: auto; }
.vb-chart-feedback-scores, .vb-chart-latency { max-width: 22.5rem; }
.vb-table { border-collapse: collapse; font-size: 0.85rem; margin: 0.4rem 0 0.8rem; }
.vb-table th, .vb-table td { padding: 0.2rem 0.6rem; border-bottom: 1px solid #e4e8ee; text-align: left; }
.vb-table td.vb-num, .vb-table th.vb-num { text-align: right; font-variant-numeric: tabular-nums; }
.vb-table thead th { background: #f3f6fa; font-weight: 600; }
.vb-comments { list-style: none; padding: 0; margin: 0.3rem 0; font-size: 0.9rem; }
.vb-comments li { border-left: 3px solid #d8dde5; padding: 0.15rem 0.6rem; margin: 0.35rem 0; }
.vb-comments .vb-meta { color: #4a5568; font-size: 0.78rem; display: block; }
.vb-empty, .vb-note { color: #4a5568; font-style: italic; }
"""
"""The fragment's look: every rule is scoped to ``vb-`` classes, so it can join any page's styles."""

OUTCOME_WORDS = {"completed": "completed by the assistant", "transferred": "transferred to an agent",
                 "hung_up": "hung up part-way", "unanswered": "not answered"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]+")


# -- HTML -----------------------------------------------------------------------------------------

def page_body(report: Report) -> str:
    """The figures and charts as an HTML fragment (inline SVG, no outside references)."""
    parts = ['<div class="vb-report">', f'<p class="vb-period">{_e(_scope(report))}</p>', _kpis(report)]
    if not report.calls:
        parts.append('<p class="vb-empty">No calls in this period.</p></div>')
        return "\n".join(parts)
    parts += [_containment(report), _transfers(report), _funnel(report), _feedback(report),
              _latency_and_hours(report), _versions(report), "</div>"]
    return "\n".join(parts)


def standalone_page(report: Report, title: str) -> str:
    """One self-contained HTML file: ``page_body`` with its styles, nothing fetched from anywhere."""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>\nbody {{ margin: 1.5rem; }}\n"
        f".vb-title {{ font-family: system-ui, sans-serif; font-size: 1.5rem; margin: 0 0 0.3rem; }}\n"
        f"{REPORT_CSS}</style>\n</head>\n<body>\n<h1 class=\"vb-title\">{_e(title)}</h1>\n"
        f"{page_body(report)}\n</body>\n</html>\n"
    )


def _kpis(report: Report) -> str:
    figures = [("Calls", str(report.calls)), ("Answered", str(report.answered)),
               ("Containment", _pct(report.containment)),
               ("To an agent", str(report.outcomes.get("transferred", 0))),
               ("Hung up part-way", str(report.outcomes.get("hung_up", 0))),
               ("Feedback", _avg(report.feedback.average)),
               ("Response p50", _ms(report.latency["response"].p50))]
    items = "".join(f'<div class="vb-kpi"><dt>{_e(name)}</dt><dd>{_e(value)}</dd></div>' for name, value in figures)
    return f'<dl class="vb-kpis">{items}</dl>'


def _containment(report: Report) -> str:
    rows = [(OUTCOME_WORDS.get(name, name), n, _pct(n / report.calls if report.calls else None))
            for name, n in report.outcomes.items()]
    body = [_table(("Calls", "", "share"), rows, numeric=(1, 2))]
    if report.answered:
        body.append(_charts(charts.outcomes_by_day(report.days), charts.containment_by_day(report.days)))
    return _section("Containment", *body)


def _transfers(report: Report) -> str:
    if not report.transfers:
        return _section("Transfers", '<p class="vb-empty">No call went to an agent.</p>')
    total = sum(report.transfers.values())
    rows = [(reason, n, _pct(n / total)) for reason, n in report.transfers.items()]
    return _section("Transfers", _table(("Reason", "calls", "share"), rows, numeric=(1, 2)),
                    _charts(charts.transfer_reasons(report.transfers), charts.transfers_by_day(report.days)))


def _funnel(report: Report) -> str:
    if not report.funnel:
        return _section("Steps", '<p class="vb-empty">No steps recorded.</p>')
    many = report.flow is None and len({s.flow for s in report.funnel}) > 1
    head = (("Flow",) if many else ()) + ("Step", "reached", "asked", "first time", "re-asked", "confirmation",
                                           "to an agent here", "hung up here")
    rows = []
    for s in report.funnel:
        rows.append(((s.flow,) if many else ()) + (
            s.step, s.reached, s.asked, _share(s.first_time, s.asked), _share(s.reasked, s.asked),
            _share(s.confirmation, s.asked), _share(s.to_agent, s.reached), _share(s.hung_up, s.reached)))
    note = ('<p class="vb-note">Calls, each counted once per step. "first time", "re-asked" and '
            '"confirmation" are shares of the calls asked something at the step; the last two of the calls '
            'that reached it.</p>')
    first_numeric = 2 if many else 1
    return _section("Steps", _charts(charts.funnel(report.funnel, with_flow=many)),
                    _table(head, rows, numeric=tuple(range(first_numeric, len(head)))), note)


def _feedback(report: Report) -> str:
    feedback = report.feedback
    if not feedback.given and not feedback.comments:
        return _section("Feedback", '<p class="vb-empty">No caller gave a score.</p>')
    body = []
    if feedback.given:
        rows = [(f.intent if f.intent is not None else "(no intent)", f.scores, _avg(f.average))
                for f in feedback.by_intent]
        body += [f'<p>{feedback.given} scores, on average {_e(_avg(feedback.average))} out of 5.</p>',
                 _charts(charts.feedback_scores(feedback.scores)),
                 _table(("Intent", "scores", "average"), rows, numeric=(1, 2))]
    if feedback.comments:
        items = "".join(
            f'<li><span class="vb-meta">{_e(_when(c.at))} · {_e(c.flow)} · '
            f'{_e(c.intent or "(no intent)")} · score {_e(c.score if c.score is not None else "–")}</span>'
            f"{_e(c.text)}</li>" for c in feedback.comments)
        body += ["<h3>Recent comments</h3>", f'<ul class="vb-comments">{items}</ul>']
    return _section("Feedback", *body)


def _latency_and_hours(report: Report) -> str:
    rows = [(name, p.count, _ms(p.p50), _ms(p.p90), _ms(p.p95)) for name, p in report.latency.items()]
    measured = any(p.count for p in report.latency.values())
    body = [_table(("Latency", "turns", "p50", "p90", "p95"), rows, numeric=(1, 2, 3, 4))]
    shown = [charts.latency(report.latency)] if measured else []
    if report.answered:
        shown.append(charts.calls_by_hour(report.hours))
    body.append(_charts(*shown))
    return _section("Latency and calls per hour", *body)


def _versions(report: Report) -> str:
    if not report.versions:
        return ""
    rows = [(v.flow, v.version or "(not recorded)", v.calls, _pct(v.containment), _when(v.first), _when(v.last))
            for v in report.versions]
    return _section("Flow versions", _table(("Flow", "version", "calls", "containment", "first call", "last call"),
                                            rows, numeric=(2, 3)))


def _section(title: str, *parts: str) -> str:
    return f'<section class="vb-section"><h2>{_e(title)}</h2>\n' + "\n".join(p for p in parts if p) + "\n</section>"


def _charts(*svgs: str) -> str:
    """Charts side by side where there is room (the SVG is ``records.charts``' own markup)."""
    inner = "\n".join(svg for svg in svgs if svg)
    return f'<div class="vb-charts">\n{inner}\n</div>' if inner else ""


def _table(head: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[int] = ()) -> str:
    def cell(tag: str, i: int, value: Any) -> str:
        kind = ' class="vb-num"' if i in numeric else ""
        return f"<{tag}{kind}>{_e(value)}</{tag}>"

    header = "".join(cell("th", i, h) for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f'<table class="vb-table"><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>'


def _e(value: Any) -> str:
    return html.escape(_plain(value), quote=True)


# -- text -----------------------------------------------------------------------------------------

def text_report(report: Report) -> str:
    """The same figures as plain text tables for the terminal."""
    out = [_scope(report), ""]
    out.append(f"Calls {report.calls}, answered {report.answered}, containment {_pct(report.containment)}")
    if not report.calls:
        return "\n".join(out + ["No calls in this period.", ""])
    out += ["", _text_table(("Outcome", "calls", "share"),
                            [(OUTCOME_WORDS.get(k, k), n, _pct(n / report.calls)) for k, n in report.outcomes.items()],
                            numeric=(1, 2))]
    out += ["", _text_table(("Day", "calls", "completed", "containment", "to agent", "hung up"),
                            [(d.day.strftime("%a %Y-%m-%d"), d.calls, d.completed, _pct(d.containment),
                              d.transferred, d.hung_up) for d in report.days], numeric=(1, 2, 3, 4, 5))]
    if report.transfers:
        total = sum(report.transfers.values())
        out += ["", _text_table(("Transfer reason", "calls", "share"),
                                [(r, n, _pct(n / total)) for r, n in report.transfers.items()], numeric=(1, 2))]
    if report.funnel:
        many = report.flow is None and len({s.flow for s in report.funnel}) > 1
        head = (("Flow",) if many else ()) + ("Step", "reached", "asked", "first time", "re-asked", "confirm",
                                               "to agent", "hung up")
        rows = [((s.flow,) if many else ()) + (s.step, s.reached, s.asked, _share(s.first_time, s.asked),
                                               _share(s.reasked, s.asked), _share(s.confirmation, s.asked),
                                               _share(s.to_agent, s.reached), _share(s.hung_up, s.reached))
                for s in report.funnel]
        out += ["", _text_table(head, rows, numeric=tuple(range(2 if many else 1, len(head))))]
    feedback = report.feedback
    if feedback.given:
        out += ["", f"Feedback: {feedback.given} scores, average {_avg(feedback.average)}  "
                    + "  ".join(f"{k}: {n}" for k, n in feedback.scores.items())]
        out += [_text_table(("Intent", "scores", "average"),
                            [(f.intent if f.intent is not None else "(no intent)", f.scores, _avg(f.average))
                             for f in feedback.by_intent], numeric=(1, 2))]
    if feedback.comments:
        out += ["", "Recent comments:"]
        out += [f"  {_when(c.at)}  {_plain(c.intent or '(no intent)')}  score "
                f"{c.score if c.score is not None else '-'}: {_plain(c.text)}" for c in feedback.comments]
    out += ["", _text_table(("Latency", "turns", "p50", "p90", "p95"),
                            [(k, p.count, _ms(p.p50), _ms(p.p90), _ms(p.p95)) for k, p in report.latency.items()],
                            numeric=(1, 2, 3, 4))]
    peak = max(report.hours) or 1
    out += ["", "Calls per hour of the day:"]
    out += [f"  {h:02}  {n:>6}  {'#' * round(40 * n / peak)}" for h, n in enumerate(report.hours) if n]
    if report.versions:
        out += ["", _text_table(("Flow", "version", "calls", "containment", "first call", "last call"),
                                [(v.flow, v.version or "(not recorded)", v.calls, _pct(v.containment),
                                  _when(v.first), _when(v.last)) for v in report.versions], numeric=(2, 3))]
    return "\n".join(out) + "\n"


def _text_table(head: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[int] = ()) -> str:
    cells = [[_plain(h) for h in head]] + [[_plain(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(head))]
    lines = []
    for row in cells:
        lines.append("  ".join(v.rjust(w) if i in numeric else v.ljust(w)
                               for i, (v, w) in enumerate(zip(row, widths))).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# -- words and numbers ----------------------------------------------------------------------------

def _scope(report: Report) -> str:
    flow = f"Flow {report.flow}" if report.flow is not None else "All flows"
    return f"{flow}, {_when(report.since)} to {_when(report.until)} ({report.timezone})"


def _plain(value: Any) -> str:
    """One line of text without control characters (newlines, escape sequences, bidi overrides)."""
    text = "" if value is None else str(value)
    return _CONTROL.sub(" ", text)


def _when(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M")


def _pct(share: float | None) -> str:
    return "–" if share is None else f"{100 * share:.1f} %"


def _share(part: int, whole: int) -> str:
    return f"{part} ({100 * part / whole:.0f} %)" if whole else str(part)


def _avg(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _ms(value: int | None) -> str:
    return "–" if value is None else f"{value} ms"
