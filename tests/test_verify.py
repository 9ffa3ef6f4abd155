"""Verify steps through the pure engine, with the identity adapter's answers made by hand
(``Call`` does not settle checks: each ``CheckIdentity`` is answered by the test).

The flow is tests/data/verify/verify.yaml: 'meterstand' needs 'verified' (customer number and date of
birth), 'factuur' needs 'known' (caller ID first), 'rekening' asks the customer number itself and
then only the PIN, 'storing' checks house number and postcode.
"""

import json
from pathlib import Path

import pytest

from identity_fakes import ANNA, FakeDirectory
from voicebot.dialog import keypad
from voicebot.dialog.actions import CheckIdentity, Hangup, Listen, Say, Transfer
from voicebot.dialog.engine import DialogEngine
from voicebot.dialog.events import CallStarted, Digits, Event, IdentityChecked, NoInput, SpeechUnavailable, Utterance
from voicebot.dialog.state import CallState
from voicebot.flow import Flow, load_flow, parse_flow
from voicebot.flow.schema import VERIFY_METHODS
from voicebot.identity.lockout import MemoryLockout
from voicebot.identity.methods import METHODS
from voicebot.identity.service import IdentityService
from voicebot.simulator import Simulation

VERIFY_FILE = Path(__file__).parent / "data" / "verify" / "verify.yaml"
FLOW = load_flow(VERIFY_FILE)
WEEKDAY = "2026-11-23T10:00:00"
CALLER = "+31612345678"
CUSTOMER = {"number": "123456", "name": "J. de Vries"}

# What the caller says or keys; the secrets must never be found anywhere but in CheckIdentity.
BIRTH_SPOKEN = "vijf maart negentienzeventig"
BIRTH_KEYS = "05031970"
BIRTH_ISO = "1970-03-05"
POSTCODE_SPOKEN = "zevenennegentig eenendertig k l"
PIN = "9081"
SECRETS = (BIRTH_ISO, BIRTH_KEYS, "1970", "maart", "negentienzeventig", "zevenennegentig", "9731", "KL", PIN)


class Call:
    """One call on the engine alone: events in, actions out, checks left to the test."""

    def __init__(self, flow: Flow, *, caller: str, at: str, speech: bool = True, earlier: dict | None = None):
        self.engine = DialogEngine(flow)
        self.state, self.opening = self.engine.start(CallStarted(call_id="V-1", caller=caller, at=at, speech=speech,
                                                                 earlier=earlier))

    @property
    def ended(self) -> bool:
        return self.state.ended

    def send(self, event: Event) -> list:
        return self.engine.handle(self.state, event)

    def say(self, text: str) -> list:
        return self.send(Utterance(text))

    def keys(self, digits: str) -> list:
        return self.send(Digits(digits))

    def silence(self) -> list:
        return self.send(NoInput())


def sim(flow=FLOW, **kw) -> Call:
    return Call(flow, at=kw.pop("at", WEEKDAY), caller=kw.pop("caller", CALLER), **kw)


def said(actions) -> str:
    return " ".join(a.text for a in actions if isinstance(a, Say))


def check(actions) -> CheckIdentity:
    assert actions and isinstance(actions[-1], CheckIdentity), actions
    assert not any(isinstance(a, CheckIdentity) for a in actions[:-1])
    return actions[-1]


def transfer(actions) -> Transfer:
    found = [a for a in actions if isinstance(a, Transfer)]
    assert found, f"no transfer in {actions}"
    return found[0]


def answer(s: Call, method: str, outcome: str, customer=CUSTOMER):
    return s.send(IdentityChecked(method=method, outcome=outcome, customer=customer if outcome == "match" else None))


def no_secrets(*things) -> None:
    text = json.dumps(things, ensure_ascii=False, default=str)
    for secret in SECRETS:
        assert secret not in text, secret


# -- customer number and date of birth -------------------------------------------------------------

