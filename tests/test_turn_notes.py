"""What became of each caller turn: the engine's ``understood`` note on every caller entry.

Event sequences through the pure engine on the small test flow (tests/data/mini.yaml), the
verification test flow (tests/data/verify/verify.yaml) and a copy of mini.yaml whose feedback step
asks for a comment. Each note names a result from ``dialog.outcomes.TURN_RESULTS``, the intent or
slot the turn was taken or guessed as, and that guess's confidence.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from voicebot.dialog.actions import CheckIdentity, Hangup, Listen, Transfer
from voicebot.dialog.engine import DialogEngine
from voicebot.dialog.events import CallStarted, Digits, NoInput, SpeechUnavailable, Utterance, Word
from voicebot.dialog.outcomes import TURN_RESULTS
from voicebot.dialog.state import CallState
from voicebot.flow import load_flow, parse_flow
from voicebot.flow.messages import MESSAGES
from voicebot.simulator import Simulation

DATA = Path(__file__).parent / "data"
MINI = load_flow(DATA / "mini.yaml")
VERIFY = load_flow(DATA / "verify" / "verify.yaml")
WEEKDAY = "2026-11-23T10:00:00"
TO_FEEDBACK = ["wat zijn de openingstijden"]           # mini: the answer, then the feedback step


def commenting_mini():
    text = (DATA / "mini.yaml").read_text(encoding="utf-8")
    thanks = "    thanks: Bedankt en tot ziens.\n"
    assert thanks in text
    return parse_flow(text.replace(thanks, thanks + "    comment: true\n"), "mini_comment.yaml")


MINI_COMMENT = commenting_mini()


def sim(flow=MINI, **kw) -> Simulation:
    return Simulation(flow, at=kw.pop("at", WEEKDAY), **kw)


def notes(s: Simulation | CallState) -> list[dict]:
    state = s.state if isinstance(s, Simulation) else s
    return [entry["understood"] for entry in state.transcript if entry["who"] == "caller"]


def last(s) -> dict:
    return notes(s)[-1]


def note(result, intent=None, confidence=None) -> dict:
    return {"result": result, "intent": intent, "confidence": confidence}


def hesitant(text: str) -> Utterance:
    """Heard badly: no recogniser confidence and every word doubtful, so even a clear intent scores low."""
    return Utterance(text, confidence=0.0, words=tuple(Word(w, 0.2) for w in text.split()))


# -- route steps ------------------------------------------------------------------------------------

def test_a_clear_request_is_accepted_with_its_intent_and_the_classifiers_confidence():
    s = sim()
    s.say("ik wil mijn meterstand doorgeven")
    (understood,) = notes(s)
    assert understood["result"] == "accepted" and understood["intent"] == "meterstand"
    assert 0.5 < understood["confidence"] <= 1.0
    assert understood["confidence"] == round(MINI.classifier.classify("ik wil mijn meterstand doorgeven").confidence, 3)


def test_a_middling_guess_is_asked_back_then_confirmed_or_denied():
    s = sim()
    s.say("ik wil mijn meterstand doorgeven", confidence=0.35)
    confidence = last(s)["confidence"]
    assert last(s) == note("confirm", "meterstand", confidence) and s.state.pending
    s.say("ja")
    assert last(s) == note("confirmed", "meterstand", confidence) and s.state.intent == "meterstand"
    d = sim()
    d.say("ik wil mijn meterstand doorgeven", confidence=0.35)
    d.say("nee")
    assert notes(d) == [note("confirm", "meterstand", confidence), note("denied", "meterstand", confidence)]


def test_an_unclear_answer_to_the_yes_no_question_is_not_understood():
    s = sim()
    s.say("ik wil mijn meterstand doorgeven", confidence=0.35)
    s.say("blauw")
    assert last(s) == note("not_understood")


def test_a_request_the_flow_does_not_handle_is_out_of_scope_with_the_nearest_intent_as_the_guess():
    s = sim()
    s.say("ik wil een pizza bestellen")
    understood = last(s)
    assert understood["result"] == "out_of_scope" and s.state.failures[-1]["kind"] == "out_of_scope"
    top = MINI.classifier.classify("ik wil een pizza bestellen")
    assert understood["intent"] == top.alternatives[0][0] and understood["intent"] in MINI.spec.intents
    assert understood["confidence"] == round(top.alternatives[0][1], 3)


def test_words_the_recogniser_could_not_place_are_not_understood_without_a_guess():
    s = sim()
    s.say("blub [unk] [unk]")
    assert last(s) == note("not_understood")


def test_a_clear_intent_heard_badly_is_low_confidence_with_its_guess():
    s = sim()
    s.send(hesitant("ik wil mijn meterstand doorgeven"))
    understood = last(s)
    assert understood["result"] == "low_confidence" and understood["intent"] == "meterstand"
    assert understood["confidence"] > 0.5           # the classifier was sure; the hearing was not
    assert s.state.failures[-1]["kind"] == "low_confidence"


def test_keys_at_the_open_question_bring_the_menu_and_a_menu_key_is_accepted():
    s = sim()
    s.keys("2")
    assert last(s) == note("other")                 # no miss: the caller hears the menu
    s.keys("2")
    assert last(s) == note("accepted", s.state.intent, 1.0) and s.state.intent


def test_a_key_that_is_no_choice_is_an_invalid_key():
    s = sim(speech=False)
    s.keys("9")
    assert last(s) == note("invalid_key") and s.state.failures[-1]["kind"] == "invalid_key"


# -- asking for values ------------------------------------------------------------------------------

def test_a_value_is_accepted_or_asked_back_under_its_slot_name():
    s = sim()
    s.say("meterstand doorgeven")
    s.keys("1234567")                                # klantnummer has a confirm question
    assert last(s) == note("confirm", "klantnummer", 1.0)
    s.say("ja")
    assert last(s) == note("confirmed", "klantnummer", 1.0)
    s.say("vijf maart negentienzeventig")            # a secret: no confirm, the text redacted
    assert last(s) == note("accepted", "geboortedatum", 1.0)
    (birth,) = [e for e in s.state.transcript if e["who"] == "caller" and e["step"] == "geboortedatum"]
    assert birth["text"] == "[verborgen]"
    s.say("twaalf")
    assert last(s) == note("accepted", "meterstand", 1.0)


def test_a_value_heard_badly_is_low_confidence_and_nonsense_is_not_understood():
    s = sim()
    s.say("meterstand doorgeven")
    s.keys("1234567")
    s.say("ja")
    s.say("vijf maart negentienzeventig")
    s.say("appeltaart")
    assert last(s) == note("not_understood")
    s.send(Utterance("twaalf", confidence=0.0, words=(Word("twaalf", 0.1),)))
    understood = last(s)
    assert understood["result"] == "low_confidence" and understood["intent"] == "meterstand"
    assert understood["confidence"] < 0.35


# -- silence, a person asked for, the loop guard -----------------------------------------------------

def test_silence_is_no_input_everywhere_also_at_a_pending_question():
    s = sim()
    s.silence()
    assert last(s) == note("no_input")
    c = sim()
    c.say("ik wil mijn meterstand doorgeven", confidence=0.35)
    c.silence()
    assert last(c) == note("no_input") and c.state.pending


@pytest.mark.parametrize("ask", ["ik wil een medewerker", "#0"])
def test_asking_for_a_person_is_agent(ask):
    s = sim()
    s.say("meterstand doorgeven")
    actions = s.keys("0") if ask == "#0" else s.say(ask)
    assert any(isinstance(a, Transfer) for a in actions)
    assert last(s) == note("agent")


def test_the_turn_after_max_turns_is_other():
    s = sim(max_turns=1)
    s.say("meterstand doorgeven")
    actions = s.keys("1234567")
    assert [a.reason for a in actions if isinstance(a, Transfer)] == ["loop_guard"]
    assert last(s) == note("other")


# -- feedback --------------------------------------------------------------------------------------

def test_a_score_is_accepted_and_a_non_score_not_understood():
    s = sim()
    s.say(TO_FEEDBACK[0])
    assert s.state.step == "einde"
    s.say("geweldig")
    assert last(s) == note("not_understood")
    s.say("vier")
    assert last(s) == note("accepted") and s.state.feedback == 4 and s.ended


# -- going on with an earlier call -------------------------------------------------------------------

def test_the_answer_to_the_offer_to_go_on_is_other_and_silence_there_no_input():
    earlier = {"call_id": "E-1", "flow": "mini", "step": "klantnummer", "intent": "meterstand", "slots": {},
               "transcript": [{"who": "caller", "step": "menu", "text": "meterstand",
                               "understood": note("accepted", "meterstand", 0.9)}]}
    s = sim(earlier=earlier)
    assert s.state.resume_offer
    s.silence()
    assert last(s) == note("no_input")
    s.say("ja")
    assert last(s) == note("other") and s.state.step == "klantnummer"
    # The earlier call's notes are not the agent's: the handoff context keeps the contract's keys.
    transfer = [a for a in s.keys("0") if isinstance(a, Transfer)][0]
    entries = transfer.context["transcript"] + transfer.context["earlier_call"]["transcript"]
    assert entries and all("understood" not in entry for entry in entries)


# -- verification ----------------------------------------------------------------------------------

class Call:
    """The engine alone; identity checks answered by the test."""

    def __init__(self, flow=VERIFY, speech=True):
        self.engine = DialogEngine(flow)
        self.state, self.opening = self.engine.start(CallStarted(call_id="V", caller="+31612345678", at=WEEKDAY,
                                                                 speech=speech))

    def send(self, event):
        return self.engine.handle(self.state, event)


def test_verify_answers_are_noted_under_the_value_asked_and_secrets_stay_redacted():
    c = Call()
    c.send(Utterance("ik wil mijn rekeningnummer wijzigen"))
    c.send(Digits("123456"))
    assert last(c.state) == note("accepted", "customer_number", 1.0)
    c.send(Utterance("negen nul acht een"))           # a PIN said aloud is not taken
    assert last(c.state) == note("not_understood")
    actions = c.send(Digits("9081"))
    assert isinstance(actions[-1], CheckIdentity)
    assert last(c.state) == note("accepted", "pin", 1.0)
    assert "9081" not in json.dumps(c.state.to_dict())


def test_a_verify_answer_heard_badly_is_low_confidence():
    c = Call()
    c.send(Utterance("ik wil mijn meterstand doorgeven"))
    field = c.state.verify["field"]
    assert field == "customer_number"
    c.send(Utterance("een twee drie vier vijf zes", confidence=0.0,
                     words=tuple(Word(w, 0.1) for w in "een twee drie vier vijf zes".split())))
    understood = last(c.state)
    assert understood["result"] == "low_confidence" and understood["intent"] == field


# -- a comment after the score -------------------------------------------------------------------------

def to_comment(**kw) -> Simulation:
    s = sim(MINI_COMMENT, **kw)
    s.say(TO_FEEDBACK[0])
    actions = s.say("vier")
    assert s.state.feedback == 4 and not s.ended
    assert MESSAGES["nl"]["feedback_comment"] in " ".join(getattr(a, "text", "") for a in actions)
    listen = actions[-1]
    assert isinstance(listen, Listen) and listen.speech and listen.phrases == ()   # free speech, no grammar
    return s


def test_the_comment_is_kept_on_the_state_and_in_the_transcript():
    s = to_comment()
    actions = s.say("de medewerker van vorige keer was vriendelijker")
    assert isinstance(actions[-1], Hangup) and s.state.outcome == "hangup"
    assert s.state.feedback_comment == "de medewerker van vorige keer was vriendelijker"
    assert s.state.transcript[-2]["text"] == "de medewerker van vorige keer was vriendelijker"
    assert notes(s)[-2:] == [note("accepted"), note("accepted", "comment")]
    assert CallState.from_dict(json.loads(json.dumps(s.state.to_dict()))).feedback_comment == s.state.feedback_comment


def test_silence_or_keys_skip_the_comment():
    s = to_comment()
    assert isinstance(s.silence()[-1], Hangup) and s.state.feedback_comment is None
    assert last(s) == note("other", "comment")         # skipping the comment is no failure to count
    k = to_comment()
    assert isinstance(k.keys("5")[-1], Hangup) and k.state.feedback_comment is None and k.state.feedback == 4
    assert last(k) == note("other", "comment")


def test_only_transfer_words_alone_reach_a_person_at_the_comment():
    s = to_comment()
    assert any(isinstance(a, Transfer) for a in s.say("medewerker"))
    assert last(s) == note("agent")
    k = to_comment()
    assert any(isinstance(a, Transfer) for a in k.keys("0"))


def test_numbers_in_a_comment_are_masked_and_a_long_one_is_cut():
    s = to_comment()
    s.say("mijn pincode 9081 en geboortedatum 14-03-1975 wist ik niet " + "lang " * 300)
    comment = s.state.feedback_comment
    assert "9081" not in comment and "1975" not in comment and "[verborgen]" in comment
    assert len(comment) <= 500
    assert "9081" not in json.dumps(s.state.to_dict())


def test_a_keypad_call_is_not_asked_for_a_comment():
    s = sim(MINI_COMMENT, speech=False)
    s.keys("3")                                         # the menu's third route: openingstijden
    assert s.state.step == "einde"
    actions = s.keys("4")
    assert isinstance(actions[-1], Hangup) and s.state.feedback == 4


def test_speech_lost_at_the_comment_ends_the_call_with_the_thanks():
    s = to_comment()
    actions = s.send(SpeechUnavailable("gone"))
    assert isinstance(actions[-1], Hangup) and s.state.feedback == 4


def test_a_resumed_stream_at_the_comment_asks_for_the_comment_again():
    s = to_comment()
    engine = DialogEngine(MINI_COMMENT)
    state = CallState.from_dict(s.state.to_dict())
    actions = engine.resume(state)
    assert MESSAGES["nl"]["feedback_comment"] in actions[0].text
    engine.handle(state, Utterance("prima"))
    assert state.feedback_comment == "prima" and state.feedback == 4


def test_a_flow_in_a_language_without_messages_needs_the_comment_question_only_when_it_asks():
    tree = yaml.safe_load((DATA / "ko.yaml").read_text(encoding="utf-8"))
    assert "feedback_comment" in tree["messages"]
    del tree["messages"]["feedback_comment"]
    parse_flow(yaml.safe_dump(tree, allow_unicode=True), "ko.yaml")     # no comment asked: fine
    tree["steps"]["score"] = {"type": "feedback", "say": "점수", "comment": True}
    from voicebot.errors import FlowError
    with pytest.raises(FlowError, match="feedback_comment"):
        parse_flow(yaml.safe_dump(tree, allow_unicode=True), "ko.yaml")


# -- every caller entry, a whole varied call ------------------------------------------------------------

def test_every_caller_entry_of_varied_calls_has_a_note_from_the_vocabulary():
    calls = [
        ["", "ik wil een pizza bestellen", "meterstand doorgeven", "#1234567", "nee", "#7654321", "ja",
         "vijf maart negentienzeventig", "twaalf", "", "ja", "drie"],
        ["#1", "#3", "#9", "wat zijn de openingstijden", "", "vier"],
        ["ik heb een storing", "1234 AB"],
    ]
    for turns in calls:
        s = sim()
        for turn in turns:
            if s.ended:
                break
            s.silence() if not turn else s.keys(turn[1:]) if turn.startswith("#") else s.say(turn)
        caller = [e for e in s.state.transcript if e["who"] == "caller"]
        assert caller and all(set(e["understood"]) == {"result", "intent", "confidence"} for e in caller)
        assert all(e["understood"]["result"] in TURN_RESULTS for e in caller)
