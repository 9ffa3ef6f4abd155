"""The rules no flow can forget, on a small flow, through the pure engine."""

import json
from pathlib import Path

import pytest

from demo_customers import JAN_BIRTH_SPOKEN, demo_identity
from voicebot.dialog.actions import Hangup, Listen, Say, SendSms, Transfer
from voicebot.dialog.events import CallEnded, Digits, NoInput, Utterance, Word
from voicebot.dialog.state import CallState
from voicebot.flow import load_flow, parse_flow
from voicebot.simulator import Simulation

MINI = load_flow(Path(__file__).parent / "data" / "mini.yaml")
WEEKDAY = "2026-11-23T10:00:00"   # a Monday, open
SUNDAY = "2026-11-22T10:00:00"


def sim(**kw) -> Simulation:
    return Simulation(MINI, at=kw.pop("at", WEEKDAY), **kw)


def said(actions) -> str:
    return " ".join(a.text for a in actions if isinstance(a, Say))


def transfer(actions) -> Transfer:
    found = [a for a in actions if isinstance(a, Transfer)]
    assert found, f"no transfer in {actions}"
    return found[0]


def test_opening_discloses_and_listens():
    s = sim()
    assert "digitale assistent" in said(s.opening)
    assert isinstance(s.opening[-1], Listen)
    assert s.state.step == "menu"


ROUTES_TO = {
    "menu": [],
    "klantnummer": ["meterstand doorgeven"],
    "geboortedatum": ["meterstand doorgeven", "#1234567", "ja"],
    "stand": ["meterstand doorgeven", "#1234567", "ja", "vijf maart negentienzeventig"],
    "sms_vraag": ["meterstand doorgeven", "#1234567", "ja", "vijf maart negentienzeventig", "twaalf"],
    "postcode": ["ik heb een storing"],
    "einde": ["wat zijn de openingstijden"],
}


def drive(s: Simulation, turns):
    for turn in turns:
        if turn.startswith("#"):
            s.keys(turn[1:])
        else:
            s.say(turn)


@pytest.mark.parametrize("step", sorted(ROUTES_TO))
@pytest.mark.parametrize("ask", ["medewerker", "eh mag ik een medewerker spreken", "#0"])
def test_agent_on_request_at_every_step(step, ask):
    s = sim()
    drive(s, ROUTES_TO[step])
    assert s.state.step == step
    actions = s.keys("0") if ask == "#0" else s.say(ask)
    t = transfer(actions)
    assert t.reason == "explicit_request"
    assert t.context["reason"] == "explicit_request"
    assert s.ended


def test_agent_word_while_confirming():
    s = sim()
    s.say("meterstand doorgeven")
    s.keys("1234567")
    assert s.state.pending
    assert transfer(s.say("nee ik wil een medewerker")).reason == "explicit_request"


def test_two_unintelligible_answers_transfer_low_confidence():
    s = sim()
    first = s.say("blub blab [unk]")
    assert "niet goed verstaan" in said(first) and "bijvoorbeeld" in said(first), "asks again, more specifically"
    assert not s.ended
    t = transfer(s.say("[unk] [unk]"))
    assert t.reason == "low_confidence"
    kinds = [f["kind"] for f in t.context["failures"]]
    assert len(kinds) == 2


def test_out_of_scope_is_named_then_transferred():
    s = sim()
    first = s.say("ik wil een pizza bestellen")
    assert "niet mee helpen" in said(first)
    assert s.state.failures[-1]["kind"] == "out_of_scope"
    assert transfer(s.say("hoe laat vertrekt de trein naar utrecht")).reason == "low_confidence"


def test_medium_confidence_is_confirmed():
    s = sim()
    actions = s.say("ik wil mijn meterstand doorgeven", confidence=0.35)
    assert "U wilt uw meterstand doorgeven, klopt dat?" in said(actions)
    listen = actions[-1]
    assert isinstance(listen, Listen) and "ja" in listen.phrases and "nee" in listen.phrases
    assert s.state.intent is None
    actions = s.say("ja")
    assert s.state.intent == "meterstand" and "klantnummer" in said(actions)


