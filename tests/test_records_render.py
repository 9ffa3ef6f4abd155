"""The figures as HTML and text: self-contained, escaped, and saying what the records say."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from records_rows import record, records_database, turn, two_days, write
from voicebot.records import charts
from voicebot.records.render import REPORT_CSS, page_body, standalone_page, text_report
from voicebot.records.stats import Percentiles, StepFigures, compute, parse_period

TZ = "Europe/Amsterdam"
HOSTILE_STEP = '<img src=x onerror="alert(1)">'
HOSTILE_REASON = '"><script>alert(2)</script>'
HOSTILE_INTENT = "</td><script>alert(3)</script>"
HOSTILE_COMMENT = "te lang\x1b[2J\x1b]0;pwned\x07 <script>alert(4)</script>\nweg"


@pytest.fixture
def records_engine(request, tmp_path):
    yield from records_database(request, tmp_path)


def _report(engine, flow="energie"):
    return compute(engine, flow=flow, since=parse_period("2026-11-02", timezone=TZ),
                   until=parse_period("2026-11-03", timezone=TZ, end=True), timezone=TZ)


def _hostile(engine):
    write(engine, record("x1", "2026-11-02T10:00:00", outcome="transferred", reason=HOSTILE_REASON,
                         end_step=HOSTILE_STEP, visited=("start", HOSTILE_STEP),
                         turns=(turn(HOSTILE_STEP, "accepted", recognition_ms=300, response_ms=700),),
                         feedback=2, intent=HOSTILE_INTENT, comment=HOSTILE_COMMENT))


def _svgs(page: str) -> list[str]:
    return re.findall(r"<svg\b.*?</svg>", page, flags=re.S)


def test_the_page_shows_the_figures(records_engine):
    two_days(records_engine)
    body = page_body(_report(records_engine))
    assert "Flow energie, 2026-11-02 00:00 to 2026-11-04 00:00 (Europe/Amsterdam)" in body
    assert "<dt>Containment</dt><dd>57.1 %</dd>" in body          # 4 of 7 answered calls
    assert "<td>explicit_request</td><td class=\"vb-num\">1</td><td class=\"vb-num\">50.0 %</td>" in body
    assert ("<tr><td>menu</td><td class=\"vb-num\">6</td><td class=\"vb-num\">6</td>"
            "<td class=\"vb-num\">3 (50 %)</td><td class=\"vb-num\">2 (33 %)</td>"
            "<td class=\"vb-num\">1 (17 %)</td><td class=\"vb-num\">2 (33 %)</td>"
            "<td class=\"vb-num\">0 (0 %)</td></tr>") in body
    assert "3 scores, on average 4.00 out of 5." in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt; duurde lang" in body
    assert "<td>v2</td><td class=\"vb-num\">2</td><td class=\"vb-num\">100.0 %</td>" in body
    names = [re.search(r'class="vb-chart vb-chart-([a-z-]+)"', svg).group(1) for svg in _svgs(body)]
    assert names == ["outcomes-by-day", "containment-by-day", "transfer-reasons", "transfers-by-day", "funnel",
                     "feedback-scores", "calls-by-hour"]     # no latency chart: nothing was measured


def test_the_page_refers_to_nothing_outside_itself(records_engine):
    two_days(records_engine)
    _hostile(records_engine)
    page = standalone_page(_report(records_engine), "Report <energie> & co")
    assert page.startswith("<!DOCTYPE html>") and REPORT_CSS in page
    assert "<title>Report &lt;energie&gt; &amp; co</title>" in page
    lowered = page.lower()
    for outside in ("http:", "https:", "//", "@import", "<link", "<script", "<img", "<iframe", "<object", "xlink"):
        assert outside not in lowered, outside
    tags = re.findall(r"<[a-z][^>]*>", lowered)
    assert not [tag for tag in tags if re.search(r"\s(src|srcset|action|data|on[a-z]+)=", tag)]
    for reference in re.findall(r'href="([^"]*)"', page) + re.findall(r"url\(([^)]*)\)", page):
        assert reference.startswith("#"), reference
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids))
    assert {r[1:] for r in re.findall(r'href="([^"]*)"', page)} <= set(ids)
    assert {r[1:] for r in re.findall(r"url\(([^)]*)\)", page)} <= set(ids)
    assert len(_svgs(page)) == 8


def test_the_fragment_keeps_to_the_pages_security_policy(records_engine):
    """No style attributes, style elements or scripts: the operations page allows styles from its
    own files only (``style-src 'self'``); the charts' colours are SVG attributes."""
    two_days(records_engine)
    body = page_body(_report(records_engine))
    assert not re.search(r"\sstyle=", body) and "<style" not in body and "<script" not in body
    assert re.search(r'<path [^>]*fill="#009e73"', body, flags=re.I)     # a "completed" bar
    for svg in _svgs(body):
        ET.fromstring(svg)      # each chart is well-formed XML on its own


