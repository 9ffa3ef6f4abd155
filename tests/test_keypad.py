"""Calls without speech recognition, and failures on our side, through the pure engine.

Only the engine decides what a caller hears: the keypad notice, the numbered route menu, the key
wording of every question, and the handover when our own machinery breaks.
"""

import datetime as dt
import json
from pathlib import Path

import pytest

from demo_customers import JAN_BIRTH_KEYS, JAN_NUMBER, demo_identity
from voicebot.dialog import keypad
from voicebot.dialog.actions import Hangup, Listen, Say, SendSms, Transfer
from voicebot.dialog.engine import DialogEngine
from voicebot.dialog.events import (
    CallEnded, CallStarted, SpeechUnavailable, SystemFailure, Utterance,
)
from voicebot.dialog.state import CallState
from voicebot.dialog.sentences import static_sentences
from voicebot.errors import FlowError
from voicebot.flow import load_flow, parse_flow
from voicebot.identity.service import uses_verification
from voicebot.simulator import Simulation

DATA = Path(__file__).parent / "data"
FLOWS = Path(__file__).resolve().parent.parent / "flows"
MINI = load_flow(DATA / "mini.yaml")
ENERGIE = load_flow(FLOWS / "energie.yaml")
WEBSHOP = load_flow(FLOWS / "webshop.yaml")
WEEKDAY = "2026-11-23T10:00:00"   # a Monday, open
NOTICE_NL = MINI.msg("speech_unavailable")
MINI_MENU = ("Toets 1 voor uw meterstand doorgeven, toets 2 voor een storing melden, "
             "toets 3 voor de openingstijden weten, of toets 0 voor een medewerker.")


def keys_call(flow=MINI, **kw) -> Simulation:
    """A call by keys; on a flow that verifies callers, the demo customers answer its checks."""
    if uses_verification([flow]):
        kw.setdefault("identity", demo_identity(flow))
    return Simulation(flow, at=kw.pop("at", WEEKDAY), speech=False, **kw)


def texts(actions) -> list[str]:
    return [a.text for a in actions if isinstance(a, Say)]


def said(actions) -> str:
    return " ".join(texts(actions))


def listen(actions) -> Listen:
    assert isinstance(actions[-1], Listen), actions
    return actions[-1]


def transfer(actions) -> Transfer:
    found = [a for a in actions if isinstance(a, Transfer)]
    assert found, f"no transfer in {actions}"
    return found[0]


# -- the notice ------------------------------------------------------------------------------------

def test_notice_comes_once_after_the_opening_and_before_the_first_question():
    s = keys_call()
    assert texts(s.opening) == ["Welkom. U spreekt met een digitale assistent.", NOTICE_NL,
                                "Waarmee kan ik u helpen?", MINI_MENU]
    assert listen(s.opening) == Listen(step="menu", speech=False, dtmf=True, phrases=(),
                                       no_input_timeout=6.0, max_digits=1)
    assert s.state.keypad_only
    later = s.keys("1")
    assert NOTICE_NL not in said(later)


def test_a_call_with_speech_hears_no_notice():
    s = Simulation(MINI, at=WEEKDAY)
    assert NOTICE_NL not in said(s.opening)
    assert not s.state.keypad_only and listen(s.opening).speech


def test_notice_tells_to_use_keys_and_that_0_reaches_a_person():
    for flow in (ENERGIE, WEBSHOP):
        notice = flow.msg("speech_unavailable").lower()
        assert ("toets" in notice or "keys" in notice) and "0" in notice


def test_new_state_says_nothing_and_start_uses_it():
    engine = DialogEngine(MINI)
    event = CallStarted(call_id="c1", caller="+31612345678", at=WEEKDAY, speech=False)
    state = engine.new_state(event)
    assert (state.call_id, state.step, state.keypad_only, state.transcript) == ("c1", None, True, [])
    started, actions = engine.start(event)
    assert started.keypad_only and started.step == "menu" and NOTICE_NL in texts(actions)
    assert engine.handle(started, event) == []


# -- the route menu --------------------------------------------------------------------------------

def test_a_key_picks_the_nth_route_with_full_confidence():
    s = keys_call()
    actions = s.keys("2")
    assert (s.state.intent, s.state.intent_confidence, s.state.step) == ("storing", 1.0, "postcode")
    assert listen(actions).speech is False