def test_customer_number_and_birth_date_pass():
    s = sim()
    actions = s.say("ik wil mijn meterstand doorgeven")
    assert "Eerst controleer ik wie u bent." in said(actions) and "klantnummer" in said(actions)
    assert s.state.step == "identificatie" and s.state.intent == "meterstand"
    s.say("een twee drie vier vijf zes")
    assert s.state.slots["customer_number"] == "123456"
    actions = s.say(BIRTH_SPOKEN)
    asked = check(actions)
    assert asked.method == "customer_dob" and asked.caller == CALLER
    assert asked.values == {"customer_number": "123456", "birth_date": BIRTH_ISO}
    assert BIRTH_ISO not in repr(asked)
    actions = answer(s, "customer_dob", "match")
    assert said(actions).startswith("Dank u, dat klopt.") and "meterstand" in said(actions)
    assert s.state.step == "stand" and s.state.verify is None
    assert s.state.identity["level"] == "verified" and s.state.identity["verified"] is True
    assert s.state.identity["customer"] == CUSTOMER and s.state.identity["method"] == "customer_dob"


def test_customer_number_and_birth_date_fail_then_pass():
    s = sim()
    s.say("meterstand doorgeven")
    s.say("een twee drie vier vijf zes")
    check(s.say(BIRTH_SPOKEN))
    actions = answer(s, "customer_dob", "no_match")
    assert said(actions) == "Dat klopt helaas niet. Wat is uw klantnummer?"   # all asked again, no value said
    assert isinstance(actions[-1], Listen) and not s.ended
    s.say("een twee drie vier vijf zeven")
    asked = check(s.say(BIRTH_SPOKEN))
    assert asked.values["customer_number"] == "123457"
    answer(s, "customer_dob", "match")
    assert s.state.step == "stand"
    assert s.state.identity["attempts"] == [{"method": "customer_dob", "outcome": "no_match"},
                                            {"method": "customer_dob", "outcome": "match"}]


def test_a_birth_date_must_lie_in_the_past_and_a_customer_number_have_its_length():
    s = sim()
    s.say("meterstand doorgeven")
    actions = s.keys("123")
    assert "niet goed verstaan" in said(actions) and s.state.slots.get("customer_number") is None
    s.keys("123456")
    actions = s.keys("05032030")                       # keyed date of birth in the future
    assert "niet goed verstaan" in said(actions) and "geboortedatum" in said(actions)
    assert not any(isinstance(a, CheckIdentity) for a in actions)


# -- house number and postcode ---------------------------------------------------------------------

def test_house_number_and_postcode_pass():
    s = sim()
    actions = s.say("ik heb een storing")
    assert "Ik controleer eerst uw adres." in said(actions) and "huisnummer" in said(actions)
    s.say("twaalf")
    assert s.state.slots["house_number"] == "12"
    asked = check(s.say(POSTCODE_SPOKEN))
    assert asked.method == "postcode_house" and asked.values == {"house_number": "12", "postcode": "9731KL"}
    t = transfer(answer(s, "postcode_house", "match"))
    assert t.queue == "storingen" and t.reason == "flow"
    ident = t.context["identity"]
    assert ident["level"] == "known" and ident["verified"] is False and ident["customer"] == CUSTOMER
    assert "Identiteit: bekend, via postcode en huisnummer." in t.context["summary"]
    no_secrets(s.state.to_dict(), t.context)


def test_a_house_number_with_a_letter_and_a_birth_date_keyed_as_six_digits():
    s = sim()
    s.say("ik heb een storing")
    s.say("twaalf a")
    assert check(s.say(POSTCODE_SPOKEN)).values["house_number"] == "12A"
    s = sim()
    s.say("meterstand doorgeven")
    s.keys("123456")
    assert check(s.keys("050370")).values["birth_date"] == BIRTH_ISO     # a two-digit year lies in the past


def test_house_number_and_postcode_fail():
    s = sim()
    s.say("ik heb een storing")
    s.say("twaalf")
    check(s.say(POSTCODE_SPOKEN))
    actions = answer(s, "postcode_house", "no_match")
    assert said(actions) == "Dat klopt helaas niet. Wat is uw huisnummer?"
    s.say("veertien")
    asked = check(s.say(POSTCODE_SPOKEN))
    assert asked.values["house_number"] == "14"


