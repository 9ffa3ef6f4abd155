"""The shape of a flow file, as pydantic models.

Pydantic checks keys and types (``extra="forbid"`` turns a misspelt key into an error rather
than a silently ignored setting); graph-level checks (missing targets, dead ends, reachability,
the AI disclosure) live in ``validate.py`` because they need the whole flow.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from voicebot.nlu.slots import SECRET_SLOT_TYPES, SLOT_TYPES

KEYS_ONLY_SLOT_TYPES = frozenset({"pin"})
"""Slot types answered by keypad only, on every call."""
KEYABLE_SLOT_TYPES = frozenset({"digits", "number", "yes_no", "choice", "birth_date", "house_number"})
"""Slot types said or keyed by default (``input: both``); the others are said unless the step sets
``input`` (on a call without speech every keyable type is keyed, see ``dialog/keypad.py``)."""

_HOURS = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Identifier = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Confidence(Strict):
    """Understanding scores: at or above ``accept`` taken as is, at or above ``confirm`` asked back."""

    accept: float = Field(0.60, ge=0, le=1)
    confirm: float = Field(0.35, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> "Confidence":
        if self.confirm > self.accept:
            raise ValueError("confidence.confirm must not be above confidence.accept")
        return self


class Defaults(Strict):
    retries: int = Field(1, ge=0, le=3)
    confidence: Confidence = Confidence()
    no_input_timeout: float = Field(6.0, gt=0, le=60)
    barge_in: bool = True


class TransferSettings(Strict):
    queue: str = "algemeen"
    say: str | None = None
    closed_queue: str | None = None
    closed_say: str | None = None


def parse_ranges(text: str) -> list[tuple[dt.time, dt.time]]:
    """ "08:00-12:00, 13:00-17:00" -> time pairs; "closed" -> []."""
    if text.strip().lower() == "closed":
        return []
    ranges = []
    for part in text.split(","):
        m = _HOURS.match(part)
        if not m:
            raise ValueError(f"'{part.strip()}' is not a time range like 08:00-17:30 (or 'closed')")
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59:
            raise ValueError(f"'{part.strip()}' is not a valid time range")
        start = dt.time(h1, m1)
        end = dt.time(23, 59, 59) if h2 == 24 else dt.time(h2, m2)
        if end <= start:
            raise ValueError(f"'{part.strip()}' ends before it starts")
        ranges.append((start, end))
    return ranges


class Hours(Strict):
    timezone: str = "Europe/Amsterdam"
    weekly: dict[str, str]
    holidays: list[dt.date] = []

    @field_validator("weekly")
    @classmethod
    def _weekly(cls, value: dict[str, str]) -> dict[str, str]:
        for day, ranges in value.items():
            if day not in WEEKDAYS:
                raise ValueError(f"'{day}' is not a weekday; use {', '.join(WEEKDAYS)}")
            parse_ranges(str(ranges))
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone '{value}'") from exc
        return value


VERIFY_METHODS = ("caller_id", "customer_dob", "postcode_house", "pin")
"""The ways a caller can be identified, as a flow names them in a verify step's ``methods``."""

DEFAULT_LEVELS = ("none", "known", "verified")
DEFAULT_METHOD_LEVELS = {"caller_id": "known", "customer_dob": "verified", "postcode_house": "known",
                         "pin": "verified"}


class IdentitySettings(Strict):
    """How sure the flow can be of who is calling: named levels (weakest first), the level each
    verification method gives, and how many failed checks a call may have before a person takes over.

    A method not named under ``methods`` keeps its default level. The level names and the methods
    are checked against each other in ``validate.py``, where the file's lines are known.
    """

    levels: list[Identifier] = Field(list(DEFAULT_LEVELS), min_length=2)
    methods: dict[str, str] = {}
    max_attempts: int = Field(3, ge=1, le=10)

    def method_level(self, method: str) -> str | None:
        return self.methods.get(method) or DEFAULT_METHOD_LEVELS.get(method)

    def rank(self, level: str | None) -> int:
        """A level's place among the levels (0: the weakest); an unknown name counts as the weakest."""
        return self.levels.index(level) if level in self.levels else 0


class Intent(Strict):
    label: str
    examples: list[str] = Field(min_length=1)
    identity: str | None = None     # the level this intent needs (default: the weakest, nothing asked)
    topic: str | None = None        # how a question about the call's subject names it (default: label)


class StepBase(Strict):
    say: str | None = None
    prompt: str | None = None
    keypad: str | None = None      # said instead of say/prompt when the call goes on by keypad only
    retries: int | None = Field(None, ge=0, le=3)
    confidence: Confidence | None = None
    no_input_timeout: float | None = Field(None, gt=0, le=60)
    barge_in: bool | None = None
    grammar: list[str] = []


class SayStep(StepBase):
    type: Literal["say"]
    next: str


class AnswerStep(StepBase):
    type: Literal["answer"]
    source: str = Field(min_length=1)
    next: str


class RouteStep(StepBase):
    type: Literal["route"]
    reprompt: str
    routes: dict[str, str] = Field(min_length=1)