def test_routes_that_only_reach_a_person_are_left_to_key_0():
    menu = keypad.menu_text(ENERGIE, ENERGIE.step("menu"))
    assert menu == ("Toets 1 voor uw meterstand doorgeven, toets 2 voor een storing melden, toets 3 voor onze "
                    "openingstijden weten, toets 4 voor uw termijnbedrag wijzigen, toets 5 voor uw verhuizing "
                    "doorgeven, toets 6 voor een vraag stellen over uw factuur, of toets 0 voor een medewerker.")
    assert keypad.menu_routes(ENERGIE, ENERGIE.step("menu"))[-1] == "factuur_vraag"
    english = keypad.menu_text(WEBSHOP, WEBSHOP.step("menu"))
    assert english.startswith("Press 1 to track your parcel, press 2 to return an item")
    assert english.endswith("or press 0 for an agent.") and "speak to an agent" not in english


def test_a_route_that_only_lists_the_topics_is_not_on_the_menu():
    """"What can I ask?" answers with the list of topics and asks again; by keys the menu is that list."""
    for flow, intent in ((ENERGIE, "wat_kan_ik"), (WEBSHOP, "what_can_i_do")):
        step = flow.step("menu")
        assert intent in step.routes and intent not in keypad.menu_routes(flow, step)
        assert flow.spec.intents[intent].label not in keypad.menu_text(flow, step)
    intents = "".join(f"  i{n}: {{label: onderwerp {n}, examples: [onderwerp {n}, over {n}, vraag {n}]}}\n"
                      for n in (1, 2))
    flow = parse_flow(
        "flow: uitleg\nlanguage: nl\nstart: welkom\n"
        f"intents:\n{intents}"
        "steps:\n"
        "  welkom: {type: say, say: U spreekt met een digitale assistent., next: menu}\n"
        "  menu: {type: route, say: Waarmee kan ik u helpen, reprompt: Noem een onderwerp.,\n"
        "         routes: {i1: uitleg, i2: tip}}\n"
        "  uitleg: {type: say, say: Een uitleg., next: klaar}\n"
        "  tip: {type: say, say: Een tip., next: welkom}\n"
        "  klaar: {type: hangup, say: Tot ziens.}\n", "uitleg.yaml")
    # Says something and goes on elsewhere: a choice. Only says things on its way back (tip, welkom): none.
    assert keypad.menu_routes(flow, flow.step("menu")) == ["i1"]


def test_a_wrong_key_is_asked_again_with_the_menu_then_handed_over():
    s = keys_call()
    again = s.keys("7")
    assert said(again) == f"{MINI.msg('invalid_key')} {MINI_MENU}"
    assert s.state.step == "menu" and listen(again).max_digits == 1
    assert s.state.failures[-1]["kind"] == "invalid_key"
    t = transfer(s.keys("4"))
    assert t.reason == "low_confidence" and t.context["keypad_only"] is True


def test_silence_at_the_menu_repeats_the_menu():
    s = keys_call()
    assert said(s.silence()) == f"{MINI.msg('no_input')} {MINI_MENU}"


@pytest.mark.parametrize("turns", [[], ["1"], ["1", "1234567"]], ids=["menu", "ask", "confirmation"])
def test_key_0_reaches_a_person_by_keypad(turns):
    s = keys_call()
    for keys in turns:
        s.keys(keys)
    t = transfer(s.keys("0"))
    assert t.reason == "explicit_request" and s.ended


def test_keys_at_the_open_question_bring_the_menu_and_stay_for_that_step():
    s = Simulation(MINI, at=WEEKDAY)
    actions = s.keys("3")
    assert texts(actions) == [MINI_MENU]
    assert s.state.keys_menu and not s.state.keypad_only and s.state.misses == 0
    assert listen(actions).speech is True and listen(actions).max_digits == 1
    assert said(s.silence()) == f"{MINI.msg('no_input')} {MINI_MENU}"
    s.keys("1")
    assert s.state.intent == "meterstand" and s.state.step == "klantnummer"
    assert not s.state.keys_menu


def test_speech_still_routes_while_the_menu_is_offered():
    s = Simulation(MINI, at=WEEKDAY)
    s.keys("5")
    s.say("ik heb een storing")
    assert s.state.intent == "storing"


