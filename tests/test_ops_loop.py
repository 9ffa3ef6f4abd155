"""The review loop end to end, on a running server that is never restarted: a caller's sentence that
energie does not understand today ends up in the flow, and the reloaded flow understands it.

A real `voicebot serve` (gunicorn, a real redis-server) serves a copy of flows/energie.yaml and
watches its folder. A call record holds the caller's sentence as the real dialog engine handled it
(not understood, asked again); an operator marks it on /ops/review in headless Chromium (Debian's
``chromium``, driven by Playwright) as an example of ``meterstand_doorgeven``; `voicebot review
export --write` adds it to the copied file; the server's watcher loads the new version; a new call
placed with the emulator runs on it, a real RQ worker records that call, and /ops shows both
versions side by side.

The server has no Dutch speech model (the Korean one is the only recogniser here), so a Dutch
sentence cannot be spoken to it. That the new version understands the sentence is therefore shown
with the version the server reports it serves (its /metrics and `voicebot flows reload`): the
flow file with exactly that content hash, the one the server loaded, is run through the same dialog
engine the server runs, and `voicebot nlu` classifies the sentence as the meter reading.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from browser import browser  # noqa: F401  (a fixture)
from servers import ACCOUNT, REPO, SALT, TOKEN, Server
from voicebot.dialog.events import CallEnded, Utterance
from voicebot.emulator import place_call
from voicebot.flow import flow_version, load_flow
from voicebot.records.build import build_record
from voicebot.records.db import open_engine
from voicebot.records.schema import reviews, turns
from voicebot.records.store import RecordStore
from voicebot.simulator import Simulation
from voicebot.telephony.store import CallStore

PASSWORD = "ops loop password"
WAIT = 120.0
WAIT_MS = int(WAIT * 1000)
"""Generous: a busy 2-core machine runs the server, the browser and the worker at once."""
SENTENCE = "ik geef u het getal van de klok in de schuur"
"""A caller with a meter reading, in words energie's examples do not use ("de klok" for the meter)."""
INTENT = "meterstand_doorgeven"
ZONE = ZoneInfo("Europe/Amsterdam")
ACCEPT = 0.70
"""energie's ``defaults.confidence.accept``: at or above it a guess is acted on without asking back."""

def voicebot(server: Server, url: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """`voicebot ARGS` as an operator runs it beside the server: its config.yaml, Redis and records."""
    return subprocess.run([sys.executable, "-m", "voicebot", *args], input=stdin, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "VOICEBOT_CONFIG": str(server.config),
                                            "REDIS_URL": server.redis_url, "VOICEBOT_RECORDS_URL": url,
                                            "VOICEBOT_HASH_SALT": SALT})


def served(server: Server) -> str | None:
    """The version of energie that new calls on ``server`` get (``voicebot_flow_version_info``)."""
    metrics = urllib.request.urlopen(server.url + "/metrics", timeout=5).read().decode()
    found = re.search(r'voicebot_flow_version_info\{flow="energie",version="(\w+)"\} 1\.0', metrics)
    return found.group(1) if found else None


def wait_until(condition, what: str, server: Server) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}:\n{server.output()[-3000:]}")
        time.sleep(0.2)


def heard(flow_file: Path, text: str) -> tuple[dict, str]:
    """What the dialog engine makes of ``text`` said at energie's open question, with the flow in
    ``flow_file``: the turn's note (``understood``) and the step the call goes on to."""
    flow = load_flow(flow_file)
    sim = Simulation(flow, at=dt.datetime.now(ZONE).replace(tzinfo=None, microsecond=0).isoformat(),
                     call_id="CA" + secrets.token_hex(16))
    assert sim.state.step == "menu"
    sim.send(Utterance(text=text, confidence=0.92))
    turn = [entry for entry in sim.state.transcript if entry["who"] == "caller"][-1]
    return turn["understood"], sim.state.step