def test_denied_confirmation_asks_again_then_transfers():
    s = sim()
    s.say("ik wil mijn meterstand doorgeven", confidence=0.35)
    again = s.say("nee")
    assert "opnieuw" in said(again) and s.state.step == "menu"
    s.say("ik wil mijn meterstand doorgeven", confidence=0.35)
    assert transfer(s.say("nee")).reason == "low_confidence"


def test_unknown_words_lower_the_score_more_than_asr_confidence():
    clean = sim()
    words = (Word("ik", 0.9), Word("wil", 0.9), Word("mijn", 0.9), Word("meterstand", 0.9))
    clean.send(Utterance("ik wil mijn meterstand", confidence=0.9, words=words))
    assert clean.state.intent == "meterstand" and clean.state.step == "klantnummer"   # 0.9 alone: taken as is
    one = sim()
    words = (Word("ik", 0.9), Word("wil", 0.9), Word("[unk]", 0.2), Word("meterstand", 0.9))
    actions = one.send(Utterance("ik wil [unk] meterstand", confidence=0.9, words=words))
    assert one.state.intent is None and one.state.pending["intent"] == "meterstand"  # one unknown word: asked back
    assert "U wilt uw meterstand doorgeven, klopt dat?" in said(actions) and one.state.failures == []
    half = sim()
    words = (Word("ik", 0.9), Word("[unk]", 0.2), Word("[unk]", 0.2), Word("meterstand", 0.4))
    actions = half.send(Utterance("ik [unk] [unk] meterstand", confidence=0.9, words=words))
    assert half.state.intent is None and half.state.pending is None and half.state.step == "menu"
    assert half.state.failures == [{"step": "menu", "kind": "not_understood"}]         # half unknown: not understood
    assert "niet goed verstaan" in said(actions) and isinstance(actions[-1], Listen)


def test_grammar_miss_counts_as_not_understood():
    s = sim()
    s.say("meterstand doorgeven")
    s.keys("1234567")
    actions = s.send(Utterance("[unk]", confidence=1.0, grammar=True))
    assert "niet goed verstaan" in said(actions)


def test_two_silences_transfer_no_input():
    s = sim()
    first = s.silence()
    assert "hoorde niets" in said(first)
    assert isinstance(first[-1], Listen)
    assert transfer(s.silence()).reason == "no_input"


LONG_CALL = ["meterstand doorgeven", "#1234567", "ja", "vijf maart negentienzeventig"]


def test_loop_guard_transfers_on_the_turn_after_max_turns():
    s = sim(max_turns=3)
    drive(s, LONG_CALL[:3])                      # three turns: each one moves the call on
    assert not s.ended and s.state.step == "geboortedatum"
    t = transfer(s.say(LONG_CALL[3]))
    assert t.reason == "loop_guard" and s.ended and s.state.reason == "loop_guard"
    unguarded = sim()                            # the same four turns under the default limit go on
    drive(unguarded, LONG_CALL)
    assert not unguarded.ended and unguarded.state.step == "stand"


def test_full_call_context_for_agent():
    s = sim()
    drive(s, ["ik heb een storing"])
    actions = s.say("twaalf vierendertig a b")
    t = transfer(actions)
    assert t.reason == "flow" and t.queue == "storingen"
    ctx = t.context
    assert ctx["intent"]["name"] == "storing"
    assert ctx["slots"] == {"postcode": "1234 AB"}
    assert "Onderwerp: storing" in ctx["summary"] and "postcode 1234 AB" in ctx["summary"]
    assert any(e["who"] == "caller" for e in ctx["transcript"])
    # the full postcode never reaches the transcript
    assert "1234 AB" not in json.dumps(ctx["transcript"]) and "a b" not in json.dumps(ctx["transcript"])
    json.dumps(ctx)  # travels as JSON


def test_after_hours_route():
    s = sim(at=SUNDAY)
    drive(s, ["ik heb een storing"])
    actions = s.say("twaalf vierendertig a b")
    assert "gesloten" in said(actions) and "Deze informatie komt van de website" in said(actions)
    assert s.state.step == "einde"