def test_more_than_nine_routes_offer_the_first_nine_and_leave_the_rest_to_key_0():
    intents = "".join(f"  i{n}:\n    label: onderwerp {n}\n    examples: [onderwerp {n}, vraag over ding {n}]\n"
                      for n in range(1, 12))
    routes = "".join(f"      i{n}: klaar\n" for n in range(1, 12))
    flow = parse_flow(
        "flow: groot\nlanguage: nl\nstart: welkom\n"
        f"intents:\n{intents}"
        "steps:\n"
        "  welkom: {type: say, say: U spreekt met een digitale assistent., next: menu}\n"
        "  menu:\n    type: route\n    say: Waarmee kan ik u helpen\n    reprompt: Noem een onderwerp.\n"
        f"    routes:\n{routes}"
        "  klaar: {type: hangup, say: Tot ziens.}\n", "groot.yaml")
    menu = keypad.menu_text(flow, flow.step("menu"))
    assert "toets 9 voor onderwerp 9, of toets 0" in menu and "onderwerp 10" not in menu
    s = Simulation(flow, at=WEEKDAY, speech=False)
    s.keys("9")
    assert s.state.intent == "i9"


# -- questions by keys -----------------------------------------------------------------------------

def test_questions_say_what_to_press():
    s = keys_call()
    s.keys("1")
    assert said(s.keys("1234567")) == f"Ik noteer 1 2 3 4 5 6 7, klopt dat? {MINI.msg('keys_yes_no')}"
    date = s.keys("1")
    assert texts(date) == ["Wat is uw geboortedatum?", MINI.msg("keys_date")]
    assert listen(date).max_digits == 8 and not listen(date).speech
    s.keys("05031970")
    assert s.state.secrets["geboortedatum"] and "geboortedatum" not in s.state.slots


def test_a_flows_keypad_text_replaces_its_spoken_question():
    s = keys_call(ENERGIE)
    s.keys("1")
    s.keys(JAN_NUMBER)
    actions = s.keys(JAN_BIRTH_KEYS)                     # verified: on to the meter reading
    assert texts(actions) == ["Dank u, dat klopt.", "Wat is de meterstand? Toets alleen de cijfers voor de komma in, "
                              "gevolgd door een hekje."]
    assert actions[1].prompt_id == "meter_stand_keypad"
    assert listen(actions).step == "meter_stand" and listen(actions).speech is False


def test_postcode_by_keys_is_its_four_digits_marked_for_the_agent():
    s = keys_call()
    asked = s.keys("2")
    assert texts(asked) == ["Wat is uw postcode?", MINI.msg("keys_postcode")]
    assert listen(asked).max_digits == 4
    assert "niet goed verstaan" in said(s.keys("123"))     # three keys are not a postcode
    t = transfer(s.keys("1234"))
    assert s.state.slots["postcode"] == "1234"
    assert any(e.get("digits") == "1234 **" for e in s.state.transcript), s.state.transcript
    assert t.context["partial_slots"] == ["postcode"] and t.context["keypad_only"] is True
    assert "postcode 1234 (alleen de cijfers, ingetoetst)" in t.context["summary"]


def test_a_postcode_never_starts_with_0():
    step = MINI.step("postcode")
    assert keypad.from_keys(step, "0123") is None and keypad.from_keys(step, "1234") == "1234"
    assert keypad.from_keys(step, "12345") is None
    assert keypad.is_partial_postcode("1234") and not keypad.is_partial_postcode("1234 AB")


IDENTITY = parse_flow(
    "flow: identiteit\nlanguage: nl\nstart: welkom\n"
    "steps:\n"
    "  welkom: {type: say, say: U spreekt met een digitale assistent., next: nummer}\n"
    "  nummer: {type: ask, slot: klantnummer, slot_type: digits, length: [6, 8], say: 'Uw klantnummer?', next: geboren}\n"
    "  geboren: {type: ask, slot: geboortedatum, slot_type: birth_date, secret: true, say: 'Uw geboortedatum?',"
    " next: huis}\n"
    "  huis: {type: ask, slot: huisnummer, slot_type: house_number, say: 'Uw huisnummer?', next: pin}\n"
    "  pin: {type: ask, slot: pincode, slot_type: pin, secret: true, input: dtmf, say: Toets uw pincode., next: klaar}\n"
    "  klaar: {type: hangup, say: Dank u.}\n", "identiteit.yaml")
CALL_DAY = dt.date(2026, 11, 23)


