"""The default flow on the phone, end to end: a real `voicebot serve` on flows/ (the energie flow),
its customer directory loaded from the demo customers with `voicebot customers import`, a real
redis-server and RQ worker, and `voicebot call`'s Twilio emulator placing scripted calls.

There is no Dutch speech model on a test machine, so the server runs the Dutch flow by keypad, as
`make run` does in a fresh clone. The calls run in real time (the bot's prompts take as long as
they take to say), so this file keeps to two: the README's meter reading by keys, verified as demo
customer 100001, and a caller who keys a wrong date of birth three times.

The server runs a copy of flows/ whose energie.yaml is open around the clock: the transfer after
three wrong dates must dial the agent whenever the suite runs, not turn into the after-hours
call-back offer in the evening (that path has tests of its own in test_no_answer.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import redis
from voicebot.handoff.queueing import handoff_queue

from demo_customers import DEMO_CSV, JAN_NUMBER
from servers import ACCOUNT, AGENT, REPO, TOKEN, Server
from voicebot.emulator import place_call
from voicebot.emulator.scenario import load_scenario
from voicebot.telephony.store import CallStore

METER_CALL = REPO / "flows" / "calls" / "meterstand_toetsen.yaml"
WRONG_DATES = ("01051980", "02022000", "03031960")
"""Dates of birth that are not Jan de Vries's (14-03-1975), keyed DDMMJJJJ."""


def always_open_flows(folder):
    """flows/ with energie.yaml's opening hours set to every day, all day."""
    import shutil

    import yaml

    from voicebot.yaml12 import load_yaml

    def plain(tree):                  # the loader's line-numbered dicts and lists, as yaml can dump them
        if isinstance(tree, dict):
            return {key: plain(value) for key, value in tree.items()}
        return [plain(item) for item in tree] if isinstance(tree, list) else tree

    shutil.copytree(REPO / "flows", folder)
    energie = folder / "energie.yaml"
    spec = plain(load_yaml(energie.read_text(encoding="utf-8")))
    assert spec["hours"]["weekly"], "energie.yaml has opening hours: this copy replaces them"
    spec["hours"] = {"timezone": spec["hours"]["timezone"],
                     "weekly": {day: "00:00-24:00" for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}}
    energie.write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory, redis_url):
    tmp = tmp_path_factory.mktemp("energie-e2e")
    database = tmp / "customers.sqlite3"
    settings = f"identity: {{database: {database}}}\n"
    config = tmp / "import.yaml"
    config.write_text(settings)
    imported = subprocess.run([sys.executable, "-m", "voicebot", "customers", "import", str(DEMO_CSV)],
                              env={**os.environ, "VOICEBOT_CONFIG": str(config)}, capture_output=True, text=True,
                              timeout=120)
    assert imported.returncode == 0, imported.stdout + imported.stderr
    srv = Server(tmp, redis_url, "energie", flows=always_open_flows(tmp / "flows"), default_flow="energie",
                 settings=settings)
    yield srv
    srv.stop()


@pytest.fixture
def client(redis_url):
    """The session's Redis, without lockout counters from earlier calls."""
    connection = redis.Redis.from_url(redis_url)
    for key in connection.scan_iter("voicebot:lockout:*"):
        connection.delete(key)
    yield connection
    connection.close()


def test_the_readme_meter_reading_by_keys_verifies_demo_customer_100001_first(server, client, redis_url):
    scenario = load_scenario(METER_CALL)
    expect = scenario.pop("expect")
    report = place_call(server.url, scenario.pop("turns"), auth_token=TOKEN, account_sid=ACCOUNT, expect=expect,
                        redis_url=redis_url, **scenario)
    assert report.passed, (report.failures, report.events, server.output()[-3000:])
    said = report.bot_prompts
    order = [next(i for i, text in enumerate(said) if part in text)
             for part in ("Wat is uw klantnummer", "Wat is uw geboortedatum", "Dank u, dat klopt",
                          "Wat is de meterstand", "Uw meterstand 12345 is genoteerd")]
    assert order == sorted(order), said                     # verified before the reading is asked
    assert not [text for text in said if "1975" in text or "maart" in text]    # the date of birth is never said
    state = CallStore(redis_url, 60).get(report.call_sid)["state"]
    assert state["identity"]["verified"] is True and state["identity"]["method"] == "customer_dob"
    assert state["identity"]["customer"] == {"number": JAN_NUMBER, "name": "Jan de Vries"}
    assert state["slots"]["meterstand"] == 12345 and state["outcome"] == "hangup"


def test_three_wrong_dates_of_birth_by_keys_reach_a_person_unverified(server, client, redis_url):
    turns = [{"dtmf": "1", "barge_in": 20.0}]
    for date in WRONG_DATES:
        turns += [{"dtmf": f"{JAN_NUMBER}#"}, {"dtmf": date}]
    report = place_call(server.url, turns, auth_token=TOKEN, account_sid=ACCOUNT, voice="nl", max_seconds=240,
                        caller="+31611122233", redis_url=redis_url,
                        expect={"transfer": "number", "target": AGENT,
                                "prompt_contains": ["Dat klopt helaas niet", "Een medewerker helpt u hierbij verder"]})
    assert report.passed, (report.failures, report.events, server.output()[-3000:])
    assert sum("Dat klopt helaas niet" in text for text in report.bot_prompts) == 3
    assert not any("meterstand?" in text for text in report.bot_prompts)    # never past the verification

    job = handoff_queue(client, "handoff").fetch_job(f"handoff-{report.call_sid}")
    assert job is not None
    arguments = json.dumps([job.args, job.kwargs], default=str)
    assert not [date for date in WRONG_DATES if date in arguments]
    subprocess.run([sys.executable, "-m", "voicebot", "worker", "--burst"], check=True, timeout=60,
                   env={**os.environ, "REDIS_URL": redis_url}, capture_output=True)
    context = json.loads(client.get(f"voicebot:handoff:{report.call_sid}"))
    assert context["reason"] == "verification_failed"
    assert context["intent"]["name"] == "meterstand_doorgeven"
    assert context["identity"]["verified"] is False and context["identity"]["customer"] is None
    assert context["identity"]["attempts"] == [{"method": "customer_dob", "outcome": "no_match"}] * 3
    assert "Identiteit: niet vastgesteld." in context["summary"]
    assert not [date for date in WRONG_DATES if date in json.dumps(context)]
