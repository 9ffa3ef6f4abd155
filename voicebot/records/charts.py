"""The report's charts as inline SVG, drawn on the server with matplotlib.

Each function takes figures from ``records.stats`` and returns one ``<svg>`` element ready to put in
a page: no XML prologue, no namespace URIs, no fonts or images fetched from anywhere (text stays
text, ``svg.fonttype: none``), and no ``style`` attributes or ``<style>`` elements either, since
the operations page's Content-Security-Policy (``style-src 'self'``) would drop them: matplotlib's
inline styles are turned into SVG presentation attributes, which that policy allows. Element ids
are prefixed with the chart's name, so several charts live on one page without clashing.

matplotlib is imported on the first chart (it takes a moment), never when this module is
imported, and is used without pyplot: a ``Figure`` on an Agg canvas, no GUI, no global figure
list. rcParams are global, so drawing is serialised with a lock (the web process has threads).
Texts from the database (step, intent and reason names) are plain text to matplotlib (math
parsing off) and escaped by its SVG writer.
"""

from __future__ import annotations

import io
import re
import threading
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Any, Callable, Sequence

if TYPE_CHECKING:
    from voicebot.records.stats import DayFigures, Percentiles, StepFigures

OUTCOME_COLOURS = {"completed": "#009E73", "transferred": "#E69F00", "hung_up": "#D55E00"}
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")
"""Okabe and Ito's colours: told apart by colour-blind readers too."""
OTHER_COLOUR = "#999999"
SCORE_COLOURS = ("#D55E00", "#E69F00", "#F0E442", "#56B4E9", "#009E73")
MAX_SERIES = len(PALETTE)
"""Transfer reasons drawn in their own colour; the rest are drawn together as "other"."""
MAX_ROWS = 40
"""Steps drawn in the funnel chart (the table under it lists them all)."""
WIDTH = 7.2
"""Inches (72 SVG units each): the charts' natural width; the page scales them to fit."""

_RC = {
    "svg.fonttype": "none", "svg.hashsalt": "voicebot", "text.parse_math": False,
    "font.family": "sans-serif", "font.sans-serif": ["DejaVu Sans"], "font.size": 9, "axes.titlesize": 10,
    "axes.spines.top": False, "axes.spines.right": False, "axes.edgecolor": "#888888",
    "axes.grid": True, "axes.grid.axis": "y", "axes.axisbelow": True, "grid.color": "#e2e2e2",
    "legend.frameon": False, "legend.fontsize": 8,
}
_NO_METADATA = {"Creator": None, "Date": None, "Format": None, "Type": None}
_LOCK = threading.Lock()
_URL_REF = re.compile(r"url\(#([^)]+)\)")


def outcomes_by_day(days: Sequence[DayFigures]) -> str:
    """Answered calls per day, stacked by how they ended."""
    def paint(ax: Any) -> None:
        x = [d.day for d in days]
        bottom = [0] * len(days)
        for outcome, label in (("completed", "completed"), ("transferred", "to an agent"), ("hung_up", "hung up")):
            values = [getattr(d, outcome) for d in days]
            ax.bar(x, values, bottom=bottom, width=0.8, color=OUTCOME_COLOURS[outcome], label=label)
            bottom = [b + v for b, v in zip(bottom, values)]
        _dates(ax)
        _counts(ax)
        _legend(ax)

    return _chart("outcomes-by-day", "Calls per day by outcome", paint)


def containment_by_day(days: Sequence[DayFigures]) -> str:
    """The share completed by the assistant, per day (days without calls are gaps)."""
    def paint(ax: Any) -> None:
        x = [d.day for d in days]
        y = [100 * d.containment if d.containment is not None else float("nan") for d in days]
        ax.plot(x, y, marker="o", markersize=3, color=OUTCOME_COLOURS["completed"])
        ax.set_ylim(0, 100)
        ax.set_ylabel("% completed")
        _dates(ax)

    return _chart("containment-by-day", "Containment per day", paint)