def test_a_birth_date_is_keyed_as_eight_or_six_digits_and_lies_in_the_past():
    step = IDENTITY.step("geboren")
    assert keypad.max_digits(step) == 8
    assert keypad.from_keys(step, "12031975", today=CALL_DAY) == dt.date(1975, 3, 12)
    assert keypad.from_keys(step, "120375", today=CALL_DAY) == dt.date(1975, 3, 12)
    assert keypad.from_keys(step, "241126", today=CALL_DAY) == dt.date(1926, 11, 24)   # not next year
    for keys in ("31021975", "12131975", "1203197", "12032030", "12031975*", ""):
        assert keypad.from_keys(step, keys, today=CALL_DAY) is None, keys
    assert keypad.key_hint(IDENTITY, step) == IDENTITY.msg("keys_date")


def test_a_pin_is_4_to_8_keys_ending_by_itself_at_its_longest():
    step = IDENTITY.step("pin")
    assert keypad.max_digits(step) == 8 and keypad.digits_for("pin", (4, 4)) == 4
    assert keypad.from_keys(step, "1234") == "1234" and keypad.from_keys(step, "12345678") == "12345678"
    assert keypad.from_keys(step, "123") is None and keypad.from_keys(step, "123456789") is None
    assert keypad.value_from_keys("pin", "12345", length=(4, 4)) is None
    assert keypad.key_hint(IDENTITY, step) == IDENTITY.msg("keys_digits")


def test_a_house_number_is_keyed_as_its_digits_and_ends_with_the_finish_key():
    step = IDENTITY.step("huis")
    assert keypad.max_digits(step) is None
    assert keypad.from_keys(step, "12") == "12" and keypad.from_keys(step, "012") is None
    assert keypad.from_keys(step, "123456") is None


def test_keys_that_are_not_ascii_digits_are_no_answer():
    for kind in ("digits", "number", "pin", "birth_date", "house_number", "postcode", "yes_no"):
        for keys in ("١٢٣٤", "１２３４", "²³⁴⁵", "12 34", "1" * 40, "12*4"):
            assert keypad.value_from_keys(kind, keys, today=CALL_DAY) is None, (kind, keys)


def test_the_keys_per_slot_type_without_a_step():
    assert keypad.digits_for("birth_date") == 8 and keypad.digits_for("date") == 8
    assert keypad.digits_for("digits", (6, 10)) == 10 and keypad.digits_for("digits") is None
    assert keypad.digits_for("yes_no") == 1 and keypad.digits_for("house_number") is None
    assert keypad.value_from_keys("digits", "0612", length=(4, 4)) == "0612"
    assert keypad.value_from_keys("birth_date", "12031975", today=CALL_DAY) == dt.date(1975, 3, 12)


def test_identity_values_by_keys_keep_the_secrets_out_of_slots_and_transcript():
    s = Simulation(IDENTITY, at=WEEKDAY, speech=False)
    s.keys("12345678")
    assert listen(s.keys("12031975")).max_digits is None       # on to the house number
    s.keys("12")
    assert isinstance(s.keys("1234")[-1], Hangup)
    assert s.state.slots == {"klantnummer": "12345678", "huisnummer": "12"}
    assert set(s.state.secrets) == {"geboortedatum", "pincode"}
    shown = json.dumps(s.state.transcript)
    assert "12031975" not in shown and "1234" not in shown.replace("12345678", "")


def test_identity_values_by_speech_and_a_pin_only_by_keys():
    s = Simulation(IDENTITY, at=WEEKDAY)
    s.say("eh vier twee drie nul nul één")
    s.say("twaalf drie vijfenzeventig")
    s.say("twaalf a")
    assert s.state.slots == {"klantnummer": "423001", "huisnummer": "12A"}
    assert "geboortedatum" in s.state.secrets
    missed = s.say("een twee drie vier")                       # a PIN said aloud is not taken
    assert "niet goed verstaan" in said(missed) and "pincode" not in s.state.secrets
    assert isinstance(s.keys("1234")[-1], Hangup) and "pincode" in s.state.secrets
    shown = json.dumps(s.state.transcript, ensure_ascii=False)
    assert "vijfenzeventig" not in shown and "een twee drie vier" not in shown


