"""The dialog engine: one call's state plus one event in, a list of actions out.

The rules no flow can forget live here, not in the flows: the transfer words and key 0 reach a
person from any step; a middling answer is confirmed; a miss is asked again once, more
specifically, and then handed to a person; two silences hand over too; and a call can never loop
forever (``max_turns``, ``max_total_misses``). Each step type has a handler registered by name.

Only the engine decides what the caller hears and only the engine builds a handoff context, also
when the call's own machinery fails: a call without speech recognition goes on by keypad
(``CallStarted(speech=False)``, ``SpeechUnavailable``; the rules are in ``keypad.py``), and a
``SystemFailure`` hands the call to a person with everything known so far.

A caller whose earlier call stopped before it was done (``CallStarted.earlier``) hears the opening
and then, instead of the first question, whether to go on with it: yes restores where it stopped
and what was given, never secrets or identity; no, or no clear answer, starts afresh.

Who is calling is found out at a ``verify`` step (the rules per method are in ``verification.py``):
the engine asks what is missing, hands the values to the identity adapter in a ``CheckIdentity``
action (a secret goes from the caller's answer into that action and nowhere else) and goes on with
its ``IdentityChecked`` answer. A route to an intent that needs a higher level than the call has
passes through the flow's verify step first. Failing never strands a caller: too many wrong
answers, a lockout or a directory that cannot answer hand the call to a person, unverified.

Every caller entry of the transcript says what became of it (``understood``: one of
``outcomes.TURN_RESULTS``, the intent or slot it was taken or guessed as, and that guess's
confidence), so call records can show where callers were not understood. The engine writes these
notes and never reads them back.

A feedback step with ``comment: true`` asks a caller who gave the score by voice for a few words
more: the next utterance is the comment (kept in ``feedback_comment``, digit runs masked, because a
caller may say anything there); silence or keys skip it. Only a whole utterance of transfer words
asks for a person there, since a comment may well mention "de medewerker".
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from typing import Any, Callable

from voicebot.dialog import keypad, sentences, verification
from voicebot.dialog.actions import Action, CheckIdentity, Hangup, Listen, Say, SendSms, Transfer
from voicebot.dialog.context import build_context, caller_summary
from voicebot.dialog.events import (
    CallEnded, CallStarted, Digits, Event, IdentityChecked, NoInput, SpeechUnavailable, SystemFailure, Utterance,
)
from voicebot.dialog.hours import is_open
from voicebot.dialog.present import masked, spoken, to_json
from voicebot.dialog.state import CallState, unverified
from voicebot.dialog.understanding import ACCEPT, CONFIRM, REJECT, assess, unknown_ratio
from voicebot.flow import Flow
from voicebot.flow.schema import AskStep, Confidence, FeedbackStep, RouteStep, VerifyStep
from voicebot.nlu.lexicon import NO, YES
from voicebot.nlu.normalize import contains_phrase, normalize
from voicebot.nlu.slots import parse_score, parse_slot, parse_yes_no

MAX_CHAINED_STEPS = 100
EARLIER_TRANSCRIPT = 50
"""Entries of an earlier call's transcript an agent gets with a resumed call (its last ones)."""
MAX_COMMENT = 500
"""Characters of a feedback comment kept (a recogniser's utterance is bounded in time anyway)."""
DIGIT_RUN = re.compile(r"\d(?:[\s./-]?\d){3,}")
"""Four or more digits in a row (a postcode, a date, an account or PIN said in a comment)."""