def test_holiday_is_closed():
    s = sim(at="2026-12-25T10:00:00")
    drive(s, ["ik heb een storing"])
    s.say("twaalf vierendertig a b")
    assert s.state.step == "einde"


def test_secret_slot_is_hashed_never_kept_or_logged():
    s = sim()
    drive(s, ["meterstand doorgeven", "#1234567", "ja"])
    actions = s.say("vijf maart negentienzeventig")
    assert "1970" not in said(actions) and "maart" not in said(actions)
    assert "geboortedatum" not in s.state.slots
    assert len(s.state.secrets["geboortedatum"]) == 64
    dumped = json.dumps(s.state.to_dict())
    assert "1970" not in dumped and "maart" not in dumped
    t = transfer(s.say("medewerker"))
    assert t.context["secrets_provided"] == ["geboortedatum"]
    assert "geboortedatum opgegeven" in t.context["summary"]


def test_whole_call_with_sms_and_feedback():
    s = sim()
    drive(s, ["meterstand doorgeven", "#1234567", "ja", "vijf maart negentienzeventig"])
    actions = s.say("twaalfduizend driehonderdvijfenveertig")
    assert "meterstand 12345 voor klantnummer 1 2 3 4 5 6 7" in said(actions)
    actions = s.say("ja graag")
    sms = [a for a in actions if isinstance(a, SendSms)]
    assert sms and sms[0].to == "+31612345678" and "12345" in sms[0].text and "1970" not in sms[0].text
    actions = s.keys("4")
    assert s.state.feedback == 4 and isinstance(actions[-1], Hangup)
    assert s.state.outcome == "hangup"


def test_prompts_filled_with_the_callers_values_are_personal():
    """A Say whose words carry the caller's values must never reach the disk cache; the flow's own
    words (the opening, the questions, the retries) are cached as before."""
    s = sim()
    assert s.opening and not [a for a in s.opening if isinstance(a, Say) and a.personal]
    drive(s, ["meterstand doorgeven"])
    (question,) = [a for a in s.say("een twee drie vier vijf zes zeven") if isinstance(a, Say)]
    assert "1 2 3 4 5 6 7" in question.text and question.personal                   # "Ik noteer {value}"
    asked = [a for a in s.say("ja") if isinstance(a, Say)]
    assert asked and not any(a.personal for a in asked)                             # the next question
    s.say("vijf maart negentienzeventig")
    says = [a for a in s.say("twaalfduizend driehonderdvijfenveertig") if isinstance(a, Say)]
    filled = [a for a in says if "12345" in a.text]
    assert filled and all(a.personal for a in filled)                               # "meterstand {meterstand}"
    assert [a for a in says if not a.personal]                                      # "Wilt u een samenvatting"
    said_after_sms = [a for a in s.say("ja graag") if isinstance(a, Say)]
    assert said_after_sms and all(a.personal == ("12345" in a.text or "1 2 3" in a.text) for a in said_after_sms)


def test_the_callers_text_lists_what_they_asked_and_gave_not_the_assistants_questions():
    from voicebot.dialog.context import agent_summary

    energie = load_flow(Path(__file__).resolve().parent.parent / "flows" / "energie.yaml")
    s = Simulation(energie, at=WEEKDAY, identity=demo_identity(energie))
    drive(s, ["ik wil mijn meterstand doorgeven", "#100001", JAN_BIRTH_SPOKEN,
              "twaalfduizend driehonderdvijfenveertig", "ja"])
    assert s.state.identity["verified"]
    actions = s.say("ja graag")
    (sms,) = [a for a in actions if isinstance(a, SendSms)]
    assert sms.text.startswith("Stroomlijn Energie, samenvatting van uw gesprek. Onderwerp: meterstand doorgeven.")
    assert "klantnummer 100001" in sms.text and "meterstand 12345" in sms.text
    assert not any(secret in sms.text for secret in ("1975", "maart", "14-03", "geboortedatum"))
    assert "sms samenvatting" not in sms.text and " ja" not in sms.text               # the reply to "wilt u ...?"
    assert said(actions).startswith("Ik stuur u een sms met een samenvatting. Hoe tevreden")   # heard, not read
    assert s.state.slots["sms_samenvatting"] is True                                  # kept for the agent
    assert "sms samenvatting ja" in agent_summary(s.state, energie, "flow")