class AskStep(StepBase):
    type: Literal["ask"]
    slot: Identifier
    slot_type: Literal[SLOT_TYPES]  # type: ignore[valid-type]
    reprompt: str | None = None
    next: str | None = None
    confirm: str | None = None
    branches: dict[str, str] = {}
    choices: dict[str, list[str]] | None = None
    length: int | tuple[int, int] | None = None
    input: Literal["speech", "dtmf", "both"] | None = None
    secret: bool = False

    @property
    def length_range(self) -> tuple[int, int] | None:
        if self.length is None:
            return None
        return (self.length, self.length) if isinstance(self.length, int) else tuple(self.length)  # type: ignore[return-value]

    @property
    def input_mode(self) -> str:
        """How the step may be answered when the flow does not say: ``dtmf`` for a PIN, ``both``
        (said or keyed) for the types a keypad can enter, ``speech`` for the rest.

        A PIN is keyed only: said aloud it can be overheard by anyone near the caller, and it would
        pass through the speech recogniser. ``validate.py`` refuses ``input: speech`` or ``both`` on a
        PIN, so a flow cannot turn this around."""
        if self.input:
            return self.input
        if self.slot_type in KEYS_ONLY_SLOT_TYPES:
            return "dtmf"
        return "both" if self.slot_type in KEYABLE_SLOT_TYPES else "speech"

    @property
    def is_secret(self) -> bool:
        """Is the value a secret (kept only as a salted hash, never said back, logged or sent)? A date of
        birth and a PIN always are, whatever ``secret`` says; any other slot when the flow marks it."""
        return self.secret or self.slot_type in SECRET_SLOT_TYPES


class HoursStep(Strict):
    type: Literal["hours"]
    open: str
    closed: str


class TransferStep(StepBase):
    type: Literal["transfer"]
    queue: str | None = None
    reason: Literal["flow", "explicit_request"] = "flow"


class SmsStep(StepBase):
    type: Literal["sms"]
    next: str


class FeedbackStep(StepBase):
    """Asks for a score 1-5 and ends the call. With ``comment`` a caller who gave the score by voice
    is asked for a few words more (the message ``feedback_comment``); silence or keys skip it."""

    type: Literal["feedback"]
    thanks: str | None = None
    comment: bool = False


class HangupStep(StepBase):
    type: Literal["hangup"]


class VerifyStep(StepBase):
    """Find out who is calling, with ``methods`` tried in order as far as needed to reach ``level``.

    ``next`` may be left out when the step only guards intents that need a level (the engine then
    goes on at the intent's route). ``say`` is an optional introduction; the questions themselves
    are the flow's ``verify_*`` messages.
    """

    type: Literal["verify"]
    methods: list[str] = Field(min_length=1)
    level: str | None = None
    next: str | None = None


Step = Annotated[
    Union[SayStep, AnswerStep, RouteStep, AskStep, HoursStep, TransferStep, SmsStep, FeedbackStep, HangupStep,
          VerifyStep],
    Field(discriminator="type"),
]
STEP_TYPES = ("say", "answer", "route", "ask", "hours", "transfer", "sms", "feedback", "hangup", "verify")
TERMINAL_TYPES = frozenset({"transfer", "feedback", "hangup"})
LISTENING_TYPES = frozenset({"route", "ask", "feedback", "verify"})


class ResumeSettings(Strict):
    """How long an unfinished call is kept so that the caller, calling again from the same number, can
    go on where it stopped (0 turns it off)."""

    window_minutes: int = Field(30, ge=0, le=1440)


class FlowSpec(Strict):
    flow: Identifier
    language: str = Field(pattern=r"^[a-z]{2,3}(-[A-Za-z]{2,4})?$")
    description: str = ""
    start: str
    defaults: Defaults = Defaults()
    transfer: TransferSettings = TransferSettings()
    transfer_words: list[str] | None = None
    disclosure: list[str] | None = None
    hours: Hours | None = None
    resume: ResumeSettings = ResumeSettings()
    identity: IdentitySettings = IdentitySettings()
    prompts: dict[str, str] = {}
    messages: dict[str, str] = {}
    intents: dict[Identifier, Intent] = {}
    out_of_scope: list[str] = []
    steps: dict[Identifier, Step] = Field(min_length=1)

    def reach(self, step: "VerifyStep") -> str:
        """The highest level a verify step's methods can give."""
        ids = self.identity
        return max((ids.method_level(m) or ids.levels[0] for m in step.methods), key=ids.rank, default=ids.levels[0])

    def needed_level(self, intent: str | None) -> str:
        """The level an intent needs before its route is taken (the weakest when it names none)."""
        found = self.intents.get(intent or "")
        return (found.identity if found else None) or self.identity.levels[0]

    def gate_for(self, level: str) -> str | None:
        """The verify step that guards intents needing ``level``: the first whose methods reach it."""
        ids = self.identity
        return next((sid for sid, step in self.steps.items()
                     if isinstance(step, VerifyStep) and ids.rank(self.reach(step)) >= ids.rank(level)), None)


def targets(step: object) -> dict[str, str]:
    """Every transition of a step, keyed by where it is written ("next", "routes.x", ...)."""
    out: dict[str, str] = {}
    for attr in ("next", "open", "closed"):
        value = getattr(step, attr, None)
        if value:
            out[attr] = value
    for key, value in (getattr(step, "routes", None) or {}).items():
        out[f"routes.{key}"] = value
    for key, value in (getattr(step, "branches", None) or {}).items():
        out[f"branches.{key}"] = value
    return out