class DialogEngine:
    """Runs one flow. Thread-safe: all per-call data is in the ``CallState`` passed in."""

    def __init__(self, flow: Flow, *, max_turns: int = 40, max_total_misses: int = 3, hash_salt: str = ""):
        self.flow = flow
        self.spec = flow.spec
        self.max_turns = max_turns
        self.max_total_misses = max_total_misses
        self._salt = hash_salt.encode()
        # What the flow can say without a slot value (the texts rendered ahead into the disk cache);
        # any other text was filled from the call's values and is said as a personal prompt.
        self._static = frozenset(text for text, _ in sentences.static_sentences(flow))
        self._handlers: dict[str, Callable[[CallState, Any, Event], list[Action]]] = {
            "route": self._on_route,
            "ask": self._on_ask,
            "feedback": self._on_feedback,
            "verify": self._on_verify,
        }

    # -- entry points -------------------------------------------------------------------------

    def new_state(self, event: CallStarted) -> CallState:
        """A fresh call's state, before anything is said (``keypad_only`` when it has no speech)."""
        return CallState(
            call_id=event.call_id, flow=self.flow.id, language=self.flow.language,
            caller=event.caller, called=event.called,
            started_at=event.at or dt.datetime.now().replace(microsecond=0).isoformat(),
            keypad_only=not event.speech, identity=unverified(self.spec.identity.levels[0]),
        )

    def start(self, event: CallStarted) -> tuple[CallState, list[Action]]:
        """The state and the opening turn. Without speech the caller hears the flow's
        ``speech_unavailable`` notice once, after the opening ``say`` steps, before the first question.
        With an ``earlier`` call to go on with, the opening is followed by that offer instead."""
        state = self.new_state(event)
        earlier = self._resumable(event.earlier)
        if earlier is None:
            return state, self._enter(state, self.spec.start, notice=state.keypad_only)
        actions = self._enter(state, self.spec.start, ask=False)
        if state.ended:              # the opening itself ended the call (closed: to the agents' queue)
            return state, actions
        offer, state.earlier_call = earlier
        return state, actions + self._offer_resume(state, offer, notice=state.keypad_only)

    def resume(self, state: CallState, *, speech: bool = True) -> list[Action]:
        """Pick up an interrupted call where it was: the current step is asked again from its start.
        ``speech=False`` (the new stream has no recognition): on a call that had speech, the keypad
        notice and the current question by keys, as for ``SpeechUnavailable``."""
        if state.ended or not state.step:
            return []
        if not speech and not state.keypad_only:
            return self._on_speech_lost(state, SpeechUnavailable("no speech after resuming"))
        if state.resume_offer is not None:
            return self._offer_resume(state, state.resume_offer)
        step = self.spec.steps[state.step]
        if self._awaiting_comment(state, step):
            return self._ask_comment(state, step)
        return self._enter(state, state.step)

    def handle(self, state: CallState, event: Event) -> list[Action]:
        """The next turn. Nothing (``[]``) for an ended call, a ``CallStarted`` (use ``start``), and a
        ``SpeechUnavailable`` when the call already runs by keypad: keep listening as before."""
        if state.ended or isinstance(event, CallStarted):
            return []
        if isinstance(event, SystemFailure):
            return self._on_failure(state, event)
        if isinstance(event, SpeechUnavailable):
            return self._on_speech_lost(state, event)
        if isinstance(event, CallEnded):
            state.ended, state.outcome, state.reason = True, "caller_hangup", event.reason
            state.failures.append({"step": state.step, "kind": "hangup"})
            return []
        if isinstance(event, IdentityChecked):
            return self._on_identity(state, event)
        if state.step is None:       # a state from new_state() that was never started: nothing to answer
            return []
        if state.verify and state.verify.get("checking"):
            return []                # the identity adapter answers a CheckIdentity before the caller is heard
        step = self.spec.steps[state.step]
        comment = self._awaiting_comment(state, step)
        self._log_caller(state, None if state.resume_offer else step, event, comment=comment)
        state.turns += 1
        if self._wants_agent(event, whole=comment):
            self._note(state, "agent")
            return self._transfer(state, "explicit_request")
        if state.turns > self.max_turns:
            return self._transfer(state, "loop_guard")
        if comment:
            return self._on_comment(state, step, event)
        if state.resume_offer is not None:
            return self._on_resume_answer(state, step, event)
        if isinstance(event, NoInput):
            return self._on_no_input(state, step)
        state.no_inputs = 0
        if state.pending:
            return self._on_confirmation(state, step, event)
        return self._handlers[step.type](state, step, event)

    # -- moving through the flow ----------------------------------------------------------------

    def _enter(self, state: CallState, step_id: str, *, notice: bool = False, ask: bool = True) -> list[Action]:
        """Run steps from ``step_id`` up to the next question (or the end). ``notice``: say the
        keypad notice just before that question. ``ask=False``: stop at that question without asking
        it (the caller is asked something else first)."""
        actions: list[Action] = []
        for _ in range(MAX_CHAINED_STEPS):
            step = self.spec.steps[step_id]
            state.step, state.misses, state.no_inputs, state.pending = step_id, 0, 0, None
            state.keys_menu = False
            state.visited.append(step_id)
            kind = step.type
            if kind == "hours":
                step_id = step.open if self._open(state) else step.closed
            elif kind == "say":
                actions.append(self._prompt(state, step_id, step))
                step_id = step.next
            elif kind == "answer":
                state.sources.append(step.source)
                actions.append(self._prompt(state, step_id, step))
                actions.append(self._say(state, sentences.source(self.flow, step), step))
                step_id = step.next
            elif kind == "sms":
                actions.extend(self._sms(state, step))
                step_id = step.next
            elif kind == "verify":
                more, target = self._verify_enter(state, step_id, step, notice)
                actions += more
                if target is None:
                    return actions
                step_id = target
            elif kind == "transfer":
                return actions + self._transfer(state, step.reason, queue=step.queue,
                                                 say=self._text(state, step_id) or None)
            elif kind == "hangup":
                text, prompt_id = sentences.hangup_words(self.flow, step_id, self._values(state), state.keypad_only)
                actions.append(self._say(state, text or "", step, prompt_id=prompt_id))
                return actions + self._hang_up(state, "completed")
            else:  # a listening step: ask and wait
                if not ask:
                    return actions
                if state.keypad_only and not keypad.keyable(step):
                    state.failures.append({"step": step_id, "kind": "needs_speech"})
                    return actions + self._transfer(state, "no_speech")
                if notice:
                    actions.append(self._say(state, sentences.speech_unavailable(self.flow), step))
                return actions + self._ask(state, step_id, step)
        raise RuntimeError(f"flow {self.flow.id}: more than {MAX_CHAINED_STEPS} steps without listening")

    def _advance(self, state: CallState, step: Any, answer: Any = None) -> list[Action]:
        branches = getattr(step, "branches", None) or {}
        key = ("yes" if answer else "no") if isinstance(answer, bool) else str(answer)
        target = branches.get(key) or step.next
        return self._enter(state, target)

    # -- step handlers --------------------------------------------------------------------------

    def _on_route(self, state: CallState, step: RouteStep, event: Event) -> list[Action]:
        if isinstance(event, Digits):
            return self._on_route_keys(state, step, event.digits)
        if not isinstance(event, Utterance) or self.flow.classifier is None or unknown_ratio(event) >= 0.5:
            return self._miss(state, step, "not_understood")
        result = self.flow.classifier.classify(event.text)
        if result.intent is None or result.intent not in step.routes:
            kind = "not_understood" if result.intent is None and not result.is_out_of_scope else "out_of_scope"
            return self._miss(state, step, kind, detail=result.to_dict(), guess=_best_guess(result))
        guess = (result.intent, result.confidence)
        verdict = assess(result.confidence, result.margin, event, self._confidence(step))
        if verdict.decision == ACCEPT:
            self._note(state, "accepted", *guess)
            return self._take_intent(state, step, result.intent, verdict.score)
        if verdict.decision == CONFIRM:
            self._note(state, "confirm", *guess)
            question = sentences.confirm_intent(self.flow, result.intent)
            state.pending = {"kind": "intent", "intent": result.intent, "score": verdict.score,
                             "confidence": result.confidence, "question": question}
            return [self._say(state, question, step), self._confirm_listen(state, step)]
        return self._miss(state, step, "low_confidence", detail={**result.to_dict(), **verdict.signals}, guess=guess)

    def _on_route_keys(self, state: CallState, step: RouteStep, keys: str) -> list[Action]:
        """Keys at a route step: the numbered menu picks a route. Keys at the open question (speech
        available) are no miss: the caller hears the menu, and the step stays in keys from then on."""
        if not (state.keypad_only or state.keys_menu):
            state.keys_menu = True
            return [self._say(state, sentences.menu(self.flow, step), step), self._listen(state, step)]
        intent = keypad.route_for_key(self.flow, step, keys)
        if intent is None:
            return self._miss(state, step, "invalid_key", prefix="invalid_key")
        self._note(state, "accepted", intent, 1.0)
        return self._take_intent(state, step, intent, 1.0)

    def _take_intent(self, state: CallState, step: RouteStep, intent: str, score: float) -> list[Action]:
        """Go to the intent's route; first through the verify step when the intent needs a level the
        call has not reached (no such step: a person takes over rather than the call going on)."""
        state.intent, state.intent_confidence = intent, round(score, 3)
        target = step.routes[intent]
        needed = self.spec.needed_level(intent)
        ids = self.spec.identity
        if ids.rank(needed) <= ids.rank(state.identity["level"]):
            return self._enter(state, target)
        gate = self.spec.gate_for(needed)
        if gate is None:
            return self._verification_failed(state)
        then = target if target != gate else self._route_of(intent, avoid=gate)
        state.verify = verification.new_progress(gate, then=then, needed=needed)
        return self._enter(state, gate)

    def _route_of(self, intent: str | None, avoid: str) -> str | None:
        """Where a route step takes ``intent`` (other than ``avoid``): the way on from a guarding verify
        step when the call came to it without a route (a call going on where an earlier one stopped)."""
        return next((step.routes[intent] for step in self.spec.steps.values()
                     if isinstance(step, RouteStep) and intent in step.routes and step.routes[intent] != avoid), None)

    def _on_ask(self, state: CallState, step: AskStep, event: Event) -> list[Action]:
        value = self._slot_value(state, step, event)
        if value is None:
            return self._miss(state, step, "not_understood")
        if isinstance(event, Digits):
            decision, score = ACCEPT, 1.0
        else:
            verdict = assess(1.0, 1.0, event, self._confidence(step))
            decision, score = verdict.decision, verdict.score
        if decision == ACCEPT and not (step.confirm and not step.is_secret):
            self._note(state, "accepted", step.slot, score)
            return self._take_slot(state, step, value)
        if decision in (ACCEPT, CONFIRM) and not step.is_secret:     # a secret is never read back
            self._note(state, "confirm", step.slot, score)
            shown = spoken(value, step.slot_type, self.flow.language, self.flow.messages)
            question = sentences.confirm_value(self.flow, step, self._values(state), shown, state.keypad_only) or ""
            state.pending = {"kind": "slot", "value": to_json(value), "score": score, "question": question}
            return [self._say(state, question, step), self._confirm_listen(state, step)]
        return self._miss(state, step, "low_confidence", guess=(step.slot, score))

    def _take_slot(self, state: CallState, step: AskStep, value: Any) -> list[Action]:
        if step.is_secret:
            digest = hmac.new(self._salt, str(to_json(value)).encode(), hashlib.sha256).hexdigest()
            state.secrets[step.slot] = digest
        else:
            state.slots[step.slot] = to_json(value)
        return self._advance(state, step, value)

    def _on_confirmation(self, state: CallState, step: Any, event: Event) -> list[Action]:
        pending, state.pending = state.pending, None
        answer: bool | None = None
        if isinstance(event, Utterance):
            answer = parse_yes_no(event.text, self.flow.language)
        elif isinstance(event, Digits) and event.digits in ("1", "2"):
            answer = event.digits == "1"
        if answer is None:
            return self._miss(state, step, "not_understood")
        guess = (pending.get("intent") if pending["kind"] == "intent" else getattr(step, "slot", None),
                 pending.get("confidence", pending.get("score")))
        if not answer:
            return self._miss(state, step, "denied", prefix="confirm_no", guess=guess)
        self._note(state, "confirmed", *guess)
        if pending["kind"] == "intent":
            return self._take_intent(state, step, pending["intent"], pending["score"])
        value = pending["value"]
        if step.slot_type == "date":
            value = dt.date.fromisoformat(value)
        return self._take_slot(state, step, value)

    def _on_feedback(self, state: CallState, step: FeedbackStep, event: Event) -> list[Action]:
        score = None
        if isinstance(event, Digits) and len(event.digits) == 1:
            score = parse_score(event.digits, self.flow.language)
        elif isinstance(event, Utterance):
            score = parse_score(event.text, self.flow.language)
        if score is None:
            self._note(state, "not_understood")
            if state.misses >= self._retries(step):
                return self._goodbye(state, step)
            state.misses += 1
            state.failures.append({"step": state.step, "kind": "not_understood"})
            text = sentences.score_retry(self.flow, state.keypad_only)
            return [self._say(state, text, step), self._listen(state, step)]
        self._note(state, "accepted")
        state.feedback = score
        if step.comment and not state.keypad_only:
            state.misses, state.no_inputs = 0, 0
            return self._ask_comment(state, step)
        return self._goodbye(state, step)

    def _awaiting_comment(self, state: CallState, step: Any) -> bool:
        """Is the caller's next turn the comment after the score? (A keypad call is never asked for one.)"""
        return (isinstance(step, FeedbackStep) and step.comment and state.feedback is not None
                and not state.keypad_only and not state.ended)

    def _ask_comment(self, state: CallState, step: FeedbackStep) -> list[Action]:
        """The question for a few words, and a listen for free speech (keys only end it)."""
        timeout = step.no_input_timeout or self.spec.defaults.no_input_timeout
        return [self._say(state, sentences.feedback_comment(self.flow), step),
                Listen(step=state.step, speech=True, dtmf=True, no_input_timeout=timeout, max_digits=1)]

    def _on_comment(self, state: CallState, step: FeedbackStep, event: Event) -> list[Action]:
        """What the caller said after the score is the comment; silence or keys skip it. Then thanks."""
        if not isinstance(event, Utterance):
            self._note(state, "other", "comment")      # no comment is an answer too, not a turn to ask again
        elif normalize(event.text, self.flow.language).replace("[unk]", "").strip():
            self._note(state, "accepted", "comment")
            state.feedback_comment = self._comment_text(event.text)
        return self._goodbye(state, step)

    def _comment_text(self, text: str) -> str:
        """A comment as kept: digit runs masked (a caller may say a number that must not be stored), bounded."""
        return DIGIT_RUN.sub(self.flow.msg("redacted"), text.strip())[:MAX_COMMENT]

    def _goodbye(self, state: CallState, step: FeedbackStep) -> list[Action]:
        thanks = sentences.thanks(self.flow, step, self._values(state)) or ""
        return [self._say(state, thanks, step)] + self._hang_up(state, "completed")

    # -- going on with an earlier call ------------------------------------------------------------

    def _resumable(self, earlier: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """What a "yes" restores from an earlier call's stored state, and the reference to that call
        for the agent; None when there is nothing to offer: resuming is off, the call was of another
        flow, it ended (a transfer, a hang-up step) or had reached feedback, it had no intent yet, or it
        stopped at a step or intent this flow no longer has.

        Only what is named here is taken: the step, the intent and the slots that are not secret.
        Secrets, identity, verification in progress and counters stay with the earlier call."""
        if not isinstance(earlier, dict) or not self.spec.resume.window_minutes:
            return None
        step, intent, confidence = earlier.get("step"), earlier.get("intent"), earlier.get("intent_confidence")
        if (earlier.get("flow") != self.flow.id or earlier.get("outcome") not in (None, "caller_hangup")
                or not isinstance(step, str) or step not in self.spec.steps
                or self.spec.steps[step].type == "feedback"
                or not isinstance(intent, str) or intent not in self.spec.intents):
            return None
        secret = self.flow.secret_slots()
        slots = earlier.get("slots") if isinstance(earlier.get("slots"), dict) else {}
        kept = {name: value for name, value in slots.items()
                if isinstance(name, str) and name not in secret and isinstance(value, (str, int, float, bool))}
        transcript = earlier.get("transcript") if isinstance(earlier.get("transcript"), list) else []
        offer = {"step": step, "intent": intent, "slots": kept,
                 "intent_confidence": float(confidence) if isinstance(confidence, (int, float)) else 1.0}
        reference = {"call_id": str(earlier.get("call_id", "")),
                     "transcript": [entry for entry in transcript if isinstance(entry, dict)][-EARLIER_TRANSCRIPT:]}
        return offer, reference

    def _offer_resume(self, state: CallState, offer: dict[str, Any], *, notice: bool = False) -> list[Action]:
        """Ask whether to go on with the earlier call: a yes/no question at the first question's place."""
        state.resume_offer = offer
        step = self.spec.steps[state.step]
        actions = [self._say(state, sentences.speech_unavailable(self.flow), step)] if notice else []
        question = sentences.resume_offer(self.flow, offer["intent"], state.keypad_only) or ""
        return actions + [self._say(state, question, step), self._confirm_listen(state, step)]

    def _on_resume_answer(self, state: CallState, step: Any, event: Event) -> list[Action]:
        """Yes (or key 1): back at the earlier call's step, asked from its start, with its intent and
        values. No (or key 2), or still no clear answer after the step's retries: the first question,
        without the opening again. The intent is taken as a route takes it, so whatever an intent
        requires before its steps (identity) is required again."""
        offer = state.resume_offer
        self._note(state, "no_input" if isinstance(event, NoInput) else "other")
        answer: bool | None = None
        if isinstance(event, Utterance):
            answer = parse_yes_no(event.text, self.flow.language)
        elif isinstance(event, Digits) and event.digits in ("1", "2"):
            answer = event.digits == "1"
        if answer is None and state.misses < self._retries(step):
            state.misses += 1
            question = sentences.resume_offer(self.flow, offer["intent"], state.keypad_only)
            kind = "no_input" if isinstance(event, NoInput) else "not_understood"
            return [self._say(state, sentences.retry(self.flow, kind, question) or "", step),
                    self._confirm_listen(state, step)]
        state.resume_offer = None
        if not answer:
            state.earlier_call = None
            return self._enter(state, state.step)
        state.slots.update(offer["slots"])
        earlier_route = RouteStep.model_construct(type="route", reprompt="", routes={offer["intent"]: offer["step"]})
        return [self._say(state, sentences.resume_yes(self.flow), step)] + \
            self._take_intent(state, earlier_route, offer["intent"], offer["intent_confidence"])

    # -- verification ---------------------------------------------------------------------------

    def _verify_enter(self, state: CallState, step_id: str, step: VerifyStep,
                      notice: bool) -> tuple[list[Action], str | None]:
        """Entering a verify step: nothing when the call already has the level (go on at the returned
        step), else its introduction and the first question or check. A verify step entered again
        (a resumed call) keeps where it was going and what was given."""
        progress = state.verify
        if not progress or progress.get("step") != step_id:
            progress = state.verify = verification.new_progress(step_id)
        progress["checking"] = None
        progress["notice"] = notice
        if self._verified_enough(state, step):
            state.verify = None
            target = progress["then"] or step.next or self._route_of(state.intent, avoid=step_id)
            return ([], target) if target else (self._transfer(state, "flow"), None)
        intro: list[Action] = [self._prompt(state, step_id, step)] if self._text(state, step_id) else []
        return intro + self._verify_go(state, step), None

    def _goal(self, state: CallState, step: VerifyStep) -> str:
        progress = state.verify or {}
        return progress.get("needed") or step.level or self.spec.reach(step)

    def _verified_enough(self, state: CallState, step: VerifyStep) -> bool:
        ids = self.spec.identity
        return ids.rank(state.identity["level"]) >= ids.rank(self._goal(state, step))

    def _useful(self, state: CallState, method: str, goal: str) -> bool:
        """Can this method still raise the call to ``goal``? (Caller ID: once per call, with a number.)"""
        ids = self.spec.identity
        level = ids.method_level(method)
        if method not in verification.METHOD_FIELDS or ids.rank(level) < ids.rank(goal) \
                or ids.rank(level) <= ids.rank(state.identity["level"]):
            return False
        if state.keypad_only and not verification.keyable_method(method):
            return False
        if method == "caller_id":
            tried = any(a["method"] == "caller_id" for a in state.identity["attempts"])
            return not tried and state.caller.lstrip("+").isdigit()
        return True

    def _verify_go(self, state: CallState, step: VerifyStep) -> list[Action]:
        """The next question or check of the first method that can still help; when none is left
        a person takes over (by keypad, when only speech could go on: as any step that needs it)."""
        progress = state.verify
        assert progress is not None
        goal = self._goal(state, step)
        for index in range(progress["method"], len(step.methods)):
            method = step.methods[index]
            if not self._useful(state, method, goal):
                continue
            if index != progress["method"]:
                verification.to_method(progress, index)
            if method == "caller_id":
                progress["checking"] = method
                return [CheckIdentity(method=method, values={}, caller=state.caller)]
            progress["field"] = verification.next_field(method, state.slots, progress["asked"], progress["fresh"])
            return self._verify_question(state, step)
        verification.to_method(progress, len(step.methods))
        if state.keypad_only and any(not verification.keyable_method(m) for m in step.methods):
            state.failures.append({"step": state.step, "kind": "needs_speech"})
            return self._transfer(state, "no_speech")
        return self._verification_failed(state)

    def _verify_question(self, state: CallState, step: VerifyStep, text: str | None = None) -> list[Action]:
        """The question for the value being asked (``text``: other words for it), and the listen."""
        progress = state.verify
        assert progress is not None and progress["field"]
        actions: list[Action] = []
        if progress.pop("notice", False) and state.keypad_only:
            actions.append(self._say(state, sentences.speech_unavailable(self.flow), step))
        if text is None:
            text = sentences.verify_question(self.flow, progress["field"], state.keypad_only)
        return actions + [self._say(state, text, step), self._listen(state, step)]

    def _on_verify(self, state: CallState, step: VerifyStep, event: Event) -> list[Action]:
        """An answer to a verify question: kept as a slot and the next question asked, or, for the
        method's secret, handed straight to the check."""
        progress = state.verify
        if not progress or not progress.get("field"):
            state.verify = progress or verification.new_progress(state.step or "")
            return self._verify_go(state, step)
        name = progress["field"]
        today = dt.datetime.fromisoformat(state.started_at).date() if state.started_at else dt.date.today()
        value = verification.answer(self.spec, name, event, today, state.keypad_only)
        if value is None:
            return self._miss(state, step, "not_understood")
        verdict = assess(1.0, 1.0, event, self._confidence(step)) if isinstance(event, Utterance) else None
        if verdict is not None and verdict.decision == REJECT:
            return self._miss(state, step, "low_confidence", guess=(name, verdict.score))
        self._note(state, "accepted", name, verdict.score if verdict is not None else 1.0)
        method = step.methods[progress["method"]]
        if name in verification.SECRET_FIELDS:
            values = {f: str(state.slots.get(f, "")) for f in verification.METHOD_FIELDS[method]
                      if f not in verification.SECRET_FIELDS}
            values[name] = value
            progress["field"], progress["checking"] = None, method
            return [CheckIdentity(method=method, values=values, caller=state.caller)]
        state.slots[name] = value
        progress["asked"].append(name)
        state.misses = 0
        progress["field"] = verification.next_field(method, state.slots, progress["asked"], progress["fresh"])
        return self._verify_question(state, step)

    def _on_identity(self, state: CallState, event: IdentityChecked) -> list[Action]:
        """The identity adapter's answer to the check the engine asked for (any other is ignored)."""
        progress = state.verify
        if not progress or progress.get("checking") != event.method or progress.get("step") not in self.spec.steps:
            return []
        progress["checking"] = None
        step = self.spec.steps[progress["step"]]
        identity = state.identity
        identity["attempts"].append({"method": event.method, "outcome": event.outcome})
        if event.outcome == "match":
            return self._verify_match(state, step, event)
        if event.outcome == "no_match" and event.method == "caller_id":
            verification.to_method(progress, progress["method"] + 1)   # nothing was asked: on, without a word
            return self._verify_go(state, step)
        state.failures.append({"step": progress["step"], "kind": "verification_failed",
                               "detail": {"method": event.method, "outcome": event.outcome}})
        if event.outcome != "no_match":
            return self._verification_failed(state)
        failed = sum(1 for a in identity["attempts"] if a["outcome"] == "no_match" and a["method"] != "caller_id")
        if failed >= self.spec.identity.max_attempts:
            return [self._say(state, sentences.verify_failed(self.flow), step)] + self._verification_failed(state)
        method = step.methods[progress["method"]]
        progress.update(asked=[], fresh=True, field=verification.first_field(method))
        state.misses = 0
        again = sentences.verify_again(self.flow, sentences.verify_question(self.flow, progress["field"],
                                                                          state.keypad_only))
        return self._verify_question(state, step, again)

    def _verify_match(self, state: CallState, step: VerifyStep, event: IdentityChecked) -> list[Action]:
        """A match raises the call's level to the method's (never lowers it); once the goal is reached
        the caller hears so (not after a caller ID alone: nothing was asked) and the call goes on."""
        ids = self.spec.identity
        identity = state.identity
        level = ids.method_level(event.method) or ids.levels[0]
        if ids.rank(level) > ids.rank(identity["level"]):
            customer = event.customer or {}
            identity.update(level=level, method=event.method, verified=level == ids.levels[-1],
                            customer={"number": str(customer.get("number", "")), "name": str(customer.get("name", ""))}
                            if customer else None)
        progress = state.verify
        assert progress is not None
        if not self._verified_enough(state, step):
            verification.to_method(progress, progress["method"] + 1)
            return self._verify_go(state, step)
        state.verify = None
        target = progress["then"] or step.next or self._route_of(state.intent, avoid=progress["step"])
        actions: list[Action] = []
        if event.method != "caller_id":
            actions.append(self._say(state, sentences.verify_ok(self.flow), step))
        if target is None:      # flow validation makes a verify step in a path have a next
            return actions + self._transfer(state, "flow")
        return actions + self._enter(state, target)

    def _verification_failed(self, state: CallState) -> list[Action]:
        state.verify = None
        return self._transfer(state, "verification_failed", say=self.flow.msg("verify_locked"))

    # -- when the caller is not understood or silent --------------------------------------------

    def _miss(self, state: CallState, step: Any, kind: str, *, prefix: str | None = None,
              detail: dict[str, Any] | None = None,
              guess: tuple[str | None, float | None] = (None, None)) -> list[Action]:
        """A turn not taken (``kind`` is its result in ``outcomes.TURN_RESULTS``; ``guess`` what it
        was guessed as, and how sure): asked again, or a person takes over once retries are used up."""
        self._note(state, kind, *guess)
        state.misses += 1
        state.total_misses += 1
        failure = {"step": state.step, "kind": kind}
        if detail:
            failure["detail"] = detail
        state.failures.append(failure)
        if state.misses > self._retries(step) or state.total_misses > self.max_total_misses:
            return self._transfer(state, "low_confidence")
        if prefix is None:
            prefix = "out_of_scope" if kind == "out_of_scope" else "not_understood"
        text = sentences.retry(self.flow, prefix, self._reprompt(state, step)) or ""
        return [self._say(state, text, step), self._listen(state, step)]

    def _on_no_input(self, state: CallState, step: Any) -> list[Action]:
        self._note(state, "no_input")
        state.no_inputs += 1
        state.failures.append({"step": state.step, "kind": "no_input"})
        if state.no_inputs >= 2:
            if step.type == "feedback":
                return [self._say(state, sentences.goodbye(self.flow), step)] + self._hang_up(state, "completed")
            return self._transfer(state, "no_input")
        if state.pending:
            text = sentences.retry(self.flow, "no_input", state.pending["question"]) or ""
            return [self._say(state, text, step), self._confirm_listen(state, step)]
        text = sentences.retry(self.flow, "no_input", self._reprompt(state, step)) or ""
        return [self._say(state, text, step), self._listen(state, step)]

    def _reprompt(self, state: CallState, step: Any) -> str:
        """The more specific second question (``sentences.reprompt``), by keys when the call or step is."""
        if isinstance(step, VerifyStep) and state.verify and state.verify.get("field"):
            return sentences.verify_reprompt(self.flow, state.verify["field"], state.keypad_only)
        return sentences.reprompt(self.flow, state.step, step, self._values(state), by_keys=self._by_keys(state, step),
                                  keypad_only=state.keypad_only) or ""

    # -- when speech recognition or our own machinery fails -------------------------------------

    def _on_speech_lost(self, state: CallState, event: SpeechUnavailable) -> list[Action]:
        """From now on by keypad: the notice at once, then the current question again for keys
        (a pending yes/no question is asked again and stays pending)."""
        if state.keypad_only:
            return []
        state.keypad_only = True
        failure: dict[str, Any] = {"step": state.step, "kind": "speech_unavailable"}
        if event.reason:
            failure["detail"] = event.reason
        state.failures.append(failure)
        if state.step is None:
            return []
        step = self.spec.steps[state.step]
        state.no_inputs = 0
        if isinstance(step, FeedbackStep) and step.comment and state.feedback is not None:
            return self._goodbye(state, step)        # the score is in; a comment needs speech
        if state.resume_offer is not None:
            return self._offer_resume(state, state.resume_offer, notice=True)
        if isinstance(step, VerifyStep):
            return self._verify_by_keys(state, step)
        if not keypad.keyable(step):
            state.failures.append({"step": state.step, "kind": "needs_speech"})
            return self._transfer(state, "no_speech")
        notice = self._say(state, sentences.speech_unavailable(self.flow), step)
        if state.pending:
            question = sentences.with_keys_yes_no(self.flow, state.pending["question"]) or ""
            state.pending["question"] = question
            return [notice, self._say(state, question, step), self._confirm_listen(state, step)]
        return [notice] + self._ask(state, state.step, step)

    def _verify_by_keys(self, state: CallState, step: VerifyStep) -> list[Action]:
        """Speech lost at a verify step: the notice, then the question asked again for keys, or the
        next method that keys can answer (a postcode's letters cannot be keyed)."""
        progress = state.verify
        if not progress:
            progress = state.verify = verification.new_progress(state.step or "")
        notice = self._say(state, sentences.speech_unavailable(self.flow), step)
        if progress.get("checking"):
            return [notice]
        method = step.methods[progress["method"]] if progress["method"] < len(step.methods) else None
        if method and verification.keyable_method(method) and progress.get("field"):
            return [notice] + self._verify_question(state, step)
        rest = self._verify_go(state, step)
        return rest if any(isinstance(a, Transfer) for a in rest) else [notice] + rest

    def _on_failure(self, state: CallState, event: SystemFailure) -> list[Action]:
        """A person takes over, with the full context; works before the first step too."""
        failure: dict[str, Any] = {"step": state.step, "kind": "error"}
        if event.what:
            failure["detail"] = event.what
        state.failures.append(failure)
        return self._transfer(state, "error")

    # -- ending the call ------------------------------------------------------------------------

    def _transfer(self, state: CallState, reason: str, queue: str | None = None,
                  say: str | None = None) -> list[Action]:
        settings = self.spec.transfer
        queue = queue or settings.queue
        after_hours = bool(self.spec.hours and settings.closed_queue and not self._open(state))
        if after_hours:
            queue = settings.closed_queue
        text = sentences.transfer_words(self.flow, say, after_hours=after_hours)
        actions: list[Action] = [self._say(state, text, None, barge_in=False)]
        state.ended, state.outcome, state.reason = True, "transfer", reason
        context = build_context(state, self.flow, reason, queue, after_hours=after_hours)
        return actions + [Transfer(reason=reason, queue=queue, context=context)]

    def _hang_up(self, state: CallState, reason: str) -> list[Action]:
        state.ended, state.outcome, state.reason = True, "hangup", reason
        return [Hangup(reason)]

    def _sms(self, state: CallState, step: Any) -> list[Action]:
        if not state.caller or not state.caller.lstrip("+").isdigit():
            return [self._say(state, sentences.sms_unavailable(self.flow), step)]
        body = self.flow.msg("sms_body", summary=caller_summary(state, self.flow))
        text = sentences.sms_said(self.flow, state.step, self._values(state), state.keypad_only) or ""
        return [SendSms(to=state.caller, text=body), self._say(state, text, step)]

    # -- helpers --------------------------------------------------------------------------------

    def _wants_agent(self, event: Event, whole: bool = False) -> bool:
        """Key 0, or transfer words in what was said (``whole``: nothing but transfer words)."""
        if isinstance(event, Digits):
            return event.digits == "0"
        if isinstance(event, Utterance):
            lang = self.flow.language
            if whole:
                said = normalize(event.text, lang)
                return any(said == normalize(w, lang) for w in self.flow.transfer_words)
            return any(contains_phrase(event.text, w, lang) for w in self.flow.transfer_words)
        return False

    def _open(self, state: CallState) -> bool:
        if not self.spec.hours:
            return True
        return is_open(self.spec.hours, dt.datetime.fromisoformat(state.started_at))

    def _slot_value(self, state: CallState, step: AskStep, event: Event) -> Any:
        today = dt.datetime.fromisoformat(state.started_at).date()
        mode = step.input_mode
        if isinstance(event, Digits):
            if mode == "speech" and not state.keypad_only:
                return None
            return keypad.from_keys(step, event.digits, today=today)
        if isinstance(event, Utterance) and mode != "dtmf":
            return parse_slot(step.slot_type, event.text, self.flow.language, length=step.length_range,
                              choices=step.choices, today=today)
        return None

    def _retries(self, step: Any) -> int:
        return step.retries if getattr(step, "retries", None) is not None else self.spec.defaults.retries

    def _confidence(self, step: Any) -> Confidence:
        return getattr(step, "confidence", None) or self.spec.defaults.confidence

    def _text(self, state: CallState, step_id: str) -> str:
        """A step's own words: its ``keypad`` text on a keypad-only call when it has one."""
        return sentences.own_words(self.flow, step_id, self._values(state), state.keypad_only)[0] or ""

    def _values(self, state: CallState) -> dict[str, str]:
        """The call's slot values as the caller hears them, for the flow's ``{slot}`` placeholders."""
        return {step.slot: spoken(state.slots[step.slot], step.slot_type, self.flow.language, self.flow.messages)
                for step in self.spec.steps.values()
                if isinstance(step, AskStep) and step.slot in state.slots and not step.is_secret}

    def _prompt(self, state: CallState, step_id: str, step: Any) -> Say:
        """A step's own prompt, which may have a recorded audio file under its prompt id
        (``<id>_keypad`` for its keypad text)."""
        text, prompt_id = sentences.own_words(self.flow, step_id, self._values(state), state.keypad_only)
        return self._say(state, text or "", step, prompt_id=prompt_id)

    def _by_keys(self, state: CallState, step: Any) -> bool:
        return state.keypad_only or (state.keys_menu and isinstance(step, RouteStep))

    def _ask(self, state: CallState, step_id: str, step: Any) -> list[Action]:
        """A listening step's question and the listen; by keys with what to press."""
        if isinstance(step, VerifyStep):
            return self._verify_question(state, step)
        if not self._by_keys(state, step):
            return [self._prompt(state, step_id, step), self._listen(state, step)]
        question = sentences.keypad_question(self.flow, step_id, step, self._values(state), state.keypad_only)
        says = [self._say(state, text or "", step, prompt_id=prompt_id) for text, prompt_id in question]
        return [*says, self._listen(state, step)]

    def _say(self, state: CallState, text: str, step: Any, barge_in: bool | None = None,
             prompt_id: str | None = None) -> Say:
        if barge_in is None:
            own = getattr(step, "barge_in", None)
            barge_in = own if own is not None else self.spec.defaults.barge_in
        state.transcript.append({"who": "bot", "step": state.step, "text": text})
        return Say(text=text, prompt_id=prompt_id, barge_in=barge_in, personal=bool(text) and text not in self._static)

    def _listen(self, state: CallState, step: Any) -> Listen:
        timeout = getattr(step, "no_input_timeout", None) or self.spec.defaults.no_input_timeout
        if isinstance(step, VerifyStep):
            return self._verify_listen(state, step, timeout)
        if state.keypad_only:
            return Listen(step=state.step, speech=False, dtmf=True, no_input_timeout=timeout,
                          max_digits=keypad.max_digits(step))
        words = tuple(self.flow.transfer_words)
        if isinstance(step, AskStep):
            mode = step.input_mode
            phrases: tuple[str, ...] = ()
            if step.slot_type == "yes_no":
                phrases = self._yes_no_phrases()
            elif step.slot_type == "choice":
                phrases = tuple(p for v, ps in (step.choices or {}).items() for p in [v.replace("_", " "), *ps])
            if phrases or step.grammar:
                phrases = tuple(dict.fromkeys([*phrases, *step.grammar, *words]))
            # The same keys end an entry as on a keypad call (a yes/no in one key, so a lone 0 reaches
            # a person at once; a date of birth in eight, a PIN at its longest length).
            return Listen(step=state.step, speech=mode != "dtmf", dtmf=True, phrases=phrases,
                          no_input_timeout=timeout, max_digits=keypad.max_digits(step))
        if isinstance(step, FeedbackStep):
            return Listen(step=state.step, phrases=tuple(step.grammar), no_input_timeout=timeout, max_digits=1)
        phrases = tuple(dict.fromkeys([*step.grammar, *words])) if step.grammar else ()
        return Listen(step=state.step, phrases=phrases, no_input_timeout=timeout, max_digits=1)

    def _verify_listen(self, state: CallState, step: VerifyStep, timeout: float) -> Listen:
        """Keys for a PIN (never heard by speech recognition) and on a keypad call; a grammar of
        spoken digits and the transfer words for numbers; free speech for a date or a postcode."""
        name = (state.verify or {}).get("field")
        max_digits = verification.max_digits(self.spec, name)
        if state.keypad_only or name in verification.KEYS_ONLY:
            return Listen(step=state.step, speech=False, dtmf=True, no_input_timeout=timeout, max_digits=max_digits)
        phrases = verification.phrases(name, self.flow.language)
        if phrases or step.grammar:
            phrases = tuple(dict.fromkeys([*phrases, *step.grammar, *self.flow.transfer_words]))
        return Listen(step=state.step, speech=True, dtmf=True, phrases=phrases, no_input_timeout=timeout,
                      max_digits=max_digits)

    def _confirm_listen(self, state: CallState, step: Any) -> Listen:
        timeout = getattr(step, "no_input_timeout", None) or self.spec.defaults.no_input_timeout
        if state.keypad_only:
            return Listen(step=state.step, speech=False, no_input_timeout=timeout, max_digits=1)
        phrases = tuple(dict.fromkeys([*self._yes_no_phrases(), *self.flow.transfer_words]))
        return Listen(step=state.step, phrases=phrases, no_input_timeout=timeout, max_digits=1)

    def _yes_no_phrases(self) -> tuple[str, ...]:
        lang = self.flow.language
        return tuple(dict.fromkeys([*YES.get(lang, ()), *NO.get(lang, ())]))

    def _log_caller(self, state: CallState, step: Any, event: Event, *, comment: bool = False) -> None:
        """The caller's turn in the transcript, redacted, with ``understood`` set to what is known
        before the turn is handled (``no_input`` for silence, else ``other``); ``_note`` sets the rest."""
        understood: dict[str, Any] = {"result": "other", "intent": None, "confidence": None}
        if isinstance(event, NoInput):
            entry = {"who": "caller", "step": state.step, "text": "", "event": "no_input"}
            understood["result"] = "no_input"
        elif isinstance(event, Digits):
            entry = {"who": "caller", "step": state.step, "digits": self._redact(state, step, event.digits, keys=True)}
        elif isinstance(event, Utterance):
            text = self._comment_text(event.text) if comment else self._redact(state, step, event.text)
            entry = {"who": "caller", "step": state.step, "text": text, "confidence": round(event.confidence, 3)}
        else:
            return
        entry["understood"] = understood
        state.transcript.append(entry)

    def _note(self, state: CallState, result: str, intent: str | None = None, confidence: float | None = None) -> None:
        """What became of this turn: written on its caller entry, the last one in the transcript (only
        turn handlers call this, after ``_log_caller``)."""
        for entry in reversed(state.transcript):
            if entry.get("who") == "caller":
                entry["understood"] = {"result": result, "intent": intent,
                                       "confidence": None if confidence is None else round(float(confidence), 3)}
                return

    def _redact(self, state: CallState, step: Any, text: str, keys: bool = False) -> str:
        """Secrets and full postcodes never reach the transcript; the parsed masked form does."""
        if isinstance(step, AskStep) and step.is_secret:
            return self.flow.msg("redacted")
        if isinstance(step, VerifyStep) and (state.verify or {}).get("field") in verification.SECRET_FIELDS:
            return text if keys and text == "0" else self.flow.msg("redacted")
        if isinstance(step, AskStep) and step.slot_type == "postcode" and not state.pending:
            value = keypad.from_keys(step, text) if keys else parse_slot("postcode", text, self.flow.language)
            if keys and text == "0":
                return text
            return masked(value, "postcode") if value else self.flow.msg("redacted")
        return text


def _best_guess(result: Any) -> tuple[str | None, float | None]:
    """A rejected classification's nearest intent and its confidence (the classifier's top candidate)."""
    if result.intent is not None:
        return result.intent, result.confidence
    if result.alternatives:
        intent, confidence = result.alternatives[0]
        return intent, confidence
    return None, None