def transfers_by_day(days: Sequence[DayFigures]) -> str:
    """Transfers per day, stacked by reason."""
    totals: dict[str, int] = {}
    for day in days:
        for reason, n in day.transfers.items():
            totals[reason] = totals.get(reason, 0) + n
    shown = sorted(totals, key=lambda r: (-totals[r], r))[:MAX_SERIES]
    rest = [r for r in totals if r not in shown]

    def paint(ax: Any) -> None:
        x = [d.day for d in days]
        bottom = [0] * len(days)
        series = [(reason, PALETTE[i], lambda d, r=reason: d.transfers.get(r, 0)) for i, reason in enumerate(shown)]
        if rest:
            series.append(("other", OTHER_COLOUR, lambda d: sum(d.transfers.get(r, 0) for r in rest)))
        for label, colour, value in series:
            values = [value(d) for d in days]
            ax.bar(x, values, bottom=bottom, width=0.8, color=colour, label=label)
            bottom = [b + v for b, v in zip(bottom, values)]
        _dates(ax)
        _counts(ax)
        _legend(ax)

    return _chart("transfers-by-day", "Transfers per day by reason", paint)


def transfer_reasons(transfers: dict[str, int]) -> str:
    """Transfers by reason over the whole period, most first."""
    reasons = list(transfers)[:MAX_ROWS]

    def paint(ax: Any) -> None:
        y = list(range(len(reasons)))
        ax.barh(y, [transfers[r] for r in reasons], color=PALETTE[0])
        ax.set_yticks(y, reasons)
        ax.invert_yaxis()
        _counts(ax, axis="x")

    return _chart("transfer-reasons", "Transfers by reason", paint, height=_rows_height(len(reasons)))


def funnel(steps: Sequence[StepFigures], *, with_flow: bool = False) -> str:
    """Callers per step in the order they reach them: how many went on, went to an agent or hung up there."""
    rows = list(steps)[:MAX_ROWS]

    def paint(ax: Any) -> None:
        y = list(range(len(rows)))
        agent = [s.to_agent for s in rows]
        hung_up = [s.hung_up for s in rows]
        went_on = [max(0, s.reached - s.to_agent - s.hung_up) for s in rows]
        ax.barh(y, went_on, color="#0072B2", label="went on")
        ax.barh(y, agent, left=went_on, color=OUTCOME_COLOURS["transferred"], label="to an agent here")
        ax.barh(y, hung_up, left=[a + b for a, b in zip(went_on, agent)], color=OUTCOME_COLOURS["hung_up"],
                label="hung up here")
        ax.set_yticks(y, [f"{s.flow}: {s.step}" if with_flow else s.step for s in rows])
        ax.invert_yaxis()
        _counts(ax, axis="x")
        _legend(ax)

    return _chart("funnel", "Callers per step", paint, height=_rows_height(len(rows)))


def feedback_scores(scores: dict[int, int]) -> str:
    """How many callers gave each score from 1 to 5."""
    def paint(ax: Any) -> None:
        x = list(range(1, 6))
        ax.bar(x, [scores.get(k, 0) for k in x], color=SCORE_COLOURS, width=0.7)
        ax.set_xticks(x, [str(k) for k in x])
        ax.set_xlabel("score")
        _counts(ax)

    return _chart("feedback-scores", "Feedback scores", paint, width=WIDTH / 2)


def calls_by_hour(hours: Sequence[int]) -> str:
    """Answered calls by the local hour they started."""
    def paint(ax: Any) -> None:
        x = list(range(24))
        ax.bar(x, list(hours), color=PALETTE[0], width=0.8)
        ax.set_xticks(x[::2], [f"{h:02}" for h in x[::2]])
        ax.set_xlabel("hour of the day")
        _counts(ax)

    return _chart("calls-by-hour", "Calls per hour of the day", paint)