# -- PIN -------------------------------------------------------------------------------------------

def test_pin_is_keyed_and_a_customer_number_given_before_is_not_asked_again():
    s = sim()
    s.say("ik wil mijn rekeningnummer wijzigen")
    actions = s.keys("123456")                          # the flow's own ask step for customer_number
    assert s.state.step == "pin_controle" and "klantnummer" not in said(actions)
    assert "pincode" in said(actions)
    listen = actions[-1]
    assert isinstance(listen, Listen) and listen.speech is False and listen.dtmf is True
    asked = check(s.keys(PIN))
    assert asked.method == "pin" and asked.values == {"customer_number": "123456", "pin": PIN}
    actions = answer(s, "pin", "match")
    t = transfer(actions)
    assert t.queue == "administratie" and t.context["identity"]["verified"] is True
    assert said(actions).startswith("Dank u, dat klopt.")
    no_secrets(s.state.to_dict(), t.context)


def test_pin_fails_and_then_the_customer_number_is_asked_again():
    s = sim()
    s.say("ik wil mijn rekeningnummer wijzigen")
    s.keys("123456")
    check(s.keys(PIN))
    actions = answer(s, "pin", "no_match")
    assert said(actions) == "Dat klopt helaas niet. Wat is uw klantnummer?"
    s.keys("654321")
    asked = check(s.keys(PIN))
    assert asked.values == {"customer_number": "654321", "pin": PIN}


def test_a_pin_said_aloud_is_not_taken():
    s = sim()
    s.say("ik wil mijn rekeningnummer wijzigen")
    s.keys("123456")
    actions = s.say("negen nul acht een")
    assert "niet goed verstaan" in said(actions) and "Zeg hem niet hardop" in said(actions)
    assert not any(isinstance(a, CheckIdentity) for a in actions)
    heard = [e for e in s.state.transcript if e["who"] == "caller" and e["step"] == "pin_controle"]
    assert heard == [{"who": "caller", "step": "pin_controle", "text": "[verborgen]", "confidence": 1.0,
                      "understood": {"result": "not_understood", "intent": None, "confidence": None}}]


# -- caller ID -------------------------------------------------------------------------------------

def test_caller_id_is_checked_without_asking_and_a_match_goes_on_silently():
    s = sim()
    actions = s.say("ik heb een vraag over mijn factuur")
    asked = check(actions)
    assert asked.method == "caller_id" and asked.values == {} and asked.caller == CALLER
    assert not isinstance(actions[-2], Listen)
    actions = answer(s, "caller_id", "match")
    t = transfer(actions)
    assert t.queue == "facturen" and "klopt" not in said(actions)      # nothing was asked: nothing to confirm
    assert t.context["identity"] == {"verified": False, "level": "known", "method": "caller_id",
                                     "customer": CUSTOMER, "attempts": [{"method": "caller_id", "outcome": "match"}]}


def test_caller_id_no_match_goes_on_to_the_next_method_without_a_word():
    s = sim()
    s.say("ik heb een vraag over mijn factuur")
    actions = answer(s, "caller_id", "no_match")
    assert said(actions) == "Wat is uw klantnummer?" and "klopt" not in said(actions)
    s.say("een twee drie vier vijf zes")
    check(s.say(BIRTH_SPOKEN))
    t = transfer(answer(s, "customer_dob", "match"))
    assert t.queue == "facturen" and t.context["identity"]["level"] == "verified"


def test_no_caller_id_check_without_a_calling_number():
    s = sim(caller="anonymous")
    actions = s.say("ik heb een vraag over mijn factuur")
    assert not any(isinstance(a, CheckIdentity) for a in actions) and "klantnummer" in said(actions)


SPOOF_FLOW = parse_flow(VERIFY_FILE.read_text().replace(
    "  factuur_vraag:\n    type: transfer\n    queue: facturen\n    say: Ik verbind u door met de afdeling facturen.\n",
    "  factuur_vraag:\n    type: say\n    say: Uw factuur is onderweg.\n    next: menu\n"), "spoof.yaml")


