"""Try a flow without a phone: a text call in the terminal, and scripted scenarios for regression tests.

Typed text stands in for recognised speech (confidence 1.0 unless a scenario says otherwise),
``#123`` for keys and an empty line for silence. The same engine runs as on a real call, so what
passes here behaves the same on the phone.

A call without speech recognition is simulated with ``speech=False`` (``chat(keypad=True)``, or
``speech: false`` in a scenario file or scenario): the engine runs it by keypad, as on a phone
line without a speech model. Scenario turns may also send ``speech_unavailable`` (recognition
failing mid-call) and ``failure`` (something on our side breaking).

Identity checks go to the configured customer directory (``commands.context.chat_identity``), as on the
phone. The lockout counters are Redis's when it answers, so that several chats show the lockout
across calls as the phone does; without Redis they are counted in the chat's own process (it is a
development tool: a server fails closed instead). Scenario runs (`voicebot chat --script`) always
count in their own process, one set of counters per run, so that a regression run never depends on
an earlier one or on what a developer's Redis holds.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, TextIO

from pydantic import Field, ValidationError

from voicebot.dialog.actions import Action, Hangup, Listen, Say, SendSms, Transfer
from voicebot.dialog.engine import DialogEngine
from voicebot.dialog.events import (
    CallEnded, CallStarted, Digits, Event, NoInput, SpeechUnavailable, SystemFailure, Utterance,
)
from voicebot.dialog.state import CallState
from voicebot.errors import ScenarioError
from voicebot.flow import Flow
from voicebot.identity.service import IdentityService, settle, uses_verification
from voicebot.scenario import Expectations, Scenario, Spec, Turn, first_problem, problem, quoted_numbers, read_yaml


class Simulation:
    """One simulated call: feed it events, read back actions and state."""

    def __init__(self, flow: Flow, *, caller: str = "+31612345678", at: str | None = None,
                 max_turns: int = 40, call_id: str = "SIM-1", speech: bool = True, called: str = "+31850000000",
                 identity: IdentityService | None = None, earlier: dict[str, Any] | None = None):
        """``earlier``: the stored state of an unfinished call from this number, to be offered to go on with."""
        self.flow = flow
        self.engine = DialogEngine(flow, max_turns=max_turns)
        self.identity = identity
        start = CallStarted(call_id=call_id, caller=caller, called=called,
                            at=at or dt.datetime.now().replace(microsecond=0).isoformat(), speech=speech,
                            earlier=earlier)
        self.state: CallState
        self.state, opening = self.engine.start(start)
        self.opening = settle(self.engine, self.state, opening, identity)
        self.transfer: Transfer | None = None
        self.ending: dict[str, Any] | None = None
        self._ended_by(self.opening)
        self.last_nlu: dict[str, Any] | None = None

    @property
    def ended(self) -> bool:
        return self.state.ended

    def send(self, event: Event) -> list[Action]:
        self.last_nlu = None
        if isinstance(event, Utterance) and self.flow.classifier and not self.state.pending:
            step = self.flow.spec.steps.get(self.state.step or "")
            if step is not None and step.type == "route":
                self.last_nlu = self.flow.classifier.classify(event.text).to_dict()
        actions = settle(self.engine, self.state, self.engine.handle(self.state, event), self.identity)
        self._ended_by(actions)
        return actions

    def _ended_by(self, actions: list[Action]) -> None:
        """Keep the call's ending as the phone's session stores it for /twilio/after-stream."""
        for action in actions:
            if isinstance(action, Transfer):
                self.transfer = action
                self.ending = self.ending or {"action": "transfer", "queue": action.queue, "reason": action.reason}
            elif isinstance(action, Hangup):
                self.ending = self.ending or {"action": "hangup", "reason": action.reason}

    def store_record(self, *, updated_at: float | None = None,
                     timings: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The call as the call store (``telephony.store``) holds a finished phone call, for
        ``records.build.build_record``: the state, the flow and its version, who called, how it
        ended and Twilio's final status. ``updated_at`` (epoch seconds) is when it ended (default:
        now); ``timings`` the per-turn timings a phone call's session measures (none here)."""
        record: dict[str, Any] = {
            "state": self.state.to_dict(), "flow": self.flow.id, "flow_version": self.flow.version,
            "language": self.flow.language, "caller": self.state.caller, "called": self.state.called,
            "status": "completed", "updated_at": time.time() if updated_at is None else updated_at,
        }
        if self.ending is not None:
            record["ending"] = self.ending
        if timings is not None:
            record["timings"] = timings
        return record

    def say(self, text: str, confidence: float = 1.0) -> list[Action]:
        return self.send(Utterance(text=text, confidence=confidence))

    def keys(self, digits: str) -> list[Action]:
        return self.send(Digits(digits.rstrip("#")))

    def silence(self) -> list[Action]:
        return self.send(NoInput())


