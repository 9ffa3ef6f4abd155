"""The figures of a few hundred calls, end to end: `voicebot records simulate` writes 300 simulated
calls of flows/energie.yaml (the real dialog engine, written as the worker writes a finished call)
to a records database of the test's own; a real `voicebot serve` reads it; an operator logs in in
headless Chromium (Debian's ``chromium``, driven by Playwright, which never downloads a browser),
chooses energie and the last 14 days on /ops, and sees containment, the step funnel, transfer
reasons, feedback and latency, drawn as SVG on the server, without a console error or a breach of
the page's Content-Security-Policy. `voicebot report` prints the same containment, and its
``--html`` file stands alone.

The figures the page must show are counted here straight from the database, not taken from the
code that draws the page.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from browser import browser, keep_screenshot  # noqa: F401  (browser: a fixture)
from servers import REPO, SALT, Server
from voicebot.records.db import open_engine
from voicebot.records.schema import calls, steps, turns

PASSWORD = "ops figures password"
WAIT_MS = 120_000
"""Generous: a busy 2-core machine runs the server and the browser at once."""
CALLS = 300
DAYS = 12
"""The simulated calls start within the last 12 days: inside both "the last 14 days" the page is asked
for (14 whole days, today included) and `voicebot report --since 14d` (14 times 24 hours back from
a moment later), so both count every call."""
ZONE = ZoneInfo("Europe/Amsterdam")       # energie's hours.timezone: the page's and the report's days
SECTIONS = ["Containment", "Transfers", "Steps", "Feedback", "Latency and calls per hour", "Flow versions"]
CHARTS = ["outcomes-by-day", "containment-by-day", "transfer-reasons", "transfers-by-day", "funnel",
          "feedback-scores", "latency", "calls-by-hour"]

def voicebot(config: Path, url: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """`voicebot ARGS` as an operator runs it, with the server's config.yaml and records database."""
    return subprocess.run([sys.executable, "-m", "voicebot", *args], input=stdin, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "VOICEBOT_CONFIG": str(config),
                                            "VOICEBOT_RECORDS_URL": url, "VOICEBOT_HASH_SALT": SALT})