def test_a_spoofed_caller_id_cannot_reach_an_intent_that_needs_verified():
    s = sim(SPOOF_FLOW)
    s.say("ik heb een vraag over mijn factuur")
    actions = answer(s, "caller_id", "match")          # the spoofed number belongs to a customer
    assert s.state.step == "menu" and s.state.identity["level"] == "known"
    assert "Uw factuur is onderweg." in said(actions)
    actions = s.say("ik wil mijn meterstand doorgeven")
    assert s.state.step == "identificatie" and "klantnummer" in said(actions)
    assert not any(isinstance(a, CheckIdentity) for a in actions)     # no second caller ID check
    assert answer(s, "caller_id", "match") == []                       # an answer nobody asked for
    assert s.state.identity["level"] == "known" and s.state.identity["verified"] is False
    t = transfer(s.say("medewerker"))
    assert t.context["identity"]["verified"] is False and t.context["identity"]["level"] == "known"


def test_a_method_that_cannot_raise_the_level_is_not_tried():
    flow = parse_flow(VERIFY_FILE.read_text().replace("caller_id: known,", "caller_id: none,"), "weak.yaml")
    s = sim(flow)
    actions = s.say("ik heb een vraag over mijn factuur")
    assert not any(isinstance(a, CheckIdentity) for a in actions)     # cannot raise the level: not tried
    assert "klantnummer" in said(actions)


# -- attempts, lockout, a directory that cannot answer ---------------------------------------------

def test_max_attempts_hands_over_unverified_with_what_was_tried():
    s = sim()
    s.say("meterstand doorgeven")
    for attempt in range(3):
        s.say("een twee drie vier vijf zes")
        check(s.say(BIRTH_SPOKEN))
        actions = answer(s, "customer_dob", "no_match")
        if attempt < 2:
            assert not s.ended
    t = transfer(actions)
    assert said(actions).startswith("Dat klopt helaas niet. Een medewerker helpt u hierbij verder.")
    assert t.reason == "verification_failed" and s.state.outcome == "transfer"
    ident = t.context["identity"]
    assert ident["verified"] is False and ident["level"] == "none" and ident["customer"] is None
    assert ident["attempts"] == [{"method": "customer_dob", "outcome": "no_match"}] * 3
    assert "Identiteit: niet vastgesteld." in t.context["summary"]
    assert "klantnummer en geboortedatum klopte niet" in t.context["summary"]
    assert "de identiteit van de beller niet kon worden vastgesteld" in t.context["summary"]
    assert t.context["slots"]["customer_number"] == "123456"            # the number the caller claimed
    no_secrets(s.state.to_dict(), t.context)


def test_max_attempts_comes_from_the_flow():
    flow = parse_flow(VERIFY_FILE.read_text().replace("max_attempts: 3", "max_attempts: 1"), "one.yaml")
    s = sim(flow)
    s.say("meterstand doorgeven")
    s.say("een twee drie vier vijf zes")
    check(s.say(BIRTH_SPOKEN))
    assert transfer(answer(s, "customer_dob", "no_match")).reason == "verification_failed"


@pytest.mark.parametrize("outcome", ["locked", "unavailable"])
def test_locked_or_unavailable_hands_over_at_once_without_saying_why(outcome):
    s = sim()
    s.say("meterstand doorgeven")
    s.say("een twee drie vier vijf zes")
    check(s.say(BIRTH_SPOKEN))
    actions = answer(s, "customer_dob", outcome)
    t = transfer(actions)
    assert t.reason == "verification_failed"
    assert said(actions) == "Een medewerker helpt u hierbij verder. Ik verbind u door, een moment alstublieft."
    assert t.context["identity"]["verified"] is False
    assert t.context["identity"]["attempts"] == [{"method": "customer_dob", "outcome": outcome}]