def parse_line(line: str) -> Event:
    """A typed line as a caller event: ``#123`` keys, empty silence, else speech."""
    text = line.strip()
    if not text:
        return NoInput()
    if text.startswith("#"):
        return Digits(text[1:].rstrip("#"))
    return Utterance(text=text)


def render_actions(actions: list[Action], out: TextIO) -> None:
    for action in actions:
        if isinstance(action, Say):
            out.write(f"bot> {action.text}\n")
        elif isinstance(action, Listen):
            hint = f" (grammar: {', '.join(action.phrases[:6])}{'...' if len(action.phrases) > 6 else ''})" \
                if action.phrases else ""
            out.write(f"     [listening at {action.step}{hint}]\n")
        elif isinstance(action, SendSms):
            out.write(f"     [sms to {action.to}: {action.text}]\n")
        elif isinstance(action, Transfer):
            out.write(f"     [transfer to queue '{action.queue}', reason {action.reason}]\n")
            out.write(json.dumps(action.context, indent=2, ensure_ascii=False) + "\n")
        elif isinstance(action, Hangup):
            out.write(f"     [hang up: {action.reason}]\n")


def _stdin_is_terminal() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except ValueError:  # closed
        return False


def chat(flow: Flow, *, caller: str, at: str | None, read: Callable[[str], str], out: TextIO,
         keypad: bool = False, echo: bool | None = None, identity: IdentityService | None = None) -> CallState:
    """The interactive text call. ``read`` is ``input`` in the terminal; EOF ends the call.
    ``keypad``: the call has no speech recognition, so only keys (and silence) reach the engine.
    ``echo``: write each caller line to ``out`` as ``you> ...``, so that a transcript of piped input
    reads like the terminal (default: when stdin is not a terminal, which shows what is typed itself).
    ``identity``: answers the flow's identity checks (``commands.context.chat_identity``); None: unavailable."""
    if echo is None:
        echo = not _stdin_is_terminal()
    sim = Simulation(flow, caller=caller, at=at, speech=not keypad, identity=identity)
    if keypad:
        out.write(f"Keypad call on flow '{flow.id}' ({flow.language}), as without speech recognition. "
                  "Type #1234 for keys, an empty line for silence, Ctrl-D to hang up.\n")
    else:
        out.write(f"Text call on flow '{flow.id}' ({flow.language}). Type what the caller says; "
                  "#1234 for keys, an empty line for silence, Ctrl-D to hang up.\n")
    render_actions(sim.opening, out)
    while not sim.ended:
        try:
            line = read("" if echo else "you> ")
        except EOFError:
            sim.send(CallEnded("hangup"))
            out.write("     [caller hung up]\n")
            break
        if echo:
            out.write(f"you> {line.strip() or '(silence)'}\n")
        event = parse_line(line)
        if keypad and isinstance(event, Utterance):
            out.write("     [no speech recognition on this call: type keys, e.g. #1]\n")
            continue
        actions = sim.send(event)
        if sim.last_nlu:
            alts = ", ".join(f"{a['intent']} {a['confidence']:.2f}" for a in sim.last_nlu["alternatives"])
            out.write(f"     [intent: {sim.last_nlu['intent']} {sim.last_nlu['confidence']:.2f}; "
                      f"runners-up: {alts}]\n")
        render_actions(actions, out)
    return sim.state


# -- scenarios -------------------------------------------------------------------------------------

DEFAULT_CALLED = "+31850000000"
NEEDS_TURNS = "needs 'turns' (a list)"
SPEECH = "'speech' must be true or false"


class ChatExpect(Expectations):
    """What must have happened after one turn of a text call."""

    transfer: bool | str | None = Field(None, description="true or a transfer reason such as explicit_request")
    queue: str | None = Field(None, description="text")
    intent: str | None = Field(None, description="an intent name")
    slots: dict[str, Any] | None = Field(None, description="a mapping of slot names to values")
    prompt_not_contains: str | list[str] | None = Field(None, description="text or a list of texts")
    step: str | None = Field(None, description="a step name")
    feedback: int | None = Field(None, description="a whole number")
    feedback_comment: str | None = Field(None, description="text, or null for no comment")
    sms: bool | str | None = Field(None, description="true, false or text the message contains")
    context: dict[str, Any] | None = Field(None, description="a mapping of context fields to values")
    speech: bool | None = Field(None, description="true or false")


class ChatTurn(Turn):
    """One turn of a text call: at most one input (none: only check the opening), then expectations."""

    INPUTS: ClassVar[tuple[str, ...]] = ("say", "dtmf", "silence", "hangup", "speech_unavailable", "failure")

    confidence: float | None = Field(None, ge=0, le=1, description="'confidence' is a number from 0 to 1")
    speech_unavailable: bool | str | None = Field(None, description="'speech_unavailable' is true or a reason")
    failure: bool | str | None = Field(None, description="'failure' is true or what broke")
    expect: ChatExpect | None = None

    @classmethod
    def after_keys(cls, data: dict[str, Any]) -> None:
        if len(cls.inputs(data)) > 1:
            raise problem(f"one of {'/'.join(cls.INPUTS)} per turn")


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, (dt.date, dt.datetime)) else value