def test_a_text_slot_cannot_be_keyed_and_goes_to_a_person():
    flow = parse_flow(
        "flow: vrij\nlanguage: nl\nstart: welkom\n"
        "steps:\n"
        "  welkom: {type: say, say: U spreekt met een digitale assistent., next: vraag}\n"
        "  vraag: {type: ask, slot: vraag, slot_type: text, say: Vertel uw vraag., next: klaar}\n"
        "  klaar: {type: hangup, say: Tot ziens.}\n", "vrij.yaml")
    s = Simulation(flow, at=WEEKDAY, speech=False)
    t = transfer(s.opening)
    assert t.reason == "no_speech" and NOTICE_NL not in said(s.opening)
    spoken = Simulation(flow, at=WEEKDAY)
    t = transfer(spoken.send(SpeechUnavailable("model gone")))
    assert t.reason == "no_speech"


# -- speech lost mid-call --------------------------------------------------------------------------

def test_speech_lost_at_a_question_says_the_notice_and_asks_again_for_keys():
    s = Simulation(MINI, at=WEEKDAY)
    s.say("meterstand doorgeven")
    s.say("blub")                                 # one miss already
    actions = s.send(SpeechUnavailable("recogniser failed"))
    assert texts(actions)[0] == NOTICE_NL
    assert texts(actions)[1:] == ["Wat is uw klantnummer?", MINI.msg("keys_digits")]
    assert listen(actions).speech is False and s.state.keypad_only and s.state.misses == 1
    assert s.state.failures[-1] == {"step": "klantnummer", "kind": "speech_unavailable",
                                    "detail": "recogniser failed"}
    assert s.send(SpeechUnavailable()) == []      # said once
    s.keys("1234567")
    s.keys("1")
    assert s.state.slots["klantnummer"] == "1234567"


def test_speech_lost_at_the_route_step_reads_the_menu():
    s = Simulation(MINI, at=WEEKDAY)
    actions = s.send(SpeechUnavailable())
    assert texts(actions) == [NOTICE_NL, "Waarmee kan ik u helpen?", MINI_MENU]
    s.keys("3")
    assert s.state.intent == "openingstijden"


def test_speech_lost_during_a_confirmation_keeps_it_pending():
    s = Simulation(MINI, at=WEEKDAY)
    s.say("meterstand doorgeven")
    s.say("een twee drie vier vijf zes zeven")
    assert s.state.pending
    actions = s.send(SpeechUnavailable())
    assert texts(actions) == [NOTICE_NL, f"Ik noteer 1 2 3 4 5 6 7, klopt dat? {MINI.msg('keys_yes_no')}"]
    assert listen(actions) == Listen(step="klantnummer", speech=False, no_input_timeout=6.0, max_digits=1)
    assert s.state.pending
    s.keys("1")
    assert s.state.slots["klantnummer"] == "1234567" and s.state.step == "geboortedatum"


def test_speech_lost_after_the_end_or_before_the_start_says_nothing():
    s = Simulation(MINI, at=WEEKDAY)
    s.send(CallEnded())
    assert s.send(SpeechUnavailable()) == []
    engine = DialogEngine(MINI)
    state = engine.new_state(CallStarted(call_id="c2", at=WEEKDAY))
    assert engine.handle(state, SpeechUnavailable()) == [] and state.keypad_only


# -- failures on our side --------------------------------------------------------------------------

def test_failure_before_the_first_step_hands_over_with_a_context():
    engine = DialogEngine(MINI)
    state = engine.new_state(CallStarted(call_id="c3", caller="+31612345678", at=WEEKDAY))
    actions = engine.handle(state, SystemFailure("no prompt audio"))
    assert [type(a) for a in actions] == [Say, Transfer]
    assert actions[0].barge_in is False and actions[0].text == MINI.msg("transfer")
    t = actions[1]
    assert (t.reason, t.queue) == ("error", MINI.spec.transfer.queue)
    assert t.context["step"] is None and t.context["call_id"] == "c3" and t.context["reason"] == "error"
    assert "technische storing" in t.context["summary"]
    assert t.context["failures"] == [{"step": None, "kind": "error", "detail": "no prompt audio"}]
    assert state.ended and state.outcome == "transfer" and state.reason == "error"
    json.dumps(t.context)


def test_failure_mid_call_carries_what_is_known():
    s = Simulation(MINI, at=WEEKDAY)
    s.say("meterstand doorgeven")
    s.keys("1234567")
    s.say("ja")
    actions = s.send(SystemFailure())
    t = transfer(actions)
    assert t.reason == "error" and actions[0].barge_in is False
    assert t.context["intent"]["name"] == "meterstand" and t.context["slots"] == {"klantnummer": "1234567"}
    assert t.context["step"] == "geboortedatum"