def test_a_locked_calling_number_hands_over_before_anything_is_asked():
    s = sim()
    s.say("ik heb een vraag over mijn factuur")
    actions = answer(s, "caller_id", "locked")
    assert transfer(actions).reason == "verification_failed" and "klantnummer" not in said(actions)


# -- keys, speech and both -------------------------------------------------------------------------

def test_mixed_speech_and_keypad_entry():
    s = sim()
    s.say("meterstand doorgeven")
    s.keys("123456")
    assert check(s.say(BIRTH_SPOKEN)).values == {"customer_number": "123456", "birth_date": BIRTH_ISO}
    answer(s, "customer_dob", "no_match")
    s.say("een twee drie vier vijf zes")
    assert check(s.keys(BIRTH_KEYS)).values == {"customer_number": "123456", "birth_date": BIRTH_ISO}


def test_digit_answers_listen_with_a_grammar_of_digits_and_transfer_words():
    s = sim()
    actions = s.say("meterstand doorgeven")
    listen = actions[-1]
    assert isinstance(listen, Listen) and listen.speech and listen.dtmf
    assert "vijf" in listen.phrases and "medewerker" in listen.phrases and listen.max_digits == 10
    actions = s.say("een twee drie vier vijf zes")
    assert actions[-1].phrases == () and actions[-1].max_digits == 8    # a date: free speech, or eight keys


def menu_key(intent: str) -> str:
    return str(keypad.menu_routes(FLOW, FLOW.step("menu")).index(intent) + 1)


def test_keypad_only_call_verifies_by_customer_number_and_birth_date_keys():
    s = sim(speech=False)
    actions = s.keys(menu_key("meterstand"))
    assert s.state.step == "identificatie"
    assert "Wat is uw klantnummer? Toets de cijfers in, gevolgd door een hekje." in said(actions)
    assert actions[-1].speech is False
    actions = s.keys("123456")
    assert "Wat is uw geboortedatum? Toets de datum in als acht cijfers" in said(actions)
    assert actions[-1].speech is False and actions[-1].max_digits == 8
    asked = check(s.keys(BIRTH_KEYS))
    assert asked.values == {"customer_number": "123456", "birth_date": BIRTH_ISO}
    answer(s, "customer_dob", "match")
    assert s.state.step == "stand"


def test_keypad_only_call_cannot_give_a_postcode_and_goes_to_a_person():
    s = sim(speech=False)
    t = transfer(s.keys(menu_key("storing")))
    assert t.reason == "no_speech" and t.context["identity"]["verified"] is False


def test_speech_lost_during_verification_asks_again_by_keys():
    s = sim()
    s.say("meterstand doorgeven")
    s.say("een twee drie vier vijf zes")
    actions = s.send(SpeechUnavailable("decoder"))
    assert "toetsen" in said(actions) and "Toets de datum in" in said(actions)
    assert actions[-1].speech is False
    assert check(s.keys(BIRTH_KEYS)).values["birth_date"] == BIRTH_ISO


# -- a person on request, silence, misses ----------------------------------------------------------

@pytest.mark.parametrize("at_field", ["customer_number", "birth_date", "pin"])
@pytest.mark.parametrize("ask", ["#0", "medewerker"])
def test_key_0_and_transfer_words_reach_a_person_during_verification(at_field, ask):
    s = sim()
    if at_field == "pin":
        s.say("ik wil mijn rekeningnummer wijzigen")
        s.keys("123456")
    else:
        s.say("meterstand doorgeven")
        if at_field == "birth_date":
            s.say("een twee drie vier vijf zes")
    assert s.state.verify["field"] == at_field
    actions = s.keys("0") if ask == "#0" else s.say(ask)
    t = transfer(actions)
    assert t.reason == "explicit_request" and t.context["identity"]["verified"] is False