@pytest.fixture(scope="module")
def loop(tmp_path_factory, redis_url):
    """The server on a copy of energie, with a records database that holds one call in which the
    caller said ``SENTENCE`` and was not understood (the engine's own verdict, as the worker writes it)."""
    tmp = tmp_path_factory.mktemp("ops-loop")
    flows = tmp / "flows"
    flows.mkdir()
    shutil.copy(REPO / "flows" / "energie.yaml", flows / "energie.yaml")
    url = f"sqlite:///{tmp / 'records.sqlite3'}"

    flow = load_flow(flows / "energie.yaml")
    started = dt.datetime.now(ZONE).replace(tzinfo=None, microsecond=0) - dt.timedelta(minutes=30)
    sim = Simulation(flow, at=started.isoformat(), call_id="CA" + secrets.token_hex(16), caller="+31612340000")
    sim.send(Utterance(text=SENTENCE, confidence=0.92))
    sim.send(CallEnded())
    record = build_record(sim.state.call_id, sim.store_record(updated_at=time.time() - 29 * 60), SALT,
                          timezone="Europe/Amsterdam")
    engine = open_engine(url)
    assert RecordStore(engine).write(record)

    settings = (f"desk: {{accounts: {tmp / 'agents.sqlite3'}}}\n"
                f"records: {{url: '{url}', queue: ops-loop-{secrets.token_hex(4)}}}\n")
    server = Server(tmp, redis_url, "loop", flows=flows, default_flow="energie", settings=settings,
                    watch_seconds=0.5, environ={"VOICEBOT_DESK_SECRET": secrets.token_hex(32),
                                                "VOICEBOT_RECORDS_URL": url})
    added = voicebot(server, url, "agents", "add", "olga", "--role", "operator", "--password-stdin",
                     stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    yield server, url, engine, flows / "energie.yaml", sim.state.call_id
    server.stop()
    engine.dispose()


def test_a_sentence_marked_on_the_review_page_is_understood_by_the_reloaded_flow(loop, browser):
    server, url, engine, flow_file, call_id = loop
    before_text = flow_file.read_text(encoding="utf-8")
    before = flow_version(before_text)
    worker = server.worker_pid()

    # -- today the running flow does not understand the sentence -------------------------------------
    assert served(server) == before
    understood, step = heard(flow_file, SENTENCE)
    assert understood["result"] == "not_understood" and understood["confidence"] < ACCEPT and step == "menu"
    asked = voicebot(server, url, "nlu", "--flow", "energie", SENTENCE)
    assert asked.returncode == 0, asked.stderr
    assert json.loads(asked.stdout)["intent"] is None
    with engine.connect() as conn:
        turn = conn.execute(sa.select(turns).where(turns.c.call_id == call_id, turns.c.text == SENTENCE)
                            ).mappings().one()
    assert turn["result"] == "not_understood" and turn["intent"] != INTENT      # a wrong guess, asked again

    # -- an operator marks it on /ops/review ---------------------------------------------------------
    row = f"#turn-{call_id}-{turn['seq']}"
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    try:
        page.goto(server.url + "/ops/review?flow=energie")
        assert "/agent/login?next=" in page.url
        page.fill("#name", "olga")
        page.fill("#password", PASSWORD)
        page.press("#password", "Enter")
        page.wait_for_url(server.url + "/ops/review?flow=energie", timeout=WAIT_MS)
        assert page.inner_text(f"{row} td.text") == SENTENCE
        assert page.input_value(f"{row} select[name=intent]") == turn["intent"]    # the guess, chosen already
        page.select_option(f"{row} select[name=intent]", INTENT)
        page.click(f"{row} button.intent")
        page.wait_for_selector(row, state="detached", timeout=WAIT_MS)
        assert f"Marked as an example of {INTENT}." in page.inner_text("#messages")
        with engine.connect() as conn:
            verdict = conn.execute(sa.select(reviews).where(reviews.c.call_id == call_id)).mappings().one()
        assert (verdict["label"], verdict["intent"], verdict["reviewer"]) == ("intent", INTENT, "olga")

        # -- `voicebot review export` shows the change, then writes it into the copied flow file ---------
        shown = voicebot(server, url, "review", "export", "--flow", "energie")
        assert shown.returncode == 0, shown.stderr
        assert f"+      - {SENTENCE}\n" in shown.stdout and "Nothing written" in shown.stderr
        assert flow_file.read_text(encoding="utf-8") == before_text
        written = voicebot(server, url, "review", "export", "--flow", "energie", "--write")
        assert written.returncode == 0, written.stderr
        after_text = flow_file.read_text(encoding="utf-8")
        after = flow_version(after_text)
        assert after != before and "1 verdict(s) marked exported" in written.stderr
        examples = load_flow(flow_file).spec.intents[INTENT].examples
        assert examples[-1] == SENTENCE

        # -- the running server loads it by itself (its watcher), without a restart ----------------------
        wait_until(lambda: served(server) == after, f"energie {after} served", server)
        assert f"flow reload (watch): energie {before} -> {after}" in server.output()
        assert server.proc.poll() is None and server.worker_pid() == worker    # the same process serves it
        reloaded = voicebot(server, url, "flows", "reload", "--wait", str(WAIT))
        assert reloaded.returncode == 0, reloaded.stdout + reloaded.stderr
        assert "nothing changed" in reloaded.stdout and f"serving energie {after}" in reloaded.stdout

        # -- the version the server serves understands the sentence --------------------------------------
        assert flow_version(flow_file.read_text(encoding="utf-8")) == served(server)   # the file it loaded
        understood, step = heard(flow_file, SENTENCE)
        assert understood == {"result": "accepted", "intent": INTENT, "confidence": understood["confidence"]}
        assert understood["confidence"] >= ACCEPT and step != "menu"              # on to the meter reading
        asked = voicebot(server, url, "nlu", "--flow", "energie", SENTENCE)
        assert json.loads(asked.stdout)["intent"] == INTENT

        # -- a new call runs on the new version, and its record says so -----------------------------------
        report = place_call(server.url, [{"hangup": True}], auth_token=TOKEN, account_sid=ACCOUNT, max_seconds=60,
                            redis_url=server.redis_url)
        assert not report.timed_out, (report.events, server.output()[-3000:])
        stored = CallStore(server.redis_url, 60).get(report.call_sid) or {}
        assert (stored.get("flow"), stored.get("flow_version")) == ("energie", after)
        recorded = subprocess.run([sys.executable, "-m", "voicebot", "worker", "--burst"], timeout=WAIT,
                                  capture_output=True, text=True,
                                  env={**os.environ, "VOICEBOT_CONFIG": str(server.config),
                                       "REDIS_URL": server.redis_url, "VOICEBOT_HASH_SALT": SALT,
                                       "VOICEBOT_RECORDS_URL": url})
        assert recorded.returncode == 0, recorded.stdout + recorded.stderr

        # -- the pages: the verdict is in the flow file; the figures compare the two versions -------------
        page.goto(server.url + "/ops/review?flow=energie")
        marks = page.inner_text("#marks")
        assert SENTENCE in marks and "in the flow file" in marks
        assert page.query_selector(row) is None
        page.goto(server.url + "/ops?flow=energie&period=24h")
        versions = page.locator("section.vb-section", has=page.locator("h2", has_text="Flow versions"))
        rows = {cells[1]: cells[2] for cells in (r.split("\t") for r in versions.locator("tbody tr").all_inner_texts())}
        assert rows == {before: "1", after: "1"}
    finally:
        page.close()