def test_failure_after_the_end_does_nothing():
    s = keys_call()
    s.keys("0")
    assert s.ended
    assert s.send(SystemFailure("late")) == []


def test_failure_after_hours_goes_to_the_closed_queue():
    s = Simulation(ENERGIE, at="2026-11-22T23:00:00")
    t = transfer(s.send(SystemFailure()))
    assert t.queue == "terugbellen" and t.context["after_hours"] is True


# -- state ---------------------------------------------------------------------------------------

def test_keypad_state_round_trips_and_old_states_load():
    s = keys_call()
    s.keys("1")
    data = json.loads(json.dumps(s.state.to_dict()))
    again = CallState.from_dict(data)
    assert again.keypad_only and again == s.state
    old = {k: v for k, v in data.items() if k not in ("keypad_only", "keys_menu")}
    assert CallState.from_dict(old).keypad_only is False


def test_resuming_without_speech_switches_a_spoken_call_to_keys():
    s = Simulation(ENERGIE, at=WEEKDAY)
    s.say("ik wil mijn meterstand doorgeven")
    engine = DialogEngine(ENERGIE)
    state = CallState.from_dict(s.state.to_dict())
    actions = engine.resume(state, speech=False)
    assert texts(actions)[0] == ENERGIE.msg("speech_unavailable") and "Toets de cijfers in" in said(actions)
    assert state.keypad_only and listen(actions).speech is False
    assert engine.resume(CallState.from_dict(state.to_dict()), speech=False)[0].text != texts(actions)[0]


def test_resuming_a_keypad_call_asks_for_keys():
    s = keys_call(ENERGIE)
    s.keys("1")
    engine = DialogEngine(ENERGIE)
    state = CallState.from_dict(s.state.to_dict())
    actions = engine.resume(state)
    assert "Toets de cijfers in" in said(actions) and listen(actions).speech is False


# -- whole calls by keypad through the shipped flows ---------------------------------------------

def run_keys(flow, keys: list[str]) -> tuple[Simulation, list]:
    s = keys_call(flow)
    every = list(s.opening)
    for k in keys:
        every += s.keys(k)
    return s, every


@pytest.mark.parametrize("flow, keys, slots, ending", [
    (ENERGIE, ["1", JAN_NUMBER, JAN_BIRTH_KEYS, "12345", "1", "1", "5"],
     {"customer_number": JAN_NUMBER, "meterstand": 12345, "sms_samenvatting": True}, "hangup"),
    (ENERGIE, ["4", JAN_NUMBER, JAN_BIRTH_KEYS, "95", "1", "2", "4"],
     {"customer_number": JAN_NUMBER, "bedrag": 95, "nog_iets": False}, "hangup"),
    (ENERGIE, ["5", "01042027", "1", "1234", "1"], {"verhuisdatum": "2027-04-01", "nieuwe_postcode": "1234"},
     "transfer"),
    (ENERGIE, ["3", "1", "6", "2", "3"], {"nog_iets": False}, "hangup"),
    (WEBSHOP, ["1", "12345678", "1", "1", "2", "5"],
     {"order_number": "12345678", "tracking_sms": True, "anything_else": False}, "hangup"),
    (WEBSHOP, ["2", "12345678", "1", "3", "2", "2", "4"], {"return_reason": "other"}, "hangup"),
    (WEBSHOP, ["3", "12345678", "1", "12062027", "1", "2", "3"], {"delivery_date": "2027-06-12"}, "hangup"),
    (WEBSHOP, ["4", "1", "5", "2", "1"], {"anything_else": False}, "hangup"),
], ids=["energie-meterstand", "energie-termijn", "energie-verhuizing", "energie-info",
        "webshop-track", "webshop-return", "webshop-change", "webshop-info"])
def test_shipped_flows_complete_by_keypad_alone(flow, keys, slots, ending):
    s, actions = run_keys(flow, keys)
    assert s.ended, "\n".join(texts(actions))
    assert {k: s.state.slots.get(k) for k in slots} == slots
    assert all(not a.speech for a in actions if isinstance(a, Listen))
    last = [a for a in actions if isinstance(a, (Hangup, Transfer))][-1]
    assert isinstance(last, Hangup if ending == "hangup" else Transfer)
    if ending == "hangup":
        assert s.state.outcome == "hangup" and s.state.feedback
    spoken = said(actions).lower()
    for speech_word in ("zeg ", "zegt u", "noem", "say the", "say or"):
        assert speech_word not in spoken, speech_word