def test_silence_and_misses_follow_the_engine_rules():
    s = sim()
    s.say("meterstand doorgeven")
    actions = s.silence()
    assert "hoorde niets" in said(actions) and "klantnummer" in said(actions) and "cijfers" in said(actions)
    assert transfer(s.silence()).reason == "no_input"
    s = sim()
    s.say("meterstand doorgeven")
    s.say("een twee drie vier vijf zes")
    actions = s.say("blub blab")
    assert "niet goed verstaan" in said(actions) and "Zegt u uw geboortedatum" in said(actions)
    assert transfer(s.say("blub")).reason == "low_confidence"


# -- what is kept, and what never is ---------------------------------------------------------------

def test_secrets_never_reach_the_state_the_transcript_or_the_context():
    s = sim()
    s.say("meterstand doorgeven")
    s.say("een twee drie vier vijf zes")
    check(s.say(BIRTH_SPOKEN))
    answer(s, "customer_dob", "no_match")
    s.keys("123456")
    check(s.keys(BIRTH_KEYS))
    answer(s, "customer_dob", "no_match")
    dumped = s.state.to_dict()
    assert "birth_date" not in dumped["slots"] and dumped["secrets"] == {}
    caller_lines = [e for e in dumped["transcript"] if e["who"] == "caller" and e["step"] == "identificatie"]
    assert [e.get("text", e.get("digits")) for e in caller_lines] == [
        "een twee drie vier vijf zes", "[verborgen]", "123456", "[verborgen]"]
    t = transfer(s.say("medewerker"))
    no_secrets(dumped, t.context, s.state.to_dict())
    storing = sim()
    storing.say("ik heb een storing")
    storing.say("twaalf")
    check(storing.say(POSTCODE_SPOKEN))
    t = transfer(answer(storing, "postcode_house", "unavailable"))
    no_secrets(storing.state.to_dict(), t.context)
    pin = sim()
    pin.say("ik wil mijn rekeningnummer wijzigen")
    pin.keys("123456")
    check(pin.keys(PIN))
    answer(pin, "pin", "no_match")
    t = transfer(pin.keys("0"))
    no_secrets(pin.state.to_dict(), t.context)


def test_a_level_is_never_lowered_and_a_verified_call_is_not_asked_again():
    s = sim()
    s.say("meterstand doorgeven")
    s.say("een twee drie vier vijf zes")
    check(s.say(BIRTH_SPOKEN))
    answer(s, "customer_dob", "match")
    s.state.step = "menu"
    s.engine.resume(s.state)
    t = transfer(s.say("ik heb een storing"))          # adres_controle gives only 'known': nothing asked
    assert t.queue == "storingen" and t.context["identity"]["level"] == "verified"
    assert t.context["identity"]["method"] == "customer_dob"


def test_state_mid_verification_round_trips_through_json_and_old_states_load_unverified():
    s = sim()
    s.say("meterstand doorgeven")
    s.say("een twee drie vier vijf zes")
    restored = CallState.from_dict(json.loads(json.dumps(s.state.to_dict())))
    asked = check(s.engine.handle(restored, Utterance(BIRTH_SPOKEN)))
    assert asked.values == {"customer_number": "123456", "birth_date": BIRTH_ISO}
    actions = s.engine.handle(restored, IdentityChecked("customer_dob", "match", CUSTOMER))
    assert restored.step == "stand" and restored.identity["verified"] and "meterstand" in said(actions)
    old = s.state.to_dict()
    del old["identity"], old["verify"]
    loaded = CallState.from_dict(old)
    assert loaded.identity == {"level": "none", "method": None, "customer": None, "verified": False, "attempts": []}
    assert loaded.verify is None


def test_a_resumed_call_asks_the_current_question_again_and_keeps_where_it_goes():
    s = sim()
    s.say("meterstand doorgeven")
    s.say("een twee drie vier vijf zes")
    actions = s.engine.resume(s.state)
    assert "geboortedatum" in said(actions) and s.state.verify["then"] == "stand"
    check(s.say(BIRTH_SPOKEN))
    answer(s, "customer_dob", "match")
    assert s.state.step == "stand"


