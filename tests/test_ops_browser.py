"""The review queue in a real browser: headless Chromium (Debian's ``chromium``) driven by Playwright,
against a real `voicebot serve` whose call records hold misunderstood sentences. An operator logs
in, marks sentences by keyboard, and the verdicts land in the records database. Playwright uses the
system browser (``executable_path``); it never downloads one."""

from __future__ import annotations

import datetime as dt
import os
import secrets
import subprocess
import sys

import pytest
import sqlalchemy as sa

from browser import browser, keep_screenshot  # noqa: F401  (browser: a fixture)
from review_records import a_call, records_url, write_calls
from servers import Server
from voicebot.records.schema import reviews

PASSWORD = "ops browser password"
WAIT_MS = 120_000
"""Generous: a busy 2-core machine runs the server and the browser at once."""
SENTENCES = ["mijn lampen doen het niet meer", "wat kost een warmtepomp bij jullie", "eh hmm ja nou"]


@pytest.fixture(scope="module")
def site(tmp_path_factory, redis_url):
    tmp = tmp_path_factory.mktemp("ops")
    url = records_url(tmp)
    records = [a_call("mini", [("menu", text, result, guess, confidence)],
                      started=dt.datetime(2026, 3, 2, 9, 0) - dt.timedelta(hours=i))
               for i, (text, result, guess, confidence) in enumerate([
                   (SENTENCES[0], "not_understood", "storing", 0.28),
                   (SENTENCES[1], "out_of_scope", None, 0.12),
                   (SENTENCES[2], "low_confidence", "meterstand", 0.33)])]
    engine = write_calls(url, records)
    srv = Server(tmp, redis_url, "ops",
                 settings=f"desk: {{accounts: {tmp / 'agents.sqlite3'}}}\nrecords: {{url: '{url}'}}\n",
                 environ={"VOICEBOT_DESK_SECRET": secrets.token_hex(32), "VOICEBOT_RECORDS_URL": url})
    made = subprocess.run([sys.executable, "-m", "voicebot", "agents", "add", "olga", "--role", "operator",
                           "--password-stdin"], input=PASSWORD + "\n", capture_output=True, text=True, timeout=60,
                          env={**os.environ, "VOICEBOT_CONFIG": str(tmp / "ops.yaml"), "VOICEBOT_RECORDS_URL": url})
    assert made.returncode == 0, made.stderr
    yield srv, engine, records
    srv.stop()


def verdicts(engine) -> list[tuple]:
    with engine.connect() as conn:
        return conn.execute(sa.select(reviews.c.call_id, reviews.c.label, reviews.c.intent, reviews.c.reviewer)
                            .order_by(reviews.c.id)).all()


def test_an_operator_marks_sentences_on_the_review_page(site, browser, tmp_path):
    server, engine, records = site
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    try:
        page.goto(server.url + "/ops/review")
        assert "/agent/login?next=" in page.url and page.is_visible("#password")
        assert SENTENCES[0] not in page.content()
        page.fill("#name", "olga")
        page.fill("#password", PASSWORD)
        page.press("#password", "Enter")
        page.wait_for_url(server.url + "/ops/review", timeout=WAIT_MS)
        rows = [f"#turn-{r['call']['call_id']}-1" for r in records]
        for row, text in zip(rows, SENTENCES):
            assert page.inner_text(f"{row} td.text") == text
        assert page.inner_text("#count").startswith("3 sentences waiting")
        page.evaluate("window.notReloaded = true")

        assert page.input_value(f"{rows[0]} select[name=intent]") == "storing"      # the guess, chosen already
        page.focus(f"{rows[0]} button.intent")
        page.keyboard.press("Enter")
        page.wait_for_selector(rows[0], state="detached", timeout=WAIT_MS)
        assert "Marked as an example of storing." in page.inner_text("#messages")
        assert page.evaluate("window.notReloaded") is True                          # no reload: the page's script
        assert page.evaluate(f"document.querySelector('{rows[1]}').contains(document.activeElement)")
        assert page.inner_text("#count").startswith("2 sentences waiting")
        shot = tmp_path / "ops-review.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        keep_screenshot(shot)

        page.click(f"{rows[1]} button.oos")
        page.wait_for_selector(rows[1], state="detached", timeout=WAIT_MS)
        page.select_option(f"{rows[2]} select[name=intent]", "openingstijden")
        page.click(f"{rows[2]} button.noise")
        page.wait_for_selector("#empty", timeout=WAIT_MS)
        assert verdicts(engine) == [(records[0]["call"]["call_id"], "intent", "storing", "olga"),
                                    (records[1]["call"]["call_id"], "out_of_scope", None, "olga"),
                                    (records[2]["call"]["call_id"], "noise", None, "olga")]
        page.reload()
        assert page.inner_text("#count").startswith("0 sentences waiting")
        marks = page.inner_text("#marks")
        assert all(text in marks for text in SENTENCES) and "example of storing" in marks
        page.click("#marks button:has-text('Take back') >> nth=0")                  # a plain form: post and reload
        page.wait_for_selector(rows[2], timeout=WAIT_MS)
        assert "Verdict taken back" in page.inner_text("#messages")
        assert len(verdicts(engine)) == 2
    finally:
        page.close()