def test_the_callers_text_masks_a_spoken_postcode():
    # mini.yaml with a text message after the postcode
    text = (Path(__file__).parent / "data" / "mini.yaml").read_text().replace(
        "    say: Wat is uw postcode?\n    next: open\n",
        "    say: Wat is uw postcode?\n    next: storing_sms\n"
        "  storing_sms:\n    type: sms\n    say: De samenvatting is verstuurd.\n    next: open\n")
    s = Simulation(parse_flow(text, "mini.yaml"), at=WEEKDAY)
    s.say("ik heb een storing")
    actions = s.say("twaalf vierendertig a b")
    (sms,) = [a for a in actions if isinstance(a, SendSms)]
    assert s.state.slots["postcode"] == "1234 AB"
    assert "postcode 1234 **" in sms.text and "AB" not in sms.text


def test_the_callers_text_holds_the_page_an_answer_came_from():
    webshop = load_flow(Path(__file__).resolve().parent.parent / "flows" / "webshop.yaml")
    s = Simulation(webshop, at="2026-11-24T11:00:00", caller="+447700900123")
    drive(s, ["where is my parcel", "#12345678", "yes"])
    actions = s.say("yes please")
    (sms,) = [a for a in actions if isinstance(a, SendSms)]
    assert sms.text == ("Parcelo, a summary of your call. Topic: track parcel. Details: order number 12345678. "
                        "This information comes from parcelo.com/track.")
    assert "parcelo.com" not in said(actions) and "text message" in said(actions)


def test_feedback_never_transfers():
    s = sim()
    s.say("wat zijn de openingstijden")
    s.say("geen idee")
    actions = s.say("weet ik veel")
    assert isinstance(actions[-1], Hangup) and s.state.feedback is None


def test_dtmf_entry_and_wrong_length():
    s = sim()
    s.say("meterstand doorgeven")
    actions = s.keys("12")
    assert "niet goed verstaan" in said(actions) and "toets" in said(actions)
    actions = s.keys("1234567")
    assert "1 2 3 4 5 6 7" in said(actions)


def test_state_round_trips_through_json_mid_call():
    s = sim()
    s.say("meterstand doorgeven")
    s.keys("1234567")
    restored = CallState.from_dict(json.loads(json.dumps(s.state.to_dict())))
    actions = s.engine.handle(restored, Utterance("ja"))
    assert restored.slots["klantnummer"] == "1234567" and restored.step == "geboortedatum"
    assert "geboortedatum" in said(actions)


def test_caller_hangup_is_recorded_and_ends():
    s = sim()
    assert s.send(CallEnded()) == []
    assert s.state.outcome == "caller_hangup" and s.state.failures[-1] == {"step": "menu", "kind": "hangup"}
    assert s.send(Digits("1")) == []


def test_sms_without_caller_number():
    s = Simulation(MINI, at=WEEKDAY, caller="anonymous")
    drive(s, ["meterstand doorgeven", "#1234567", "ja", "vijf maart negentienzeventig", "twaalf"])
    actions = s.say("ja")
    assert not [a for a in actions if isinstance(a, SendSms)] and "afgeschermd" in said(actions)


def test_silence_during_confirmation_repeats_the_question():
    s = sim()
    s.say("meterstand doorgeven")
    s.keys("1234567")
    actions = s.send(NoInput())
    assert "Ik noteer 1 2 3 4 5 6 7" in said(actions)


# -- ask steps for the values that identify a caller --------------------------------------------------
# tests/data/identity_questions.yaml asks them without `secret` or `input`: the slot types decide.

QUESTIONS = Path(__file__).parent / "data" / "identity_questions.yaml"


@pytest.fixture(scope="module")
def questions():
    return load_flow(QUESTIONS)