def test_a_call_going_on_where_an_earlier_one_stopped_verifies_again():
    """The earlier call stopped at the guarding verify step, verified by caller ID: the new call asks
    again (identity is never carried over), skips the customer number it kept, and then goes on at
    the intent's route."""
    earlier = sim().state.to_dict()
    earlier.update(step="identificatie", intent="meterstand", slots={"customer_number": "123456"},
                   identity={"level": "known", "method": "caller_id", "customer": CUSTOMER, "verified": False,
                             "attempts": [{"method": "caller_id", "outcome": "match"}]})
    s = sim(earlier=earlier)
    assert "U belde net over uw meterstand" in said(s.opening)
    actions = s.say("ja")
    assert s.state.identity["level"] == "none" and s.state.step == "identificatie"
    assert "geboortedatum" in said(actions) and "klantnummer" not in said(actions)
    asked = check(s.say(BIRTH_SPOKEN))
    assert asked.values == {"customer_number": "123456", "birth_date": BIRTH_ISO}
    actions = answer(s, "customer_dob", "match")
    assert s.state.step == "stand" and "meterstand" in said(actions)


def test_an_answer_nobody_asked_for_is_ignored():
    s = sim()
    assert answer(s, "customer_dob", "match") == []
    s.say("meterstand doorgeven")
    assert answer(s, "pin", "match") == [] and s.state.identity["level"] == "none"
    s.say("een twee drie vier vijf zes")
    check(s.say(BIRTH_SPOKEN))
    assert answer(s, "pin", "match") == []             # not the method that was asked for
    assert s.send(Digits("1")) == []                   # the check comes first
    assert answer(s, "customer_dob", "match")
    assert s.state.step == "stand"


def test_the_agent_summary_of_a_flow_without_verification_is_unchanged():
    mini = load_flow(Path(__file__).parent / "data" / "mini.yaml")
    s = sim(mini)
    t = transfer(s.say("medewerker"))
    assert "Identiteit" not in t.context["summary"]
    assert t.context["identity"] == {"verified": False, "level": "none", "method": None, "customer": None,
                                     "attempts": []}


def test_a_whole_verified_call_ends_normally():
    s = sim()
    s.say("meterstand doorgeven")
    s.keys("123456")
    check(s.keys(BIRTH_KEYS))
    answer(s, "customer_dob", "match")
    actions = s.say("twaalfduizend")
    assert isinstance(actions[-1], Hangup) and s.state.outcome == "hangup"
    no_secrets(s.state.to_dict())


# -- with the identity service and a directory ----------------------------------------------------

def test_the_checks_values_are_what_the_identity_service_compares():
    """The engine's values and the service's rules agree on every method (a directory in a dict,
    lockout counters in this process)."""
    assert VERIFY_METHODS == METHODS

    def call(caller: str = "+31600000000") -> Simulation:
        service = IdentityService(FakeDirectory(), None, "salt", 5, 30, lockout=MemoryLockout(5, 1800))
        return Simulation(FLOW, at=WEEKDAY, caller=caller, identity=service)

    dob = call()
    dob.say("meterstand doorgeven")
    dob.say("een nul nul twee drie vier")
    actions = dob.say("zeventien mei negentientachtig")
    assert dob.state.identity["level"] == "verified" and "Dank u, dat klopt." in said(actions)
    assert dob.state.identity["customer"] == ANNA.public() and dob.state.step == "stand"
    pin = call()
    pin.say("ik wil mijn rekeningnummer wijzigen")
    pin.keys("100234")
    assert transfer(pin.keys("4321")).context["identity"]["method"] == "pin"
    address = call()
    address.say("ik heb een storing")
    address.say("twaalf")
    assert transfer(address.say("twaalf vierendertig a b")).context["identity"]["level"] == "known"
    known = call(caller=ANNA.phones[0])
    t = transfer(known.say("ik heb een vraag over mijn factuur"))
    assert t.queue == "facturen" and t.context["identity"]["method"] == "caller_id"
    wrong = call()
    wrong.say("meterstand doorgeven")
    wrong.say("een nul nul twee drie vier")
    assert said(wrong.say("achttien mei negentientachtig")) == "Dat klopt helaas niet. Wat is uw klantnummer?"