class ChatScenario(Scenario):
    """One scripted text call; ``at`` and ``speech`` override the file's."""

    at: str | None = Field(None, description="'at' is a time, e.g. at: \"2026-11-23T10:00:00\"")
    speech: bool | None = Field(None, description=SPEECH)
    turns: list[ChatTurn]

    @classmethod
    def before_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("turns"), list):
            raise problem(NEEDS_TURNS)
        return {**data, "at": _iso(data["at"])} if "at" in data else data


class ChatScript(Spec):
    """A scenario file for `voicebot chat --script`: defaults for every scenario, and the scenarios."""

    flow: str | None = Field(None, description="'flow' is the flow file, e.g. flow: ../energie.yaml")
    caller: str | None = None
    called: str | None = None
    at: str | None = Field(None, description="'at' is a time, e.g. at: \"2026-11-23T10:00:00\"")
    speech: bool | None = Field(None, description=SPEECH)
    customers: str | None = Field(None, description="'customers' is a CSV file of customers, "
                                  "e.g. customers: ../customers-demo.csv")
    scenarios: list[ChatScenario] = Field(min_length=1, description="'scenarios' must be a non-empty list")

    _numbers = quoted_numbers("caller", "called")

    @classmethod
    def before_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise problem("expected a mapping with 'scenarios' (or 'turns')")
        return {**data, "at": _iso(data["at"])} if "at" in data else data


@dataclass
class ScenarioResult:
    """``handoff``: the context the call's transfer hands to a person, None when it was not transferred."""

    name: str
    failures: list[str] = field(default_factory=list)
    transcript: list[str] = field(default_factory=list)
    handoff: dict[str, Any] | None = None

    @property
    def passed(self) -> bool:
        return not self.failures


