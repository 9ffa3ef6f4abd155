"""When no agent takes a transferred call (the agent's leg not answered, busy, failed or canceled, or
a transfer after hours): the caller is told, offered a call back (delivered through the handoff
queue as a call-back task) or a text message, and the call ends politely. Through the Flask app with
signed webhooks, a real Redis, a real RQ worker, and the real twilio REST client pointed at a local
server for the text message. Also the queue pick-up document of ``<Dial><Queue url>``."""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import redis
from jsonschema import Draft202012Validator
from twilio.request_validator import RequestValidator

from fake_twilio import TwilioMessages

from voicebot.config import load_settings
from voicebot.dialog.actions import Transfer
from voicebot.dialog.events import CallStarted, Digits
from voicebot.handoff.contract import CALLBACK_REQUESTED, handoff_record
from voicebot.handoff.jobs import stream_key
from voicebot.handoff.pickups import PICKUP_CHANNEL
from voicebot.handoff.queueing import enqueue_context, job_id
from voicebot.telephony.runtime import Runtime
from voicebot.web import create_app
from voicebot.worker import run_worker

REPO = Path(__file__).resolve().parent.parent
PUBLIC = "https://bot.example.com"
TOKEN = "no-answer-auth-token"
ACCOUNT = "AC" + "2" * 32
SCHEMA = Draft202012Validator(json.loads((REPO / "docs" / "handoff.schema.json").read_text(encoding="utf-8")))
CALLER = "+31612345678"


@pytest.fixture(scope="module")
def twilio():
    with TwilioMessages(ACCOUNT) as fake:
        yield fake


@pytest.fixture(scope="module")
def settings_(redis_url, twilio, tmp_path_factory):
    settings = load_settings(REPO / "config.yaml", environ={
        "REDIS_URL": redis_url, "PUBLIC_URL": PUBLIC, "TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_ACCOUNT_SID": ACCOUNT,
        "TWILIO_API_BASE": twilio.url, "VOICEBOT_HASH_SALT": "no-answer-salt-" + "3" * 32,
        "VOICEBOT_RECORDS_URL": f"sqlite:///{tmp_path_factory.mktemp('records') / 'records.sqlite3'}"})
    return dataclasses.replace(
        settings, flows_dir=REPO / "tests" / "data", default_flow="ko_test", handoff_queue=f"test-{uuid.uuid4().hex}",
        prompts=dataclasses.replace(settings.prompts, cache_dir=tmp_path_factory.mktemp("cache")),
        telephony=dataclasses.replace(settings.telephony, agent_number="+31201234567"))


@pytest.fixture(scope="module")
def runtime(settings_):
    return Runtime(settings_)


@pytest.fixture(scope="module")
def client(settings_, runtime):
    return create_app(settings_, runtime=runtime).test_client()