def listening(actions) -> Listen:
    assert isinstance(actions[-1], Listen), actions
    return actions[-1]


def test_identity_slot_types_choose_how_they_are_answered(questions):
    assert questions.step("pin").input_mode == "dtmf"
    assert questions.step("geboren").input_mode == "both"
    assert questions.step("huis").input_mode == "both"


def test_a_birth_date_and_a_house_number_are_keyed_on_a_call_with_speech(questions):
    s = Simulation(questions, at=WEEKDAY)
    asked = s.keys("87654321")
    assert s.state.step == "geboren"
    assert listening(asked).speech and listening(asked).dtmf and listening(asked).max_digits == 8
    asked = s.keys("12031975")
    assert s.state.step == "huis" and "geboortedatum" in s.state.secrets
    assert listening(asked).speech and listening(asked).max_digits is None    # a house number ends with #
    assert "Huisnummer 12, klopt dat?" in said(s.keys("12"))
    s.say("ja")
    assert s.state.slots["huisnummer"] == "12" and s.state.step == "pin"


def test_a_house_number_said_with_its_letter_is_read_back_as_number_and_letter(questions):
    s = Simulation(questions, at=WEEKDAY)
    drive(s, ["#87654321", "#12031975"])
    assert "Huisnummer 12 A, klopt dat?" in said(s.say("twaalf a"))
    s.say("ja")
    assert s.state.slots["huisnummer"] == "12A"


def test_a_pin_question_takes_keys_only_even_on_a_call_with_speech(questions):
    s = Simulation(questions, at=WEEKDAY)
    drive(s, ["#87654321", "#12031975", "#12"])
    asked = s.say("ja")
    assert s.state.step == "pin"
    assert listening(asked).speech is False and listening(asked).dtmf and listening(asked).max_digits == 4
    missed = s.say("een twee drie vier")                # a PIN said aloud is not taken
    assert s.state.step == "pin" and "pincode" not in s.state.secrets
    assert questions.msg("hint_pin") in said(missed)
    assert listening(missed).speech is False
    transfer(s.keys("1234"))
    assert "pincode" in s.state.secrets


def test_a_keyed_birth_date_must_lie_before_the_day_of_the_call(questions):
    s = Simulation(questions, at="1990-06-01T10:00:00")
    s.keys("87654321")
    s.keys("15011995")                                  # after the call: no date of birth
    assert s.state.step == "geboren" and "geboortedatum" not in s.state.secrets
    s.keys("15011989")
    assert s.state.step == "huis" and "geboortedatum" in s.state.secrets


def test_a_birth_date_and_a_pin_are_secret_without_the_flow_saying_so(questions):
    assert questions.secret_slots() == {"geboortedatum", "pincode"}
    s = Simulation(questions, at=WEEKDAY)
    s.keys("11223344")
    doubtful = s.say("drie juni negentien achtenzestig", confidence=0.1)
    assert "klopt dat" not in said(doubtful) and s.state.step == "geboren"    # never read back
    s.say("drie juni negentien achtenzestig")
    assert s.state.step == "huis"
    drive(s, ["twaalf a", "ja"])
    actions = s.keys("4321")
    assert set(s.state.slots) == {"klantnummer", "huisnummer"}
    assert set(s.state.secrets) == {"geboortedatum", "pincode"}
    assert all(len(digest) == 64 for digest in s.state.secrets.values())
    [sms] = [a for a in actions if isinstance(a, SendSms)]
    assert "geboortedatum opgegeven" in sms.text and "pincode opgegeven" in sms.text
    t = transfer(actions)
    assert t.context["secrets_provided"] == ["geboortedatum", "pincode"]
    redacted = questions.msg("redacted")
    assert [e.get("text", e.get("digits")) for e in s.state.transcript
            if e["who"] == "caller" and e["step"] in ("geboren", "pin")] == [redacted] * 3
    everything = json.dumps([s.state.to_dict(), t.context, sms.text], ensure_ascii=False)
    for value in ("1968", "achtenzestig", "juni", "4321"):
        assert value not in everything, value