def test_every_listening_step_of_the_shipped_flows_has_a_keypad_wording():
    for flow in (ENERGIE, WEBSHOP):
        for step_id, step in flow.spec.steps.items():
            if step.type in ("route", "ask", "feedback"):
                assert keypad.keyable(step), step_id
                wording = keypad.own_text(flow, step_id) or (keypad.key_hint(flow, step), None)
                assert wording[0], step_id


def test_sms_in_keypad_mode_masks_the_keyed_postcode():
    # mini.yaml with a text message after the postcode (the shipped flows send none after one)
    text = (DATA / "mini.yaml").read_text().replace(
        "    say: Wat is uw postcode?\n    next: open\n",
        "    say: Wat is uw postcode?\n    next: storing_sms\n"
        "  storing_sms:\n    type: sms\n    say: De samenvatting is verstuurd.\n    next: open\n")
    s, actions = run_keys(parse_flow(text, "mini.yaml"), ["2", "1234"])
    sms = [a for a in actions if isinstance(a, SendSms)]
    assert s.state.slots["postcode"] == "1234"
    assert sms and "postcode 1234 **" in sms[0].text


# -- validation ------------------------------------------------------------------------------------

def test_keypad_text_placeholders_are_checked(tmp_path):
    text = (DATA / "mini.yaml").read_text().replace(
        "    say: Wat is de meterstand?\n", "    say: Wat is de meterstand?\n    keypad: Toets {onbekend} in.\n", 1)
    path = tmp_path / "k.yaml"
    path.write_text(text)
    with pytest.raises(FlowError) as info:
        load_flow(path)
    assert any("onbekend" in str(p) for p in info.value.problems)


def test_the_keypad_opening_must_disclose_too(tmp_path):
    text = (DATA / "mini.yaml").read_text().replace(
        "    say: Welkom. U spreekt met een digitale assistent.\n",
        "    say: Welkom. U spreekt met een digitale assistent.\n    keypad: Welkom.\n", 1)
    path = tmp_path / "k.yaml"
    path.write_text(text)
    with pytest.raises(FlowError) as info:
        load_flow(path)
    assert any("keypad" in str(p) for p in info.value.problems)


def test_utterance_event_still_understood_on_a_keypad_call():
    # A keypad call has no recogniser, but an adapter that sends text anyway is not ignored.
    s = keys_call()
    s.send(Utterance("ik heb een storing"))
    assert s.state.intent == "storing"


def test_static_texts_cover_what_a_keypad_call_hears_without_slot_values():
    static = {text for text, _ in static_sentences(ENERGIE)}
    s, actions = run_keys(ENERGIE, ["1", JAN_NUMBER, JAN_BIRTH_KEYS, "12345", "1", "1", "5"])
    with_values = ("12345", "Dank u wel")   # read-backs and texts with slot values or the goodbye
    fixed = [t for t in texts(actions) if not any(v in t for v in with_values)]
    assert len(fixed) >= 8
    assert [t for t in fixed if t not in static] == []
    again, _ = run_keys(ENERGIE, ["1", JAN_NUMBER])
    assert again.state.step == "identificatie"
    assert said(again.keys("12")) in static                 # a wrong entry (no date of birth) asked again


def test_text_chat_can_simulate_a_keypad_call():
    import io

    from voicebot.simulator import chat

    lines = iter(["ik wil mijn meterstand doorgeven", "#1", "#0"])
    out = io.StringIO()
    state = chat(MINI, caller="+31612345678", at=WEEKDAY, read=lambda _: next(lines), out=out, keypad=True)
    text = out.getvalue()
    assert "Keypad call" in text and NOTICE_NL in text and "type keys" in text
    assert state.intent == "meterstand" and state.outcome == "transfer" and state.reason == "explicit_request"


def test_a_state_never_started_answers_nothing_but_a_failure():
    engine = DialogEngine(MINI)
    state = engine.new_state(CallStarted(call_id="c4", at=WEEKDAY))
    assert engine.handle(state, Utterance("meterstand")) == [] and not state.ended
    assert transfer(engine.handle(state, SystemFailure())).reason == "error"
