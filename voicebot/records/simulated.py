"""Simulated callers: call records for a flow without a phone, to try the figures, the operations page
and the review queue on a few hundred calls in seconds.

Each caller runs through the real dialog engine (``simulator.Simulation``), so every record is one
the engine could have made: the turns, their notes (``understood``), the steps, the ending. What the
callers do is drawn from a seeded random generator, so the same flow, seed and ``now`` give the
same calls: some ask in the flow's own words, some in other words, some ask for what the flow does
not handle (its ``out_of_scope`` examples and near-domain requests written here), some ask for a
person, stay silent, press keys, hang up part-way; at the end they give scores and comments. Calls
are spread over the last days, by the hours a contact centre is busy, fewer at the weekend.

Identity checks are answered here (mostly a match), never by a customer directory. The timings
(recognition and response per turn) and the call's duration are simulated: plausible figures drawn
from the same generator, not measurements. A simulated call's id starts with ``SIM-``.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from dataclasses import dataclass
from typing import Any, Iterator
from zoneinfo import ZoneInfo

from voicebot.dialog import keypad, verification
from voicebot.dialog.actions import Action, CheckIdentity, Listen
from voicebot.dialog.events import CallEnded, Digits, Event, IdentityChecked, NoInput, Utterance
from voicebot.flow import Flow
from voicebot.flow.schema import AskStep, FeedbackStep, RouteStep, VerifyStep
from voicebot.nlu.lexicon import NO, YES
from voicebot.simulator import Simulation

MAX_EVENTS = 80
"""Caller events in one simulated call (the engine's loop guard ends a call well before)."""

PERSONAS = {"direct": 46, "paraphrase": 22, "lost": 10, "agent": 7, "silent": 4, "keys": 6, "impatient": 5}
"""Kinds of caller, by weight: in the flow's words, in other words, first asking what the flow does not
handle, asking for a person, silent, pressing keys at the open question, hanging up part-way."""

HOURS = (0.2, 0.1, 0.1, 0.1, 0.1, 0.2, 0.4, 1.5, 5, 9, 10, 9, 6, 8, 9, 8, 7, 5, 3, 2, 1.2, 0.7, 0.4, 0.3)
"""Calls per hour of the day (relative): the morning peak, lunch, the afternoon."""
WEEKDAYS = (1.0, 0.95, 0.9, 0.9, 0.85, 0.45, 0.2)
"""Calls per day of the week (relative), Monday first."""

SCORES = ((5, 34), (4, 30), (3, 16), (2, 10), (1, 10))

NEAR_DOMAIN = {
    "nl": ["ik ga binnenkort verhuizen naar het buitenland en wil alles stopzetten",
           "hoeveel krijg ik terug voor de stroom van mijn zonnepanelen",
           "mijn jaarafrekening is veel hoger dan vorig jaar hoe kan dat",
           "wanneer loopt mijn vaste contract af",
           "hebben jullie ook een dynamisch contract",
           "mijn laadpaal doet het niet meer",
           "de warmtepomp maakt een raar geluid",
           "ik wil een betalingsregeling treffen",
           "ik krijg geen toegang tot de app",
           "wat is het prijsplafond dit jaar",
           "kan ik subsidie krijgen voor isolatie",
           "de monteur voor de slimme meter is niet gekomen",
           "ik wil weten wat ik per kilowattuur betaal",
           "waarom is mijn teruggave nog niet overgemaakt",
           "ik wil een klacht indienen over de monteur"],
    "en": ["I am moving abroad and want to stop everything",
           "how much do I get back for the power from my solar panels",
           "my annual bill is much higher than last year",
           "when does my fixed contract end",
           "do you have a dynamic tariff",
           "my charging point stopped working",
           "I want to set up a payment plan",
           "I cannot log in to the app"],
}
"""Requests an energy company's callers make that a flow may well not handle (simulated callers only)."""

FILLERS = {
    "nl": (["eh", "ja hallo", "goedemiddag", "ik bel omdat", "ik wou graag", "nou", "hallo ik wil"],
           ["alstublieft", "graag", "als dat kan", "eigenlijk"]),
    "en": (["uh", "hello", "hi I'm calling because", "I would like to", "well"], ["please", "if possible"]),
}
NONSENSE = {"nl": ["eh wacht even", "momentje", "wat zei u", "hallo hallo"],
            "en": ["hang on", "sorry what", "hello hello"]}
COMMENTS = {
    "nl": {"good": ["het ging lekker snel", "duidelijk en vriendelijk", "ik werd meteen geholpen",
                    "prima zo geen wachttijd"],
           "bad": ["ik moest alles twee keer zeggen", "de computer begreep me niet", "ik wil gewoon een mens spreken",
                   "het duurde veel te lang", "mijn vraag stond er niet tussen"]},
    "en": {"good": ["quick and clear", "very helpful thank you"],
           "bad": ["I had to repeat myself", "it did not understand me", "took far too long"]},
}
MONTHS = {
    "nl": ["januari", "februari", "maart", "april", "mei", "juni", "juli", "augustus", "september", "oktober",
           "november", "december"],
    "en": ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"],
}
POSTCODE_LETTERS = ("AB", "CD", "GH", "JK", "LM", "NP", "RT", "VW", "XZ", "KL", "MN", "BR", "ZX", "HG", "TR", "LP")
"""Letter pairs of simulated postcodes (pairs that read as a word, "DE" or "ER", are no postcode's)."""
NUMBER_WORDS = {"nl": ["een", "twee", "drie", "vier", "vijf"], "en": ["one", "two", "three", "four", "five"]}


@dataclass(frozen=True)
class SimulatedCall:
    """One simulated call: its id and what the call store would hold for it (``Simulation.store_record``)."""

    call_id: str
    stored: dict[str, Any]
    persona: str


def simulate_calls(flow: Flow, *, calls: int, days: int = 7, seed: int = 0,
                   now: dt.datetime | None = None) -> Iterator[SimulatedCall]:
    """``calls`` simulated calls of ``flow`` that started in the ``days`` before ``now`` (aware; default:
    the clock), in the flow's time zone. The same arguments give the same calls."""
    rng = random.Random(seed)
    zone = ZoneInfo(flow.spec.hours.timezone) if flow.spec.hours else None
    now = (now or dt.datetime.now(dt.timezone.utc)).astimezone(zone)
    numbers = [f"+316{rng.randrange(10**8):08d}" for _ in range(max(5, calls // 3))]
    for n in range(calls):
        started = _start_time(rng, now, days)
        persona = _weighted(rng, list(PERSONAS.items()))
        caller = "" if rng.random() < 0.03 else rng.choice(numbers)
        call_id = f"SIM-{seed}-{n + 1:05d}"
        speech = rng.random() > 0.04                    # a few calls without speech recognition
        yield SimulatedCall(call_id, _one_call(flow, rng, call_id, caller, started, persona, speech), persona)


def _one_call(flow: Flow, rng: random.Random, call_id: str, caller: str, started: dt.datetime, persona: str,
              speech: bool) -> dict[str, Any]:
    at = started.replace(tzinfo=None, microsecond=0).isoformat()
    sim = Simulation(flow, caller=caller, at=at, call_id=call_id, speech=speech, identity=SimulatedIdentity(rng))
    person = Caller(flow, rng, persona, today=started.date())
    actions: list[Action] = sim.opening
    for _ in range(MAX_EVENTS):
        if sim.ended:
            break
        listen = next((a for a in reversed(actions) if isinstance(a, Listen)), None)
        actions = sim.send(person.next_event(sim, listen))
    timings = _timings(rng, sim.state.transcript)
    seconds = _duration(rng, sim.state.transcript, timings)
    return sim.store_record(updated_at=started.timestamp() + seconds, timings=timings)


class SimulatedIdentity:
    """Answers the engine's identity checks as a directory would, mostly with a match; never keeps a value."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def check(self, action: CheckIdentity) -> IdentityChecked:
        if action.method == "caller_id":
            outcome = "match" if self.rng.random() < 0.3 else "no_match"
        else:
            outcome = "match" if self.rng.random() < 0.82 else "no_match"
        number = str(action.values.get("customer_number") or f"{self.rng.randrange(10**5, 10**6)}")
        customer = {"number": number, "name": "Gesimuleerde Klant"} if outcome == "match" else None
        return IdentityChecked(action.method, outcome, customer)


class Caller:
    """One simulated caller: what it says or keys at each question, by its persona."""

    def __init__(self, flow: Flow, rng: random.Random, persona: str, today: dt.date):
        self.flow, self.rng, self.persona, self.today = flow, rng, persona, today
        self.language = flow.language
        self.turn = 0
        self.hangup_at = rng.randint(1, 6)
        self.agent_at = rng.randint(1, 4)
        self.lost_turns = rng.randint(1, 2)

    def next_event(self, sim: Simulation, listen: Listen | None) -> Event:
        state = sim.state
        step = self.flow.spec.steps[state.step]
        self.turn += 1
        rng = self.rng
        by_keys = listen is not None and not listen.speech
        if (self.persona == "impatient" and self.turn >= self.hangup_at) or rng.random() < 0.015:
            return CallEnded("hangup")
        if (self.persona == "silent" and rng.random() < 0.75) or rng.random() < 0.04:
            return NoInput()
        if self.persona == "agent" and self.turn >= self.agent_at:
            return Digits("0") if by_keys or rng.random() < 0.3 else self._say(rng.choice(self.flow.transfer_words))
        if state.pending:
            return self._yes_no(rng.random() < 0.9, by_keys)
        if isinstance(step, FeedbackStep):
            return self._feedback(step, state, by_keys)
        if isinstance(step, RouteStep):
            return self._route(step, state, by_keys)
        if isinstance(step, VerifyStep):
            return self._verify(state, by_keys)
        if isinstance(step, AskStep):
            return self._ask(step, by_keys)
        return NoInput()

    # -- what a caller says --------------------------------------------------------------------------

    def _say(self, text: str, low: bool = False) -> Utterance:
        """Speech as a recogniser reports it: mostly sure, sometimes not."""
        r = self.rng.random()
        confidence = self.rng.uniform(0.2, 0.45) if low or r < 0.05 else \
            self.rng.uniform(0.45, 0.75) if r < 0.25 else self.rng.uniform(0.75, 1.0)
        return Utterance(text=text, confidence=round(confidence, 3))

    def _route(self, step: RouteStep, state: Any, by_keys: bool) -> Event:
        rng = self.rng
        routes = keypad.menu_routes(self.flow, step)
        if by_keys or state.keys_menu:
            if rng.random() < 0.1 or not routes:
                return Digits("9")
            return Digits(str(rng.randrange(len(routes)) + 1))
        if self.persona == "keys" and self.turn == 1:
            return Digits("1")                          # keys at the open question: the menu
        if (self.persona == "lost" and self.turn <= self.lost_turns) or rng.random() < 0.04:
            return self._say(self._out_of_scope())
        if rng.random() < 0.03:
            return self._say(rng.choice(NONSENSE.get(self.language, ["..."])))
        intents = [name for name in step.routes if name in self.flow.spec.intents]
        if not intents:
            return NoInput()
        intent = rng.choice(intents)
        example = rng.choice(self.flow.spec.intents[intent].examples)
        if rng.random() < 0.06:
            return self._say(self._garbled(example), low=True)
        return self._say(self._paraphrase(example) if self.persona == "paraphrase" or rng.random() < 0.25 else example)

    def _garbled(self, text: str) -> str:
        """A request on a bad line: every third word lost to the recogniser (``[unk]``)."""
        words = text.split()
        return " ".join("[unk]" if i % 3 == 1 else word for i, word in enumerate(words)) if len(words) > 1 \
            else f"{text} [unk]"

    def _out_of_scope(self) -> str:
        own = list(self.flow.spec.out_of_scope or [])
        near = NEAR_DOMAIN.get(self.language, [])
        pool = near if near and (not own or self.rng.random() < 0.65) else own
        return self.rng.choice(pool) if pool else "..."

    def _paraphrase(self, text: str) -> str:
        """Other words for a request: a filler before or after, a word left out."""
        rng = self.rng
        words = text.split()
        if len(words) > 3 and rng.random() < 0.4:
            del words[rng.randrange(1, len(words))]
        before, after = FILLERS.get(self.language, ([], []))
        if before and rng.random() < 0.7:
            words.insert(0, rng.choice(before))
        if after and rng.random() < 0.3:
            words.append(rng.choice(after))
        return " ".join(words)

    def _yes_no(self, yes: bool, by_keys: bool) -> Event:
        if by_keys:
            return Digits("1" if yes else "2")
        words = (YES if yes else NO).get(self.language)
        return self._say(self.rng.choice(words[:6])) if words else Digits("1" if yes else "2")

    def _ask(self, step: AskStep, by_keys: bool) -> Event:
        rng = self.rng
        kind = step.slot_type
        if rng.random() < 0.05 and not by_keys:
            return self._say(rng.choice(NONSENSE.get(self.language, ["..."])))
        keys = by_keys or step.input_mode == "dtmf" or (step.input_mode == "both" and rng.random() < 0.3)
        low, high = step.length_range or (5, 5)
        if kind in ("digits", "pin"):
            value = "".join(str(rng.randrange(10)) for _ in range(rng.randint(low, high)))
            return Digits(value) if keys else self._say(" ".join(value))
        if kind in ("number", "house_number"):
            value = str(rng.randint(1, 250) if kind == "house_number" or rng.random() < 0.5 else rng.randint(1000, 99999))
            return Digits(value) if keys else self._say(value)
        if kind == "yes_no":
            return self._yes_no(rng.random() < 0.35, keys)
        if kind == "choice":
            options = list(step.choices or {})
            if not options:
                return NoInput()
            index = rng.randrange(len(options))
            return Digits(str(index + 1)) if keys else self._say((step.choices[options[index]] or [options[index]])[0])
        if kind in ("date", "birth_date"):
            return self._date(kind, keys)
        if kind == "postcode":
            return self._postcode(by_keys)
        return self._say(rng.choice(COMMENTS.get(self.language, {"bad": ["..."]})["bad"]))

    def _postcode(self, by_keys: bool) -> Event:
        rng = self.rng
        postcode = f"{rng.randint(1000, 9999)} {rng.choice(POSTCODE_LETTERS)}"
        return Digits(postcode[:4]) if by_keys else self._say(postcode)

    def _date(self, kind: str, keys: bool) -> Event:
        rng = self.rng
        months = MONTHS.get(self.language)
        if kind == "birth_date":
            day, month, year = rng.randint(1, 28), rng.randint(1, 12), rng.randint(1940, 2004)
        else:
            day, month, year = rng.randint(1, 28), rng.randint(1, 12), 0
        if keys or not months:
            return Digits(f"{day:02d}{month:02d}{year or self.today.year + 1:04d}")
        return self._say(f"{day} {months[month - 1]}" + (f" {year}" if year else ""))

    def _verify(self, state: Any, by_keys: bool) -> Event:
        rng = self.rng
        field = (state.verify or {}).get("field")
        if field == "customer_number":
            low, high = verification.customer_number_length(self.flow.spec)
            number = "".join(str(rng.randrange(10)) for _ in range(rng.randint(low, high)))
            return Digits(number) if by_keys or rng.random() < 0.6 else self._say(" ".join(number))
        if field == "birth_date":
            return self._date("birth_date", by_keys or rng.random() < 0.5)
        if field == "house_number":
            number = str(rng.randint(1, 250))
            return Digits(number) if by_keys else self._say(number)
        if field == "postcode":
            return self._postcode(by_keys)
        if field == "pin":
            return Digits("".join(str(rng.randrange(10)) for _ in range(4)))
        return NoInput()

    def _feedback(self, step: FeedbackStep, state: Any, by_keys: bool) -> Event:
        rng = self.rng
        if state.feedback is not None:              # the question after the score: a comment, or not
            r = rng.random()
            if r < 0.35:
                return NoInput()
            if r < 0.45:
                return Digits("1")
            tone = "good" if state.feedback >= 4 else "bad"
            return self._say(rng.choice(COMMENTS.get(self.language, {tone: ["..."]})[tone]))
        if rng.random() < 0.05:
            return self._say(rng.choice(NONSENSE.get(self.language, ["..."])))
        score = _weighted(rng, list(SCORES))
        if by_keys or rng.random() < 0.35 or self.language not in NUMBER_WORDS:
            return Digits(str(score))
        return self._say(NUMBER_WORDS[self.language][score - 1])


# -- time ----------------------------------------------------------------------------------------------

def _weighted(rng: random.Random, items: list[tuple[Any, float]]) -> Any:
    return rng.choices([item for item, _ in items], weights=[weight for _, weight in items])[0]


def _start_time(rng: random.Random, now: dt.datetime, days: int) -> dt.datetime:
    """A start in the ``days`` before ``now`` (aware, local), by the hour and weekday weights."""
    for _ in range(50):
        day = now.date() - dt.timedelta(days=rng.randrange(days))
        if rng.random() > WEEKDAYS[day.weekday()]:
            continue
        hour = _weighted(rng, list(enumerate(HOURS)))
        start = dt.datetime.combine(day, dt.time(hour, rng.randrange(60), rng.randrange(60)), tzinfo=now.tzinfo)
        if start <= now:
            return start
    return now - dt.timedelta(minutes=rng.randint(1, 60))


def _timings(rng: random.Random, transcript: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Simulated per-turn timings, as ``telephony.session`` stores measured ones: recognition for
    speech, the wait for the reply for speech and keys, nothing for silence."""
    found = []
    for turn, entry in enumerate((e for e in transcript if e.get("who") == "caller"), start=1):
        if entry.get("event") == "no_input":
            found.append({"turn": turn, "recognition_ms": None, "response_ms": None})
        elif "digits" in entry:
            found.append({"turn": turn, "recognition_ms": None, "response_ms": round(rng.lognormvariate(math.log(280), 0.35))})
        else:
            found.append({"turn": turn, "recognition_ms": round(rng.lognormvariate(math.log(230), 0.4)),
                          "response_ms": round(rng.lognormvariate(math.log(650), 0.35))})
    return found


def _duration(rng: random.Random, transcript: list[dict[str, Any]], timings: list[dict[str, Any]]) -> float:
    """Seconds on the line: prompts at about 14 characters a second, callers' turns, waits for replies."""
    spoken = sum(len(str(e.get("text") or "")) for e in transcript if e.get("who") == "bot") / 14
    caller = sum(6.0 if e.get("event") == "no_input" else rng.uniform(1.5, 5.0)
                 for e in transcript if e.get("who") == "caller")
    waits = sum((t["response_ms"] or 0) + (t["recognition_ms"] or 0) for t in timings) / 1000
    return round(spoken + caller + waits + rng.uniform(1, 3), 1)