@pytest.fixture(scope="module")
def site(tmp_path_factory, redis_url):
    tmp = tmp_path_factory.mktemp("ops-figures")
    flows = tmp / "flows"
    flows.mkdir()
    shutil.copy(REPO / "flows" / "energie.yaml", flows / "energie.yaml")
    url = f"sqlite:///{tmp / 'records.sqlite3'}"
    config = tmp / "ops.yaml"             # the file Server writes (tmp / f"{name}.yaml"); the commands share it
    settings = f"desk: {{accounts: {tmp / 'agents.sqlite3'}}}\nrecords: {{url: '{url}'}}\n"
    config.write_text(f"flows: {{dir: {flows}, default: energie}}\n{settings}")
    made = voicebot(config, url, "records", "simulate", "--flow", "energie", "--calls", str(CALLS),
                    "--days", str(DAYS), "--seed", "7")
    assert made.returncode == 0, made.stdout + made.stderr
    assert made.stdout.startswith(f"wrote {CALLS} simulated calls of flow energie"), made.stdout
    server = Server(tmp, redis_url, "ops", flows=flows, default_flow="energie", settings=settings,
                    environ={"VOICEBOT_DESK_SECRET": secrets.token_hex(32), "VOICEBOT_RECORDS_URL": url})
    added = voicebot(server.config, url, "agents", "add", "olga", "--role", "operator", "--password-stdin",
                     stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    yield server, url
    server.stop()


def counted(url: str) -> dict:
    """What the page must show, counted in the database: calls, containment, transfer reasons, the
    steps callers reached, feedback scores, and how many turns have each latency measured."""
    engine = open_engine(url, migrate=False)
    with engine.connect() as conn:
        outcomes = dict(conn.execute(sa.select(calls.c.outcome, sa.func.count()).group_by(calls.c.outcome)).all())
        reasons = set(conn.execute(sa.select(calls.c.reason).where(calls.c.outcome == "transferred")
                                   .distinct()).scalars())
        reached = dict(conn.execute(sa.select(steps.c.step, sa.func.count(sa.distinct(steps.c.call_id)))
                                    .group_by(steps.c.step)).all())
        scores = conn.execute(sa.select(sa.func.count(), sa.func.avg(calls.c.feedback))
                              .where(calls.c.feedback.is_not(None))).one()
        measured = {name: conn.execute(sa.select(sa.func.count())
                                       .where(getattr(turns.c, f"{name}_ms").is_not(None))).scalar()
                    for name in ("recognition", "response")}
    engine.dispose()
    answered = sum(outcomes.values()) - outcomes.get("unanswered", 0)
    return {"calls": sum(outcomes.values()), "containment": f"{100 * outcomes.get('completed', 0) / answered:.1f} %",
            "reasons": reasons, "reached": reached, "scores": scores, "measured": measured}


def test_an_operator_sees_the_figures_of_300_calls_of_the_last_14_days(site, browser, tmp_path):
    server, url = site
    expected = counted(url)
    assert expected["calls"] == CALLS
    assert {"explicit_request", "low_confidence"} <= expected["reasons"]       # the simulation's mix
    today = dt.datetime.now(ZONE).date()
    first, last = (today - dt.timedelta(days=13)).isoformat(), today.isoformat()

    page = browser.new_page(viewport={"width": 1366, "height": 900})
    console, failures = [], []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text} ({m.location.get('url')})")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: console.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: failures.append(f"{r.url}: {r.failure}"))
    page.on("response", lambda r: failures.append(f"{r.url}: {r.status}") if r.status >= 400 else None)
    page.add_init_script("window.cspViolations = [];"
                         "document.addEventListener('securitypolicyviolation', function (e) {"
                         "  window.cspViolations.push(e.violatedDirective + ' ' + e.blockedURI); });")
    try:
        page.goto(server.url + "/ops")
        assert "/agent/login?next=" in page.url and page.is_visible("#password")
        page.fill("#name", "olga")
        page.fill("#password", PASSWORD)
        page.press("#password", "Enter")
        page.wait_for_url(server.url + "/ops", timeout=WAIT_MS)

        page.select_option("#flow", "energie")                  # the operator's choice, through the form
        page.fill("#from", first)
        page.fill("#until", last)
        page.click("form.choose button[type=submit]")
        page.wait_for_url(re.compile(r".*/ops\?.*flow=energie.*"), timeout=WAIT_MS)
        page.wait_for_selector("#figures", timeout=WAIT_MS)
        assert page.inner_text("p.period").startswith(f"energie, {first} to {last}")
        assert page.locator("#period option:checked").inner_text() == "the days below"    # not a span's name
        assert page.title() == "Figures of energie · voicebot"

        figures = page.locator("#figures")
        headings = figures.locator("h2").all_inner_texts()
        assert headings == SECTIONS
        kpis = dict(zip(figures.locator(".vb-kpi dt").all_inner_texts(),
                        figures.locator(".vb-kpi dd").all_inner_texts()))
        assert kpis["Calls"] == str(CALLS)
        assert kpis["Containment"] == expected["containment"]
        assert kpis["Feedback"] == f"{expected['scores'][1]:.2f}"

        section = {name: figures.locator("section.vb-section", has=page.locator("h2", has_text=name))
                   for name in SECTIONS}
        shown_reasons = section["Transfers"].locator("tbody tr td:first-child").all_inner_texts()
        assert set(shown_reasons) == expected["reasons"]
        funnel = {row[0]: int(row[1]) for row in (r.split("\t") for r in
                                                  section["Steps"].locator("tbody tr").all_inner_texts())}
        assert {"welkom", "menu", "meter_stand", "storing_postcode", "feedback"} <= set(funnel)
        assert funnel == {step: expected["reached"][step] for step in funnel}   # reached: calls per step
        assert section["Steps"].locator("thead th").all_inner_texts()[:4] == ["Step", "reached", "asked", "first time"]
        assert f"{expected['scores'][0]} scores, on average {expected['scores'][1]:.2f} out of 5." in \
            section["Feedback"].inner_text()
        assert section["Feedback"].locator("ul.vb-comments li").count() > 0     # callers' comments
        latency = {row.split("\t")[0]: row.split("\t")[1:] for row in
                   section["Latency and calls per hour"].locator("tbody tr").all_inner_texts()}
        for name in ("recognition", "response"):
            assert int(latency[name][0]) == expected["measured"][name] > 0
            assert all(re.fullmatch(r"\d+ ms", value) for value in latency[name][1:]), latency

        for name in CHARTS:
            chart = figures.locator(f"svg.vb-chart-{name}")
            assert chart.count() == 1, name
            assert chart.is_visible(), name
            assert chart.bounding_box()["height"] > 50, name                  # drawn, not collapsed
        assert figures.locator("svg.vb-chart-funnel text", has_text="meter_stand").count() >= 1
        rem = page.evaluate("parseFloat(getComputedStyle(document.documentElement).fontSize)")
        widths = {name: figures.locator(f"svg.vb-chart-{name}").bounding_box()["width"] for name in CHARTS}
        assert all(width <= 45 * rem + 1 for width in widths.values()), widths   # report.css's sizes hold
        assert widths["feedback-scores"] <= 22.5 * rem + 1 and widths["latency"] <= 22.5 * rem + 1, widths

        shot = tmp_path / "ops-figures.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 50_000
        keep_screenshot(shot)

        assert page.evaluate("window.cspViolations") == []
        assert (console, failures) == ([], [])
    finally:
        page.close()


def test_voicebot_report_prints_the_same_containment_and_writes_a_self_contained_page(site, tmp_path):
    server, url = site
    expected = counted(url)
    printed = voicebot(server.config, url, "report", "--flow", "energie", "--since", "14d")
    assert printed.returncode == 0, printed.stderr
    assert f"Calls {CALLS}, answered" in printed.stdout
    assert f"containment {expected['containment']}" in printed.stdout.splitlines()[2]
    assert all(reason in printed.stdout for reason in expected["reasons"])

    target = tmp_path / "energie.html"
    written = voicebot(server.config, url, "report", "--flow", "energie", "--since", "14d", "--html", str(target))
    assert written.returncode == 0, written.stderr
    assert f"wrote {target} ({CALLS} calls)" in written.stderr
    page = target.read_text(encoding="utf-8")
    assert oct(target.stat().st_mode & 0o777) == oct(0o600)                   # callers' comments: owner only
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert re.search(r"https?://", page) is None                              # refers to nothing outside
    assert re.search(r"<(script|link|img|iframe)\b|\bsrc=|@import|url\((?!#)", page) is None
    assert f"<dt>Containment</dt><dd>{expected['containment']}</dd>" in page
    assert all(f"vb-chart-{name}" in page for name in CHARTS)
    assert all(f"<h2>{name}</h2>" in page for name in SECTIONS)
