"""Calls that pick up where they stopped: the engine's offer, the kept state in a real Redis, a
live call session whose stream breaks, and a resumed call through the Twilio emulator against a
real `voicebot serve` with the Korean model.

The Korean calls run on ``ko_resume``: the Korean test flow (tests/data/ko.yaml) with an intent
menu before the number, since only a call with an intent is offered again. It is derived from
ko.yaml here rather than kept as a copy, so the two never drift apart.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import yaml
from twilio.request_validator import RequestValidator

from conftest import _free_port
from servers import ACCOUNT, TOKEN, Server
from test_call_session import Line
from voicebot.config import load_settings
from voicebot.dialog.actions import Listen, Say, Transfer
from voicebot.dialog.context import for_agent
from voicebot.dialog.events import CallEnded, Digits, NoInput, SpeechUnavailable, Utterance
from voicebot.emulator import place_call
from voicebot.emulator.scenario import load_scenario
from voicebot.flow import load_flow, parse_flow
from voicebot.handoff.queueing import handoff_queue
from voicebot.simulator import Simulation
from voicebot.telephony.resume import remember_unfinished, take_unfinished
from voicebot.telephony.runtime import Runtime
from voicebot.web import create_app

DATA = Path(__file__).resolve().parent / "data"
REPO = DATA.parent.parent
MINI = load_flow(DATA / "mini.yaml")
WEEKDAY = "2026-11-23T10:00:00"   # a Monday, open
SUNDAY = "2026-11-22T10:00:00"
CALLER = "+31612345678"
SALT = "resume-test-salt"
OPENING = "Welkom. U spreekt met een digitale assistent."
OFFER = "U belde net over uw meterstand doorgeven. Wilt u daarmee verder gaan?"


def said(actions) -> list[str]:
    return [a.text for a in actions if isinstance(a, Say)]


def left_at_stand(flow=MINI, call_id: str = "CA-earlier") -> Simulation:
    """A call that gave its customer number and date of birth, then hung up at the meter reading."""
    s = Simulation(flow, at=WEEKDAY, call_id=call_id, caller=CALLER)
    for turn in ("meterstand doorgeven", "#1234567", "ja", "vijf maart negentienzeventig"):
        s.keys(turn[1:]) if turn.startswith("#") else s.say(turn)
    assert s.state.step == "stand" and s.state.secrets
    s.send(CallEnded("hangup"))
    return s


def call_back(earlier: dict, flow=MINI, **kw) -> Simulation:
    return Simulation(flow, at=kw.pop("at", WEEKDAY), call_id="CA-again", caller=CALLER, earlier=earlier, **kw)


# -- the engine ---------------------------------------------------------------------------------------


def test_the_offer_follows_the_opening_instead_of_the_first_question():
    again = call_back(left_at_stand().state.to_dict())
    assert said(again.opening) == [OPENING, OFFER]
    listen = again.opening[-1]
    assert isinstance(listen, Listen) and listen.max_digits == 1
    assert {"ja", "nee", "medewerker"} <= set(listen.phrases)


def test_yes_goes_on_at_the_step_it_left_with_its_values_but_no_secrets_and_no_identity():
    earlier = left_at_stand()
    stored = earlier.state.to_dict()
    stored["identity"] = {"level": "verified", "verified": True, "method": "customer_dob",
                          "customer": {"number": "1234567", "name": "A. Jansen"}, "attempts": []}
    stored["verify"] = {"step": "identificatie", "method": 1, "then": "stand"}
    stored["transcript"] = [{"who": "caller", "step": "menu", "text": f"zin {n}"} for n in range(80)]
    again = call_back(stored)
    actions = again.say("ja")
    assert said(actions) == ["Goed, we gaan verder.", "Wat is de meterstand?"]
    state = again.state
    assert state.step == "stand" and state.intent == "meterstand"
    assert state.intent_confidence == earlier.state.intent_confidence
    assert state.slots == {"klantnummer": "1234567"}
    assert state.secrets == {}
    assert getattr(state, "identity", None) in (None, {}) or not state.identity.get("verified")
    assert getattr(state, "verify", None) in (None, {})
    # The earlier call is referred to, its last entries only, and not copied into this call's transcript.
    assert state.earlier_call["call_id"] == "CA-earlier"
    assert state.earlier_call["transcript"] == stored["transcript"][-50:]
    assert not any(entry.get("text", "").startswith("zin ") for entry in state.transcript)
    again.say("twaalf")
    assert state.slots["meterstand"] == 12 and state.step == "sms_vraag"


def test_no_starts_afresh_at_the_first_question_without_the_opening():
    again = call_back(left_at_stand().state.to_dict())
    actions = again.say("nee")
    assert said(actions) == ["Waarmee kan ik u helpen?"]
    assert again.state.step == "menu" and again.state.intent is None and again.state.slots == {}
    assert again.state.earlier_call is None
    assert transfer_of(again.keys("0")).context["earlier_call"] is None


def test_no_clear_answer_after_the_retry_starts_afresh():
    again = call_back(left_at_stand().state.to_dict())
    first = again.say("qwerty zxcv")
    assert said(first) == [f"Sorry, dat heb ik niet goed verstaan. {OFFER}"]
    assert isinstance(first[-1], Listen) and again.state.resume_offer is not None
    assert said(again.send(NoInput())) == ["Waarmee kan ik u helpen?"]
    assert again.state.step == "menu" and again.state.intent is None and not again.state.ended


def test_silence_asks_the_offer_once_more():
    again = call_back(left_at_stand().state.to_dict())
    assert said(again.send(NoInput())) == [f"Ik hoorde niets. {OFFER}"]
    assert said(again.keys("1")) == ["Goed, we gaan verder.", "Wat is de meterstand?"]


@pytest.mark.parametrize("change", [
    {"intent": None}, {"flow": "energie"}, {"step": "verdwenen"}, {"intent": "verdwenen"},
    {"outcome": "transfer", "ended": True}, {"outcome": "hangup", "ended": True},
])
def test_nothing_is_offered_without_an_intent_for_another_flow_or_after_a_finished_call(change):
    stored = {**left_at_stand().state.to_dict(), **change}
    again = call_back(stored)
    assert said(again.opening) == [OPENING, "Waarmee kan ik u helpen?"]
    assert again.state.resume_offer is None and again.state.earlier_call is None


def test_nothing_is_offered_when_the_flow_turns_resuming_off():
    text = (DATA / "mini.yaml").read_text().replace("start: welkom", "start: welkom\nresume: {window_minutes: 0}")
    flow = parse_flow(text, "mini.yaml")
    again = call_back(left_at_stand(flow).state.to_dict(), flow)
    assert said(again.opening) == [OPENING, "Waarmee kan ik u helpen?"]


def test_a_closed_opening_transfers_without_an_offer():
    text = (DATA / "mini.yaml").read_text().replace("next: menu", "next: uren").replace(
        "steps:\n", "steps:\n  uren:\n    type: hours\n    open: menu\n    closed: naar_medewerker\n")
    flow = parse_flow(text, "mini.yaml")
    again = call_back(left_at_stand(flow).state.to_dict(), flow, at=SUNDAY)
    assert OFFER not in said(again.opening) and again.transfer is not None


def transfer_of(actions) -> Transfer:
    found = [a for a in actions if isinstance(a, Transfer)]
    assert found, f"no transfer in {actions}"
    return found[0]


@pytest.mark.parametrize("ask", [Digits("0"), Utterance("ik wil een medewerker")])
def test_asking_for_a_person_during_the_offer_transfers_with_the_earlier_call(ask):
    earlier = left_at_stand().state
    again = call_back(earlier.to_dict())
    context = transfer_of(again.send(ask)).context
    assert context["reason"] == "explicit_request"
    # The agent gets what was said then, without the engine's notes on each turn (the contract's keys).
    assert context["earlier_call"] == {"call_id": "CA-earlier", "transcript": for_agent(earlier.transcript)}
    assert all("understood" in e for e in earlier.transcript if e["who"] == "caller")
    assert context["slots"] == {} and context["intent"] is None     # nothing restored without a yes
    answers = [entry for entry in for_agent(earlier.transcript) if entry["who"] == "caller"]
    assert answers and not any(entry in context["transcript"] for entry in answers)


def test_the_context_of_a_resumed_call_refers_to_the_earlier_call():
    earlier = left_at_stand().state
    again = call_back(earlier.to_dict())
    again.say("ja")
    context = transfer_of(again.say("medewerker")).context
    assert context["earlier_call"]["call_id"] == "CA-earlier"
    assert context["intent"]["name"] == "meterstand" and context["slots"] == {"klantnummer": "1234567"}
    assert context["secrets_provided"] == []


def test_keypad_only_call_hears_the_notice_then_the_offer_for_keys():
    again = call_back(left_at_stand().state.to_dict(), speech=False)
    texts = said(again.opening)
    assert texts[0] == OPENING and texts[1].startswith("Ik kan u nu helaas niet verstaan.")
    assert texts[2] == f"{OFFER} Toets 1 voor ja of 2 voor nee."
    listen = again.opening[-1]
    assert isinstance(listen, Listen) and not listen.speech and listen.max_digits == 1
    resumed = again.keys("1")
    assert said(resumed)[0] == "Goed, we gaan verder." and again.state.step == "stand"
    assert said(resumed)[1:] == ["Wat is de meterstand?", "Toets het getal in, gevolgd door een hekje."]


def test_keypad_only_key_two_starts_afresh_with_the_menu_for_keys():
    again = call_back(left_at_stand().state.to_dict(), speech=False)
    texts = said(again.keys("2"))
    assert not any("niet verstaan" in text for text in texts)        # the notice is not said twice
    assert texts[0] == "Waarmee kan ik u helpen?" and texts[1].startswith("Toets 1 voor uw meterstand doorgeven")
    assert again.state.step == "menu" and again.state.intent is None


def test_speech_failing_during_the_offer_asks_it_again_for_keys():
    again = call_back(left_at_stand().state.to_dict())
    texts = said(again.send(SpeechUnavailable("gone")))
    assert texts[0].startswith("Ik kan u nu helaas niet verstaan.")
    assert texts[1] == f"{OFFER} Toets 1 voor ja of 2 voor nee."
    again.keys("1")
    assert again.state.step == "stand" and again.state.slots == {"klantnummer": "1234567"}


def test_a_reconnected_stream_during_the_offer_asks_it_again():
    again = call_back(left_at_stand().state.to_dict())
    assert said(again.engine.resume(again.state)) == [OFFER]
    again.say("ja")
    assert again.state.step == "stand"


# -- kept in Redis ------------------------------------------------------------------------------------


@pytest.fixture
def client(redis_url):
    connection = redis.Redis.from_url(redis_url)
    for key in connection.scan_iter("voicebot:unfinished:*"):
        connection.delete(key)
    yield connection
    connection.close()


def kept(client) -> list[bytes]:
    return list(client.scan_iter("voicebot:unfinished:*"))


@pytest.mark.parametrize("window", [30, 5])
def test_a_call_left_mid_flow_is_kept_for_the_window_under_a_key_without_the_number(client, window):
    text = (DATA / "mini.yaml").read_text().replace("start: welkom", f"start: welkom\nresume: {{window_minutes: {window}}}")
    flow = parse_flow(text, "mini.yaml")
    left = left_at_stand(flow)
    state = {**left.state.to_dict(), "identity": {"level": "verified", "verified": True}, "verify": {"step": "x"}}
    assert remember_unfinished(client, state, flow, SALT)
    [key] = kept(client)
    value = client.get(key).decode()
    assert key.decode().startswith("voicebot:unfinished:mini:")
    for number in (CALLER, CALLER.lstrip("+"), "612345678"):
        assert number not in key.decode() and number not in value
    assert set(json.loads(value)) == {"call_id", "flow", "started_at", "step", "intent", "intent_confidence",
                                      "slots", "transcript", "outcome"}
    assert left.state.secrets["geboortedatum"] not in value
    assert 0 < client.pttl(key) <= window * 60 * 1000
    assert client.pttl(key) > (window * 60 - 60) * 1000


def test_the_kept_call_is_offered_once(client):
    remember_unfinished(client, left_at_stand().state, MINI, SALT)
    earlier = take_unfinished(client, MINI, CALLER, SALT)
    assert earlier is not None and earlier["step"] == "stand" and earlier["call_id"] == "CA-earlier"
    assert said(call_back(earlier).opening) == [OPENING, OFFER]
    assert take_unfinished(client, MINI, CALLER, SALT) is None
    assert kept(client) == []


def test_another_number_or_another_flow_finds_nothing(client):
    remember_unfinished(client, left_at_stand().state, MINI, SALT)
    energie = load_flow(REPO / "flows" / "energie.yaml")
    assert take_unfinished(client, MINI, "+31612345679", SALT) is None
    assert take_unfinished(client, energie, CALLER, SALT) is None
    assert take_unfinished(client, MINI, CALLER, "another-salt") is None
    assert len(kept(client)) == 1


def _transferred() -> Simulation:
    s = Simulation(MINI, at=WEEKDAY, caller=CALLER)
    s.say("meterstand doorgeven")
    s.keys("0")
    return s


def _completed() -> Simulation:
    s = Simulation(MINI, at=WEEKDAY, caller=CALLER)
    for turn in ("meterstand doorgeven", "#1234567", "ja", "vijf maart negentienzeventig", "twaalf", "nee", "#4"):
        s.keys(turn[1:]) if turn.startswith("#") else s.say(turn)
    assert s.state.outcome == "hangup" and s.state.feedback == 4
    return s


def _hung_up_at_the_menu() -> Simulation:
    s = Simulation(MINI, at=WEEKDAY, caller=CALLER)
    s.send(CallEnded("hangup"))
    return s


def _hung_up_at_feedback() -> Simulation:
    s = Simulation(MINI, at=WEEKDAY, caller=CALLER)
    for turn in ("meterstand doorgeven", "#1234567", "ja", "vijf maart negentienzeventig", "twaalf", "nee"):
        s.keys(turn[1:]) if turn.startswith("#") else s.say(turn)
    assert s.state.step == "einde" and not s.state.ended
    return s


@pytest.mark.parametrize("call", [_transferred, _completed, _hung_up_at_feedback, _hung_up_at_the_menu])
def test_a_transferred_completed_or_topicless_call_is_not_kept(client, call):
    s = call()
    s.send(CallEnded("hangup"))             # the caller hangs up after the transfer or the goodbye
    assert not remember_unfinished(client, s.state, MINI, SALT)
    assert kept(client) == []
    assert call_back(s.state.to_dict()).state.resume_offer is None


@pytest.mark.parametrize("caller", ["anonymous", "", "+266696687", "+7378742833", "client:alice", "0612345678"])
def test_withheld_or_unusable_numbers_are_not_kept(client, caller):
    left = left_at_stand()
    left.state.caller = caller
    assert not remember_unfinished(client, left.state, MINI, SALT)
    assert take_unfinished(client, MINI, caller, SALT) is None
    assert kept(client) == []


def test_nothing_is_kept_without_a_salt_or_beyond_the_size_limit(client):
    left = left_at_stand()
    assert not remember_unfinished(client, left.state, MINI, "")
    left.state.slots["opmerking"] = "x" * 70_000
    assert not remember_unfinished(client, left.state, MINI, SALT)
    assert kept(client) == []


def test_with_redis_down_nothing_is_offered_and_the_call_goes_on(caplog):
    dead = redis.Redis(host="127.0.0.1", port=_free_port(), socket_connect_timeout=0.25, socket_timeout=0.25)
    with caplog.at_level(logging.WARNING, logger="voicebot.resume"):
        assert not remember_unfinished(dead, left_at_stand().state, MINI, SALT)
        earlier = take_unfinished(dead, MINI, CALLER, SALT)
    assert earlier is None
    assert said(call_back(earlier).opening) == [OPENING, "Waarmee kan ik u helpen?"]
    mine = [r for r in caplog.records if r.name == "voicebot.resume"]   # not another test's background thread
    assert len(mine) == 2 and CALLER not in caplog.text


# -- a live call session on the Korean flow -----------------------------------------------------------


def korean_resume_flow(directory: Path) -> Path:
    """ko_resume: ko.yaml with a menu of two intents (booking by voice or keys) before the number."""
    flow = yaml.safe_load((DATA / "ko.yaml").read_text(encoding="utf-8"))
    flow["flow"] = "ko_resume"
    flow["resume"] = {"window_minutes": 30}
    flow["intents"] = {"reserve": {"label": "예약", "examples": ["예약", "예약하고 싶어요", "예약할게요"]},
                       "cancel": {"label": "취소", "examples": ["취소", "취소하고 싶어요", "취소할게요"]}}
    steps = flow["steps"]
    del steps["booking"]
    steps["welcome"]["next"] = "menu"
    steps["menu"] = {"type": "route", "say": "예약 또는 취소", "reprompt": "예약 또는 취소 중에서 말씀해 주세요",
                     "grammar": ["예약", "취소"], "routes": {"reserve": "number", "cancel": "agent"}}
    path = directory / "ko_resume.yaml"
    path.write_text(yaml.safe_dump(flow, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


PUBLIC = "https://bot.example.com"
KOREAN_OFFER = "방금 예약 관련으로 전화하셨습니다 계속하시겠습니까"


@pytest.fixture(scope="module")
def korean_flows(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("flows")
    korean_resume_flow(directory)
    return directory


@pytest.fixture(scope="module")
def runtime(redis_url, speech_models, korean_flows, tmp_path_factory):
    settings = load_settings(REPO / "config.yaml", environ={
        "REDIS_URL": redis_url, "PUBLIC_URL": PUBLIC, "TWILIO_AUTH_TOKEN": TOKEN, "VOICEBOT_HASH_SALT": SALT})
    settings = dataclasses.replace(settings, flows_dir=korean_flows, default_flow="ko_resume",
                                   prompts=dataclasses.replace(settings.prompts,
                                                               cache_dir=tmp_path_factory.mktemp("cache")))
    return Runtime(settings, models=speech_models)


def at_the_number_question(rt: Runtime, call_sid: str) -> Line:
    """A call that picked the booking by keys and keyed in its number: now asked to confirm it."""
    line = Line(rt, call_sid, flow="ko_resume")
    for keys, then in (("1", "예약 1번"), ("1", "번호를 눌러 주세요"), ("123#", "맞습니까")):
        line.echo_marks()
        line.dtmf(keys)
        assert then in line.said()[-1]
    return line


def test_a_caller_who_hangs_up_mid_call_is_offered_to_go_on_when_calling_back(runtime, client):
    line = at_the_number_question(runtime, "CA-ko-left")
    line.send(event="stop", streamSid="MZ1", stop={"accountSid": "AC1", "callSid": "CA-ko-left"})
    assert len(kept(client)) == 1
    again = Line(runtime, "CA-ko-again", flow="ko_resume")
    assert again.said() == ["안녕하세요 디지털 상담원입니다", KOREAN_OFFER]
    assert kept(client) == []
    again.echo_marks()
    again.dtmf("1")
    assert again.said()[-2:] == ["네 계속하겠습니다", "맞습니까"]
    assert again.session.state.slots == {"number": "123"} and again.session.state.intent == "reserve"
    assert again.session.state.earlier_call["call_id"] == "CA-ko-left"


def test_a_broken_stream_is_kept_until_after_stream_hands_the_caller_to_a_person(runtime, client):
    line = at_the_number_question(runtime, "CA-ko-broken")
    line.session.on_socket_closed()                 # the socket died; the caller may be there or gone
    assert len(kept(client)) == 1
    web = create_app(runtime.settings, runtime=runtime).test_client()
    params = {"CallSid": "CA-ko-broken", "AccountSid": "AC1", "From": "+821012345678", "To": "+82200000000",
              "CallStatus": "in-progress"}
    runtime.store.update("CA-ko-broken", caller="+821012345678")       # as /twilio/voice stored it
    signature = RequestValidator(TOKEN).compute_signature(PUBLIC + "/twilio/after-stream", params)
    answer = web.post("/twilio/after-stream", data=params, headers={"X-Twilio-Signature": signature})
    assert b"<Dial" in answer.data or b"<Enqueue" in answer.data     # the caller was there: a person takes over
    assert kept(client) == []


def test_a_call_that_reached_a_person_is_not_kept(runtime, client):
    line = at_the_number_question(runtime, "CA-ko-agent")
    line.echo_marks()
    line.dtmf("0")
    line.echo_marks()
    line.send(event="stop", streamSid="MZ1", stop={"accountSid": "AC1", "callSid": "CA-ko-agent"})
    assert runtime.store.get("CA-ko-agent")["ending"]["action"] == "transfer"
    assert kept(client) == []


# -- end to end: two calls through the Twilio emulator --------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory, redis_url, korean_flows):
    srv = Server(tmp_path_factory.mktemp("resume-e2e"), redis_url, "resume", flows=korean_flows,
                 default_flow="ko_resume", environ={"VOICEBOT_HASH_SALT": SALT})
    yield srv
    srv.stop()


def scripted_call(server, name: str, redis_url: str):
    scenario = load_scenario(DATA / "calls" / name)
    expect = scenario.pop("expect")
    return place_call(server.url, scenario.pop("turns"), auth_token=TOKEN, account_sid=ACCOUNT, max_seconds=60,
                      expect=expect, redis_url=redis_url, **scenario)


def test_a_resumed_call_through_the_emulator_goes_on_at_the_step_it_left(server, client, redis_url):
    first = scripted_call(server, "ko_resume_left.yaml", redis_url)
    assert first.passed, (first.failures, first.events)
    deadline = time.monotonic() + 10          # the hang-up is stored by the stream's thread
    while not kept(client):
        assert time.monotonic() < deadline, server.output()[-3000:]
        time.sleep(0.05)

    second = scripted_call(server, "ko_resume_back.yaml", redis_url)
    assert second.passed, (second.failures, second.events)
    prompts = second.bot_prompts
    assert prompts == ["안녕하세요 디지털 상담원입니다", KOREAN_OFFER, "네 계속하겠습니다", "맞습니까",
                       "상담원에게 연결해 드리겠습니다"]
    assert kept(client) == []

    # The agent's context names the earlier call and carries what was given in it.
    connection = redis.Redis.from_url(redis_url)
    job = handoff_queue(connection, "handoff").fetch_job(f"handoff-{second.call_sid}")
    assert job is not None
    subprocess.run([sys.executable, "-m", "voicebot", "worker", "--burst"], check=True, timeout=60,
                   env={**os.environ, "REDIS_URL": redis_url}, capture_output=True)
    context = json.loads(connection.get(f"voicebot:handoff:{second.call_sid}"))
    assert context["earlier_call"]["call_id"] == first.call_sid
    assert any(entry.get("text") == "예약" for entry in context["earlier_call"]["transcript"])
    assert context["intent"]["name"] == "reserve" and context["slots"] == {"number": "123", "ok": False}

    # Offered once: a third call from the number starts afresh.
    third = place_call(server.url, [{"hangup": True}], auth_token=TOKEN, account_sid=ACCOUNT, voice="ko",
                       caller=load_scenario(DATA / "calls" / "ko_resume_left.yaml")["caller"], max_seconds=60,
                       redis_url=redis_url)
    assert third.bot_prompts == ["안녕하세요 디지털 상담원입니다", "예약 또는 취소"]