@pytest.fixture
def connection(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def post(client, url: str, params: dict, *, token: str = TOKEN):
    """POST ``url`` (a public URL, as TwiML gives it) to the app, signed as Twilio signs it."""
    parts = urllib.parse.urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    signature = RequestValidator(token).compute_signature(url, params)
    return client.post(path, data=params, headers={"X-Twilio-Signature": signature})


def transferred_call(runtime, *, caller: str = CALLER, after_hours: bool = False, queue: str = "") -> str:
    """A call the ko_test engine transferred (the caller pressed 0), stored as the session stores it."""
    call_sid = "CA" + secrets.token_hex(16)
    engine = runtime.engines["ko_test"]
    state, _ = engine.start(CallStarted(call_id=call_sid, caller=caller, called="+31850000000"))
    state.intent, state.slots = None, {"booking": "reserve", "number": "4321"}
    transfer = next(a for a in engine.handle(state, Digits("0")) if isinstance(a, Transfer))
    queue = queue or f"agents-{secrets.token_hex(4)}"
    record = handoff_record({**transfer.context, "queue": queue, "after_hours": after_hours}, waited_seconds=12.0)
    runtime.store.update(call_sid, flow="ko_test", language="ko", caller=caller, called="+31850000000",
                         state=state.to_dict(),
                         ending={"action": "transfer", "queue": queue, "reason": transfer.reason, "context": record})
    return call_sid


def call_params(call_sid: str, **more: str) -> dict:
    return {"CallSid": call_sid, "AccountSid": ACCOUNT, "From": CALLER, "To": "+31850000000",
            "CallStatus": "in-progress", "Direction": "inbound", "ApiVersion": "2010-04-01", **more}


def counted(runtime, name: str, **labels: str) -> float:
    return runtime.metrics.registry.get_sample_value(name, labels) or 0.0


def wait_for(condition, seconds: float = 20.0):
    deadline = time.monotonic() + seconds
    while not (found := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return found


def offered(response) -> ET.Element:
    root = ET.fromstring(response.data)
    gather = root.find("Gather")
    assert gather is not None, response.data
    assert gather.get("input") == "dtmf" and gather.get("numDigits") == "1"
    assert gather.get("actionOnEmptyResult") == "true" and gather.get("method") == "POST"
    assert root.find("Dial") is None and root.find("Enqueue") is None
    return gather


@pytest.mark.parametrize("status", ["no-answer", "busy", "failed", "canceled"])
def test_an_agent_leg_nobody_took_is_told_and_offered_a_call_back_or_a_text(client, runtime, status):
    call_sid = transferred_call(runtime)
    before = counted(runtime, "voicebot_agent_unreachable_total", why=status)

    response = post(client, f"{PUBLIC}/twilio/dial-status", call_params(call_sid, DialCallStatus=status))

    gather = offered(response)
    assert gather.get("action") == f"{PUBLIC}/twilio/unreachable?why={status}&offer=1"
    said = gather.find("Say")
    assert said.get("language") == "ko-KR"
    assert said.text.startswith("지금은 전화를 받을 상담원이 없습니다") and "1번" in said.text and "2번" in said.text
    assert counted(runtime, "voicebot_agent_unreachable_total", why=status) == before + 1


def test_the_dial_asks_dial_status_when_the_agent_leg_ends_and_an_answered_call_just_ends(client, runtime):
    call_sid = transferred_call(runtime)
    root = ET.fromstring(post(client, f"{PUBLIC}/twilio/after-stream", call_params(call_sid)).data)
    assert root.find("Dial").get("action") == f"{PUBLIC}/twilio/dial-status"
    answered = ET.fromstring(post(client, f"{PUBLIC}/twilio/dial-status",
                                  call_params(call_sid, DialCallStatus="completed")).data)
    assert answered.find("Hangup") is not None and answered.find("Gather") is None


def test_pressing_1_books_a_call_back_delivered_through_the_handoff_queue_as_a_task(
        client, runtime, settings_, connection):
    call_sid = transferred_call(runtime)
    queue = runtime.store.get(call_sid)["ending"]["queue"]
    transfer = runtime.store.get(call_sid)["ending"]["context"]
    enqueue_context(connection, settings_.handoff_queue, transfer, keep_seconds=600)   # the transfer, delivered
    assert run_worker(settings_, burst=True) == 0
    gather = offered(post(client, f"{PUBLIC}/twilio/dial-status", call_params(call_sid, DialCallStatus="busy")))

    response = post(client, gather.get("action"), call_params(call_sid, Digits="1"))

    root = ET.fromstring(response.data)
    assert root.find("Say").text.startswith("곧 다시 전화드리겠습니다") and root.find("Hangup") is not None
    task_job = job_id(f"{call_sid}-callback")
    wait_for(lambda: connection.exists(f"rq:job:{task_job}"))          # enqueued off the request's thread
    again = post(client, gather.get("action"), call_params(call_sid, Digits="1"))   # Twilio repeats itself
    assert ET.fromstring(again.data).find("Hangup") is not None
    assert run_worker(settings_, burst=True) == 0

    entries = [json.loads(fields[b"context"]) for _, fields in connection.xrange(stream_key(queue))]
    assert [e["reason"] for e in entries] == [transfer["reason"], CALLBACK_REQUESTED]   # one task, after the card
    task = entries[1]
    assert not list(SCHEMA.iter_errors(task))
    assert task["call_id"] == call_sid and task["queue"] == queue and task["caller"] == CALLER
    assert task["failures"][-1] == {"step": transfer["step"], "kind": "agent_unreachable",
                                    "detail": {"why": "busy", "transfer_reason": transfer["reason"]}}
    assert task["summary"] == transfer["summary"] and task["slots"] == transfer["slots"]
    assert runtime.store.get(call_sid)["unreachable_choice"] == "callback"
    assert counted(runtime, "voicebot_unreachable_choices_total", choice="callback") >= 1


def test_pressing_2_texts_what_the_caller_asked(client, runtime, twilio):
    call_sid = transferred_call(runtime)
    gather = offered(post(client, f"{PUBLIC}/twilio/dial-status", call_params(call_sid, DialCallStatus="no-answer")))
    twilio.received.clear()

    root = ET.fromstring(post(client, gather.get("action"), call_params(call_sid, Digits="2")).data)

    assert root.find("Say").text.startswith("문자로 요약을 보냈습니다") and root.find("Hangup") is not None
    sent = wait_for(lambda: twilio.forms)
    assert sent[0]["To"] == [CALLER] and sent[0]["From"] == ["+31850000000"]
    body = sent[0]["Body"][0]
    assert body.startswith("통화 요약") and "number 4321" in body and "booking reserve" in body
    post(client, gather.get("action"), call_params(call_sid, Digits="2"))           # a repeated request
    time.sleep(0.5)
    assert len(twilio.received) == 1                                      # sends nothing more


def test_no_key_hears_the_offer_once_more_then_is_let_go(client, runtime, connection, settings_):
    call_sid = transferred_call(runtime)
    first = offered(post(client, f"{PUBLIC}/twilio/dial-status", call_params(call_sid, DialCallStatus="no-answer")))

    wrong = offered(post(client, first.get("action"), call_params(call_sid, Digits="7")))
    assert wrong.get("action").endswith("offer=2") and wrong.find("Say").text.startswith("없는 번호입니다")
    root = ET.fromstring(post(client, wrong.get("action"), call_params(call_sid, Digits="")).data)

    assert root.find("Gather") is None and root.find("Hangup") is not None
    assert root.find("Say").text.startswith("나중에 다시 전화해 주세요")
    assert not connection.exists(f"rq:job:{job_id(call_sid + '-callback')}")


def test_an_after_hours_transfer_offers_the_same_instead_of_a_queue_nobody_answers(client, runtime):
    call_sid = transferred_call(runtime, after_hours=True, queue="evening")
    response = post(client, f"{PUBLIC}/twilio/after-stream", call_params(call_sid))
    gather = offered(response)
    assert gather.get("action") == f"{PUBLIC}/twilio/unreachable?why=after_hours&offer=1"
    root = ET.fromstring(post(client, gather.get("action"), call_params(call_sid, Digits="1")).data)
    assert root.find("Hangup") is not None


def test_a_withheld_number_is_told_to_call_again_without_an_offer(client, runtime):
    call_sid = transferred_call(runtime, caller="anonymous")
    root = ET.fromstring(post(client, f"{PUBLIC}/twilio/dial-status",
                              call_params(call_sid, DialCallStatus="no-answer")).data)
    assert root.find("Gather") is None and root.find("Hangup") is not None
    said = root.find("Say").text
    assert said.startswith("지금은 전화를 받을 상담원이 없습니다") and "나중에 다시 전화해 주세요" in said


def test_the_choice_needs_twilios_signature_and_an_offer(client, runtime, connection):
    call_sid = transferred_call(runtime)
    url = f"{PUBLIC}/twilio/unreachable?why=busy&offer=1"
    assert post(client, url, call_params(call_sid, Digits="1"), token="not-the-token").status_code == 403
    root = ET.fromstring(post(client, url, call_params(call_sid, Digits="1")).data)   # never offered
    assert root.find("Hangup") is not None
    time.sleep(0.3)
    assert not connection.exists(f"rq:job:{job_id(call_sid + '-callback')}")
    assert "unreachable_choice" not in runtime.store.get(call_sid)


def test_a_queue_pick_up_tells_the_caller_and_announces_which_agent_call_took_it(client, runtime, connection):
    call_sid = transferred_call(runtime)
    pubsub = connection.pubsub()
    pubsub.subscribe(PICKUP_CHANNEL)
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"
    agent = "CA" + "9" * 32

    response = post(client, f"{PUBLIC}/twilio/queue-pickup",
                    call_params(call_sid, QueueSid="QU" + "1" * 32, QueueTime="42", DequeingCallSid=agent))

    root = ET.fromstring(response.data)
    assert [v.tag for v in root] == ["Say"] and root.find("Say").text == "상담원에게 연결해 드리겠습니다"
    message = pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
    pubsub.close()
    queue = runtime.store.get(call_sid)["ending"]["queue"]
    expected = {"call_id": call_sid, "agent_call": agent, "queue": queue, "queue_seconds": 42}
    assert json.loads(message["data"]) == expected
    assert runtime.store.get(call_sid)["picked_up"] == expected
    unknown = post(client, f"{PUBLIC}/twilio/queue-pickup", call_params("CA" + secrets.token_hex(16), DequeingCallSid=agent))
    assert ET.fromstring(unknown.data).find("Say") is None               # not a call of ours: nothing said


def test_a_caller_in_a_twilio_queue_leaves_it_after_the_longest_wait_and_is_offered_a_choice(client, runtime):
    from voicebot.telephony import twiml

    call_sid = transferred_call(runtime)
    enqueue = ET.fromstring(twiml.transfer(PUBLIC, call_sid, queue="agents")).find("Enqueue")
    assert enqueue.get("action") == f"{PUBLIC}/twilio/queue-left"
    assert enqueue.get("waitUrl") == f"{PUBLIC}/twilio/queue-wait"

    longest = runtime.settings.telephony.queue_max_wait_seconds
    first = ET.fromstring(post(client, f"{PUBLIC}/twilio/queue-wait", call_params(call_sid, QueueTime="0")).data)
    assert [v.tag for v in first] == ["Say", "Pause"]                  # told once, then quiet pauses
    later = ET.fromstring(post(client, f"{PUBLIC}/twilio/queue-wait", call_params(call_sid, QueueTime="60")).data)
    assert [v.tag for v in later] == ["Pause"]
    done = ET.fromstring(post(client, f"{PUBLIC}/twilio/queue-wait",
                              call_params(call_sid, QueueTime=str(longest))).data)
    assert [v.tag for v in done] == ["Leave"]
    assert post(client, f"{PUBLIC}/twilio/queue-wait", call_params(call_sid, QueueTime="0"),
                token="not-the-token").status_code == 403

    left = post(client, f"{PUBLIC}/twilio/queue-left", call_params(call_sid, QueueResult="leave"))
    gather = offered(left)
    assert gather.get("action") == f"{PUBLIC}/twilio/unreachable?why=no-answer&offer=1"
    bridged = ET.fromstring(post(client, f"{PUBLIC}/twilio/queue-left",
                                 call_params(transferred_call(runtime), QueueResult="bridged")).data)
    assert bridged.find("Gather") is None