def latency(percentiles: dict[str, Percentiles]) -> str:
    """p50, p90 and p95 of each latency, side by side, in milliseconds."""
    names = [name for name, p in percentiles.items() if p.count]

    def paint(ax: Any) -> None:
        marks = ("p50", "p90", "p95")
        width = 0.8 / max(1, len(names))
        for i, name in enumerate(names):
            values = [getattr(percentiles[name], mark) or 0 for mark in marks]
            ax.bar([k + (i - (len(names) - 1) / 2) * width for k in range(len(marks))], values, width=width,
                   color=PALETTE[i % len(PALETTE)], label=name)
        ax.set_xticks(range(len(marks)), marks)
        ax.set_ylabel("ms")
        ax.legend(loc="upper left")

    return _chart("latency", "Latency", paint, width=WIDTH / 2)


# -- drawing and cleaning up ----------------------------------------------------------------------

def _rows_height(rows: int) -> float:
    return 0.9 + 0.22 * max(1, rows)


def _dates(ax: Any) -> None:
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    locator = AutoDateLocator(maxticks=10)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))


def _legend(ax: Any) -> None:
    """The legend beside the plot, never over the bars."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def _counts(ax: Any, axis: str = "y") -> None:
    """Whole numbers on a count axis, and a grid along it."""
    from matplotlib.ticker import MaxNLocator

    (ax.yaxis if axis == "y" else ax.xaxis).set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, axis=axis)
    ax.grid(False, axis="x" if axis == "y" else "y")


def _chart(name: str, title: str, paint: Callable[[Any], None], *, width: float = WIDTH,
           height: float = 2.4) -> str:
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with _LOCK, matplotlib.rc_context(_RC):
        figure = Figure(figsize=(width, height), layout="constrained")
        FigureCanvasAgg(figure)
        ax = figure.add_subplot()
        ax.set_title(title, loc="left")
        paint(ax)
        out = io.StringIO()
        figure.savefig(out, format="svg", metadata=_NO_METADATA)
    return inline_svg(out.getvalue(), name, title)


def inline_svg(svg: str, name: str, label: str) -> str:
    """matplotlib's SVG document as an element for an HTML page (see the module's docstring)."""
    root = ET.fromstring(svg.encode("utf-8"))
    for parent in list(root.iter()):
        for child in list(parent):
            if _local(child.tag) in ("style", "metadata"):
                parent.remove(child)
    referenced: set[str] = set()
    for element in root.iter():
        element.tag = _local(element.tag)
        for key in list(element.attrib):
            value = element.attrib.pop(key)
            key = "href" if _local(key) == "href" else _local(key)
            if key == "style":
                for declaration in value.split(";"):
                    prop, _, setting = declaration.partition(":")
                    if re.fullmatch(r"[a-z-]+", prop.strip()) and setting.strip():
                        element.set(prop.strip(), setting.strip())
                continue
            if key == "d":
                value = " ".join(value.split())
            element.set(key, value)
            if key == "href" and value.startswith("#"):
                referenced.add(value[1:])
            referenced.update(_URL_REF.findall(value))
        if element.tag != "text" and element.text is not None and not element.text.strip():
            element.text = None
        if element.tail is not None and not element.tail.strip():
            element.tail = None
    for element in root.iter():
        if "id" in element.attrib:
            if element.attrib["id"] in referenced:
                element.set("id", f"{name}-{element.attrib['id']}")
            else:
                del element.attrib["id"]
        for key, value in element.attrib.items():
            if key == "href" and value.startswith("#"):
                element.set(key, f"#{name}-{value[1:]}")
            elif "url(#" in value:
                element.set(key, _URL_REF.sub(lambda m: f"url(#{name}-{m.group(1)})", value))
    for key in ("width", "height", "version"):
        root.attrib.pop(key, None)
    root.set("class", f"vb-chart vb-chart-{name}")
    root.set("role", "img")
    root.set("aria-label", label)
    root.set("stroke-linejoin", "round")    # the defaults of matplotlib's <style> element, dropped above
    root.set("stroke-linecap", "butt")
    title = ET.Element("title")
    title.text = label
    root.insert(0, title)
    return ET.tostring(root, encoding="unicode")


def _local(name: str) -> str:
    """``{namespace}name`` -> ``name``."""
    return name.rsplit("}", 1)[-1]
