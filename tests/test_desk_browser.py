"""The agent desk in a real browser: headless Chromium (Debian's ``chromium``) driven by Playwright,
against a real `voicebot serve`, a real redis-server, a call placed with the emulator and a real
RQ worker delivering its record. Playwright uses the system browser (``executable_path``); it
never downloads one."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest
import redis

from browser import browser, keep_screenshot  # noqa: F401  (browser: a fixture)
from servers import ACCOUNT, TOKEN, Server
from voicebot.emulator import place_call
from voicebot.handoff.contract import handoff_record
from voicebot.handoff.jobs import publish_record

PASSWORD = "desk browser password"
WAIT_MS = 120_000
"""Generous: a busy 2-core machine runs the call, the worker and the browser at once."""


@pytest.fixture(scope="module")
def server(tmp_path_factory, redis_url):
    tmp = tmp_path_factory.mktemp("desk")
    group = "browser-" + secrets.token_hex(4)       # a desk of its own: earlier tests' transfers are not its own
    srv = Server(tmp, redis_url, "desk", settings=f"desk: {{accounts: {tmp / 'agents.sqlite3'}, group: {group}}}\n",
                 environ={"VOICEBOT_DESK_SECRET": secrets.token_hex(32)})
    made = subprocess.run([sys.executable, "-m", "voicebot", "agents", "add", "alice", "--password-stdin"],
                          input=PASSWORD + "\n", capture_output=True, text=True, timeout=60,
                          env={**os.environ, "VOICEBOT_CONFIG": str(tmp / "desk.yaml")})
    assert made.returncode == 0, made.stderr
    yield srv
    srv.stop()


def log_in(page, server):
    page.goto(server.url + "/agent")
    assert page.url.endswith("/agent/login")
    page.fill("#name", "alice")
    page.fill("#password", PASSWORD)
    page.press("#password", "Enter")                     # by keyboard
    page.wait_for_url(server.url + "/agent", timeout=WAIT_MS)


def test_a_transferred_call_appears_live_and_is_claimed(server, browser, redis_url, tmp_path):
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    try:
        log_in(page, server)
        page.wait_for_function("document.getElementById('connection').textContent === 'Live'", timeout=WAIT_MS)
        page.evaluate("window.notReloaded = true")
        call_sid = "CA" + secrets.token_hex(16)
        card = f'li.card[data-call-id="{call_sid}"]'
        assert page.query_selector(card) is None
        report = place_call(server.url, [{"dtmf": "0"}], auth_token=TOKEN, account_sid=ACCOUNT, voice="ko",
                            max_seconds=60, redis_url=redis_url, call_sid=call_sid)
        assert report.transfer, report.events
        subprocess.run([sys.executable, "-m", "voicebot", "worker", "--burst"], check=True, timeout=120,
                       env={**os.environ, "REDIS_URL": redis_url}, capture_output=True)
        page.wait_for_selector(card, timeout=WAIT_MS)
        assert page.evaluate("window.notReloaded") is True          # it came without reloading the page
        text = page.inner_text(card)
        assert "Asked for a person" in text and "Waiting" in text and "Not verified" in text
        assert page.inner_text(f"{card} .summary").strip()               # the summary, in the caller's language
        assert page.query_selector_all(f"{card} .transcript li.turn")    # and the transcript
        page.focus(f"{card} button.claim")
        page.keyboard.press("Enter")
        page.wait_for_selector(f"{card} .state.mine", timeout=WAIT_MS)
        assert "You took this transfer." in page.inner_text("#messages")
        assert page.query_selector(f"{card} select[name=outcome]") is not None
        shot = tmp_path / "desk-claimed.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        keep_screenshot(shot)
        connection = redis.Redis.from_url(redis_url)
        group = [g for g in connection.xinfo_groups("voicebot:handoff:stream:agents")
                 if g["name"].decode().startswith("browser-")]
        assert group, "the desk reads the queue's stream with its consumer group"
        state = f"voicebot:desk:{group[0]['name'].decode()}:call:{call_sid}"
        assert connection.hget(state, "agent") == b"alice"
        page.select_option(f"{card} select[name=outcome]", "resolved")
        page.focus(f"{card} .close-form button")
        page.keyboard.press("Enter")
        page.wait_for_selector(card, state="detached", timeout=WAIT_MS)
        assert "Closed: Resolved." in page.inner_text("#messages")
        assert connection.hget(state, "outcome") == b"resolved"
        connection.close()
    finally:
        page.close()


def test_a_visitor_who_has_not_logged_in_is_refused_everywhere(server, browser, redis_url):
    record = handoff_record({"call_id": "CA" + secrets.token_hex(16), "queue": "agents", "caller": "+8210",
                             "summary": "secret summary of a caller", "transcript": []}, waited_seconds=1.0)
    connection = redis.Redis.from_url(redis_url)
    publish_record(connection, record)
    connection.close()
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(server.url + "/agent")
        assert page.url.endswith("/agent/login") and page.is_visible("#password")
        assert "secret summary" not in page.content()
        for path in ("/agent", "/agent/api/transfers", "/agent/events"):
            answer = page.evaluate("""async (path) => {
                const response = await fetch(path, {redirect: "manual"});
                return {status: response.status, type: response.type, body: await response.text()};
            }""", path)
            assert answer["status"] in (401,) or answer["type"] == "opaqueredirect", (path, answer)
            assert "secret summary" not in answer["body"] and record["call_id"] not in answer["body"]
        stream = page.evaluate("""() => new Promise((resolve) => {
            const source = new EventSource("/agent/events");
            source.onmessage = () => resolve("message");
            source.onerror = () => { resolve(source.readyState === EventSource.CLOSED ? "refused" : "retrying");
                                     source.close(); };
        })""")
        assert stream == "refused"
    finally:
        context.close()