def test_database_words_are_escaped_everywhere(records_engine):
    _hostile(records_engine)
    page = standalone_page(_report(records_engine), "r")
    assert HOSTILE_STEP not in page and HOSTILE_REASON not in page and HOSTILE_INTENT not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page          # the step, in the table
    assert "&lt;/td&gt;&lt;script&gt;alert(3)&lt;/script&gt;" in page
    assert "\x1b" not in page and "\x07" not in page
    funnel = next(svg for svg in _svgs(page) if "vb-chart-funnel" in svg)
    texts = [t.text for t in ET.fromstring(funnel).iter("text")]
    assert HOSTILE_STEP in texts            # drawn as text, never as markup


def test_an_empty_period(records_engine):
    report = _report(records_engine)
    body = page_body(report)
    assert "No calls in this period." in body and "<svg" not in body
    text = text_report(report)
    assert "Calls 0, answered 0, containment –" in text and "No calls in this period." in text


def test_text_report(records_engine):
    two_days(records_engine)
    _hostile(records_engine)
    text = text_report(_report(records_engine))
    assert "Calls 9, answered 8, containment 50.0 %" in text
    lines = text.splitlines()
    assert re.search(r"^Mon 2026-11-02\s+4\s+2\s+50\.0 %\s+2\s+0$", text, flags=re.M)
    menu = r"^menu\s+6\s+6\s+3 \(50 %\)\s+2 \(33 %\)\s+1 \(17 %\)\s+2 \(33 %\)\s+0 \(0 %\)$"
    assert re.search(menu, text, flags=re.M)
    assert re.search(r"^recognition\s+1\s+300 ms\s+300 ms\s+300 ms$", text, flags=re.M)
    assert "  11       3  " + "#" * 40 in lines       # the busiest hour, local time
    comment = next(line for line in lines if "te lang" in line)
    assert "\x1b" not in text and "\x07" not in text and comment.endswith("weg")
    assert not any(ch in text for ch in "\r\x00")


def test_a_chart_of_many_reasons_draws_the_rest_as_other(records_engine):
    write(records_engine, *(record(f"t{i}", f"2026-11-02T{8 + i:02}:00:00", outcome="transferred", reason=f"r{i}",
                                   visited=("start",)) for i in range(charts.MAX_SERIES + 2)))
    svg = charts.transfers_by_day(_report(records_engine).days)
    texts = [t.text for t in ET.fromstring(svg).iter("text")]
    assert "other" in texts and "r0" in texts and f"r{charts.MAX_SERIES + 1}" not in texts


def test_latency_and_funnel_charts_take_plain_figures():
    svg = charts.latency({"recognition": Percentiles(3, 100, 200, 300), "response": Percentiles(0, None, None, None)})
    root = ET.fromstring(svg)
    assert root.get("viewBox") and root.get("role") == "img" and root.findtext("title") == "Latency"
    texts = [t.text for t in root.iter("text")]
    assert "recognition" in texts and "response" not in texts
    rows = [StepFigures("f", f"step{i}", 10, 5, 3, 1, 1, 1, 1) for i in range(charts.MAX_ROWS + 5)]
    labels = [t.text for t in ET.fromstring(charts.funnel(rows)).iter("text")]
    assert "step0" in labels and f"step{charts.MAX_ROWS - 1}" in labels and f"step{charts.MAX_ROWS}" not in labels