def load_scenarios(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A scenario file: defaults (flow, caller, at) and a list of scenarios with turns.

    ``customers``: a CSV file (the format of `voicebot customers import`) whose customers answer
    the scenarios' identity checks instead of the configured directory, so a script runs the same
    on every machine.

    ``speech: false`` (on the file, as a default, or on one scenario) runs the call without speech
    recognition, by keypad. A file with ``turns`` (and a ``name``) at the top is one scenario."""
    path = Path(path)
    # The flows' YAML 1.2 reading, so a caller who says `yes` is the text "yes", not True.
    data = read_yaml(path, "scenarios")
    if isinstance(data, dict) and "turns" in data:
        data = {**{k: v for k, v in data.items() if k not in ("turns", "name")},
                "scenarios": [{"name": data.get("name", path.stem), "turns": data["turns"]}]}
    try:
        script = ChatScript.model_validate(data).given()
    except ValidationError as exc:
        raise ScenarioError(_explain(path, data, exc)) from None
    defaults = {k: script[k] for k in ("flow", "caller", "called", "at", "customers") if k in script}
    for key in ("flow", "customers"):      # relative to the scenario file
        if key in defaults and not Path(defaults[key]).is_absolute():
            defaults[key] = str((path.parent / defaults[key]).resolve())
    scenarios = script["scenarios"]
    for scenario in scenarios:
        for key in ("speech", "called"):
            if key in script:
                scenario.setdefault(key, script[key])
    return defaults, scenarios


def _explain(path: Path, data: Any, exc: ValidationError) -> str:
    """The first problem as a sentence naming the file, the scenario and the turn."""
    where, message = first_problem(exc, ChatScript)
    if len(where) < 2 or where[0] != "scenarios":
        return f"{path}: {message}"
    i = int(where[1])
    if len(where) == 2 and message == NEEDS_TURNS:
        return f"{path}: scenario {i + 1} {message}"
    raw = data["scenarios"][i]
    label = f"'{raw.get('name', i + 1)}'"
    if len(where) >= 4 and where[2] == "turns":
        return f"{path}: scenario {label}, turn {int(where[3]) + 1}: {message}"
    return f"{path}: scenario {label}: {message}"


def run_scenario(flow: Flow, scenario: dict[str, Any], *, caller: str = "+31612345678",
                 at: str | None = None, identity: IdentityService | None = None) -> ScenarioResult:
    """One scenario as one call. ``identity``: answers its identity checks; pass the same service
    to every scenario of a run so that a lockout across calls can be shown."""
    result = ScenarioResult(name=str(scenario.get("name", "scenario")))
    sim = Simulation(flow, caller=str(scenario.get("caller", caller)), at=scenario.get("at", at),
                     speech=scenario.get("speech", True) is not False,
                     called=str(scenario.get("called", DEFAULT_CALLED)), identity=identity)
    actions = sim.opening
    first = True
    for n, turn in enumerate(scenario["turns"], start=1):
        if not first or any(k in turn for k in ChatTurn.INPUTS):
            if sim.ended:
                result.failures.append(f"turn {n}: the call already ended")
                break
            if "say" in turn:
                result.transcript.append(f"caller: {turn['say']}")
                actions = sim.say(str(turn["say"]), float(turn.get("confidence", 1.0)))
            elif "dtmf" in turn:
                result.transcript.append(f"caller: #{turn['dtmf']}")
                actions = sim.keys(str(turn["dtmf"]))
            elif "silence" in turn:
                result.transcript.append("caller: (silence)")
                actions = sim.silence()
            elif "hangup" in turn:
                actions = sim.send(CallEnded("hangup"))
            elif "speech_unavailable" in turn:
                result.transcript.append("(speech recognition stops)")
                reason = turn["speech_unavailable"]
                actions = sim.send(SpeechUnavailable(reason if isinstance(reason, str) else ""))
            elif "failure" in turn:
                result.transcript.append("(failure on our side)")
                what = turn["failure"]
                actions = sim.send(SystemFailure(what if isinstance(what, str) else ""))
        first = False
        result.transcript.extend(f"bot: {a.text}" for a in actions if isinstance(a, Say))
        result.failures.extend(f"turn {n}: {f}" for f in _check(sim, actions, turn.get("expect") or {}))
    result.handoff = sim.transfer.context if sim.transfer else None
    return result


def _check(sim: Simulation, actions: list[Action], expect: dict[str, Any]) -> list[str]:
    said = " ".join(a.text for a in actions if isinstance(a, Say))
    failures: list[str] = []
    transfer = next((a for a in actions if isinstance(a, Transfer)), None)
    hangup = next((a for a in actions if isinstance(a, Hangup)), None)
    listen = next((a for a in reversed(actions) if isinstance(a, Listen)), None)
    sms = [a for a in actions if isinstance(a, SendSms)]
    state = sim.state
    for key, want in expect.items():
        if key == "intent" and state.intent != want:
            failures.append(f"intent is {state.intent!r}, expected {want!r}")
        elif key == "slots":
            for name, value in (want or {}).items():
                got = state.slots.get(name, state.secrets.get(name) and "<secret>")
                if str(got) != str(value):
                    failures.append(f"slot {name} is {got!r}, expected {value!r}")
        elif key in ("prompt_contains", "prompt_not_contains"):
            for text in [want] if isinstance(want, str) else want:
                present = text.lower() in said.lower()
                if present != (key == "prompt_contains"):
                    verb = "does not contain" if key == "prompt_contains" else "contains"
                    failures.append(f"prompt {verb} {text!r}: {said!r}")
        elif key == "transfer":
            if transfer is None:
                failures.append(f"no transfer (expected reason {want!r}); said: {said!r}")
            elif want is not True and transfer.reason != want:
                failures.append(f"transfer reason is {transfer.reason!r}, expected {want!r}")
        elif key == "queue" and (transfer is None or transfer.queue != want):
            failures.append(f"transfer queue is {transfer.queue if transfer else None!r}, expected {want!r}")
        elif key == "hangup" and bool(hangup) != bool(want):
            failures.append("expected a hang-up" if want else f"unexpected hang-up ({hangup.reason})")
        elif key == "step" and state.step != want:
            failures.append(f"step is {state.step!r}, expected {want!r}")
        elif key == "speech" and (listen is None or listen.speech != want):
            failures.append(f"listening with speech {listen.speech if listen else None!r}, expected {want!r}")
        elif key == "feedback" and state.feedback != want:
            failures.append(f"feedback is {state.feedback!r}, expected {want!r}")
        elif key == "feedback_comment" and state.feedback_comment != want:
            failures.append(f"feedback comment is {state.feedback_comment!r}, expected {want!r}")
        elif key == "sms":
            if bool(sms) != bool(want):
                failures.append("expected an sms" if want else "unexpected sms")
            elif isinstance(want, str) and not any(want.lower() in s.text.lower() for s in sms):
                failures.append(f"sms does not contain {want!r}")
        elif key == "context":
            if transfer is None:
                failures.append("expected a transfer context, but no transfer happened")
                continue
            for name, value in (want or {}).items():
                got = transfer.context.get(name)
                ok = (value in got) if isinstance(value, str) and isinstance(got, str) and name in (
                    "summary",) else (got == value or (isinstance(got, dict) and isinstance(value, dict)
                                                       and all(got.get(k) == v for k, v in value.items())))
                if not ok:
                    failures.append(f"context {name} is {got!r}, expected {value!r}")
    return failures
