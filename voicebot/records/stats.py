"""The figures of the operations page and ``voicebot report``, from the call records.

``compute`` answers one question: for a flow (or every flow) and a period, how did the calls go?
It runs a handful of grouped queries (SQLAlchemy Core, the same SQL on SQLite and PostgreSQL), so
the database returns counts, never one row per call: a quarter of a year of a busy line is still
a few thousand rows of counts. What the two dialects do differently is done in Python on those
counts: local days and hours (SQLite has no time zones; calls are counted per UTC quarter hour
and the quarters are put on the flow's clock here) and percentiles (latencies are counted per
millisecond value and ranked here). A hundred thousand calls in the period take a few seconds
on SQLite and about one on PostgreSQL, most of it the funnel (one pass over the steps and one over
the turns of those calls).

The words, as the tables define them (``records.schema``):
- a call is *answered* unless Twilio reported it busy / failed / no-answer / canceled before the
  flow ran; *containment* is the share of answered calls the assistant completed (outcome
  ``completed``), so a transfer and a caller hanging up part-way both count against it;
- the funnel counts calls, not visits: a call that comes back to a step is counted there once.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa

from voicebot.records.schema import OUTCOMES, calls, steps, turns

DEFAULT_TIMEZONE = "Europe/Amsterdam"
"""The clock days and hours are shown on when a flow names no ``hours.timezone``."""

MAX_DAYS = 3660
"""The longest period asked for: a little over the longest retention (3650 days), so a period
never makes a per-day series longer than any data can be."""
BUCKET_SECONDS = 900
"""Calls are counted per UTC quarter hour: every time zone in use is a whole number of quarter
hours away from UTC, so each quarter falls in one local hour."""
MAX_COMMENTS = 20
COMMENT_CHARS = 500
MAX_PERIOD_TEXT = 64

FIRST_TIME_RESULTS = ("accepted",)
"""A step answered first time: the caller's first turn there was understood and acted on at once."""
REASK_RESULTS = ("out_of_scope", "not_understood", "low_confidence", "invalid_key", "no_input", "denied")
"""Turns after which the assistant asks again (or, out of retries, transfers): rejected, not
understood, too unsure, a wrong key, silence, or a "no" to "did I get that right?"."""
CONFIRM_RESULTS = ("confirm",)
"""Turns the assistant asked back ("klopt dat?") before acting on them."""

LATENCIES = ("recognition", "response")


@dataclass(frozen=True)
class DayFigures:
    """One local day of the period (every day is there, a quiet one with zeros)."""

    day: dt.date
    calls: int              # answered calls that started this day
    completed: int
    transferred: int
    hung_up: int
    transfers: dict[str, int]   # reason -> calls, most first

    @property
    def containment(self) -> float | None:
        return self.completed / self.calls if self.calls else None


@dataclass(frozen=True)
class StepFigures:
    """How callers fared at one step of a flow."""

    flow: str
    step: str
    reached: int            # calls that visited the step
    asked: int              # calls with a caller turn at the step (silence included)
    first_time: int         # calls whose first turn there was understood at once (FIRST_TIME_RESULTS)
    reasked: int            # calls asked again there at least once (REASK_RESULTS)
    confirmation: int       # calls where a guess was asked back there (CONFIRM_RESULTS)
    to_agent: int           # calls transferred while at the step
    hung_up: int            # calls whose caller hung up while at the step


@dataclass(frozen=True)
class IntentFeedback:
    intent: str | None      # the call's intent; None: the call never got one
    scores: int             # calls with a score
    average: float


@dataclass(frozen=True)
class Comment:
    at: dt.datetime         # when the call started, on the report's clock
    flow: str
    intent: str | None
    score: int | None
    text: str               # the caller's words as recognised (redacted by the engine), cut to COMMENT_CHARS


@dataclass(frozen=True)
class FeedbackFigures:
    scores: dict[int, int]              # 1..5 -> calls (all five keys)
    by_intent: list[IntentFeedback]     # most scores first
    comments: list[Comment]             # newest first, at most MAX_COMMENTS

    @property
    def given(self) -> int:
        return sum(self.scores.values())

    @property
    def average(self) -> float | None:
        return sum(k * v for k, v in self.scores.items()) / self.given if self.given else None


@dataclass(frozen=True)
class Percentiles:
    """Nearest-rank percentiles of one latency in milliseconds (None without measurements)."""

    count: int
    p50: int | None
    p90: int | None
    p95: int | None


@dataclass(frozen=True)
class VersionFigures:
    """Calls on one version of a flow: before and after a change side by side."""

    flow: str
    version: str            # the flow file's content hash; "" when the call did not record one
    calls: int              # answered calls
    completed: int
    first: dt.datetime      # the first and last call's start, on the report's clock
    last: dt.datetime

    @property
    def containment(self) -> float | None:
        return self.completed / self.calls if self.calls else None


@dataclass(frozen=True)
class Report:
    """Everything ``compute`` found for one flow (None: every flow) and period."""

    flow: str | None
    since: dt.datetime      # the period, on the report's clock (aware)
    until: dt.datetime
    timezone: str
    calls: int              # every call record that started in the period
    outcomes: dict[str, int]    # each of schema.OUTCOMES -> calls
    transfers: dict[str, int]   # reason -> calls, most first
    days: list[DayFigures]
    hours: list[int]        # 24 numbers: answered calls by the local hour they started
    funnel: list[StepFigures]   # in the order callers usually reach the steps
    feedback: FeedbackFigures
    latency: dict[str, Percentiles]   # "recognition" and "response"
    versions: list[VersionFigures]    # oldest first

    @property
    def answered(self) -> int:
        return self.calls - self.outcomes.get("unanswered", 0)

    @property
    def containment(self) -> float | None:
        """Completed by the assistant / answered calls (None: no answered call)."""
        return self.outcomes.get("completed", 0) / self.answered if self.answered else None


def zone_of(name: str | None) -> ZoneInfo:
    """The time zone ``name`` (None: ``DEFAULT_TIMEZONE``); ValueError when there is none by that name."""
    try:
        return ZoneInfo(name or DEFAULT_TIMEZONE)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None


_DURATION = re.compile(r"(\d{1,7})\s*([mhdw])")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_period(text: str, *, now: dt.datetime | None = None, timezone: str | None = None,
                 end: bool = False) -> dt.datetime:
    """A moment as an operator writes it, as an aware UTC datetime.

    ``7d``, ``24h``, ``90m``, ``2w``: that long before ``now``; ``now``; ``2026-11-01``: the start
    of that day on ``timezone``'s clock (with ``end``, the start of the day after, so
    ``--until 2026-11-07`` includes the 7th); ``2026-11-01T08:30`` on that clock, or with its own
    offset. ValueError says what is wrong with anything else."""
    now = (now or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc)
    zone = zone_of(timezone)
    value = str(text or "").strip().lower()
    if not value or len(value) > MAX_PERIOD_TEXT:
        raise ValueError("a period is like 7d, 24h, 2026-11-01 or 2026-11-01T08:00")
    if value == "now":
        return now
    match = _DURATION.fullmatch(value)
    if match:
        seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        if seconds > MAX_DAYS * 86400:
            raise ValueError(f"{text.strip()} is longer than {MAX_DAYS} days")
        return now - dt.timedelta(seconds=seconds)
    try:
        if len(value) == 10:
            day = dt.date.fromisoformat(value)
            if end:
                day += dt.timedelta(days=1)
            return dt.datetime.combine(day, dt.time(), zone).astimezone(dt.timezone.utc)
        moment = dt.datetime.fromisoformat(value.upper())
    except (ValueError, OverflowError):
        raise ValueError(f"{text.strip()!r} is not a period (like 7d, 24h) nor a date (2026-11-01) or "
                         "time (2026-11-01T08:00)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(dt.timezone.utc)


def compute(engine: sa.Engine, *, flow: str | None, since: dt.datetime, until: dt.datetime,
            timezone: str | None = DEFAULT_TIMEZONE) -> Report:
    """The figures for ``flow`` (None: every flow) for calls that started in [``since``,
    ``until``) (aware datetimes), with days and hours on ``timezone``'s clock."""
    zone = zone_of(timezone)
    if since.tzinfo is None or until.tzinfo is None:
        raise ValueError("since and until need a time zone")
    since, until = since.astimezone(dt.timezone.utc), until.astimezone(dt.timezone.utc)
    if until < since:
        raise ValueError("the period ends before it starts")
    if until - since > dt.timedelta(days=MAX_DAYS):
        raise ValueError(f"a period of at most {MAX_DAYS} days")
    where = [calls.c.started_at >= since, calls.c.started_at < until]
    if flow is not None:
        where.append(calls.c.flow == flow)
    with engine.connect() as conn:
        quarters = _quarters(conn, where)
        outcomes, transfers, days, hours = _over_time(quarters, since, until, zone)
        report = Report(
            flow=flow, since=since.astimezone(zone), until=until.astimezone(zone), timezone=zone.key,
            calls=sum(outcomes.values()), outcomes=outcomes, transfers=transfers, days=days, hours=hours,
            funnel=_funnel(conn, where),
            feedback=_feedback(conn, where, zone),
            latency={name: _percentiles(conn, where, getattr(turns.c, f"{name}_ms")) for name in LATENCIES},
            versions=_versions(conn, where, zone),
        )
    return report


# -- calls over time ----------------------------------------------------------------------------

def _epoch_seconds(engine_dialect: str, column: sa.ColumnElement[Any]) -> sa.ColumnElement[int]:
    """Seconds since 1970 of a stored UTC time, in the database's own words."""
    if engine_dialect == "sqlite":      # stored as text 'YYYY-MM-DD HH:MM:SS.ffffff', UTC
        return sa.cast(sa.func.strftime("%s", column), sa.Integer)
    if engine_dialect == "postgresql":
        return sa.cast(sa.func.floor(sa.extract("epoch", column)), sa.BigInteger)
    raise ValueError(f"call records on {engine_dialect} are not supported (SQLite or PostgreSQL)")


def _quarters(conn: sa.Connection, where: list[Any]) -> list[tuple[int, str, str | None, int]]:
    """(UTC quarter hour number, outcome, reason, calls) for the period."""
    quarter = (_epoch_seconds(conn.dialect.name, calls.c.started_at) // BUCKET_SECONDS).label("quarter")
    query = (sa.select(quarter, calls.c.outcome, calls.c.reason, sa.func.count().label("n"))
             .where(*where).group_by(quarter, calls.c.outcome, calls.c.reason))
    return [(int(q), o, r, int(n)) for q, o, r, n in conn.execute(query)]


def _over_time(quarters: list[tuple[int, str, str | None, int]], since: dt.datetime, until: dt.datetime,
               zone: ZoneInfo) -> tuple[dict[str, int], dict[str, int], list[DayFigures], list[int]]:
    outcomes: Counter[str] = Counter({name: 0 for name in OUTCOMES})
    transfers: Counter[str] = Counter()
    hours = [0] * 24
    by_day: dict[dt.date, Counter[str]] = defaultdict(Counter)
    day_transfers: dict[dt.date, Counter[str]] = defaultdict(Counter)
    for quarter, outcome, reason, n in quarters:
        outcomes[outcome] += n
        if outcome == "unanswered":
            continue
        local = dt.datetime.fromtimestamp(quarter * BUCKET_SECONDS, zone)
        hours[local.hour] += n
        by_day[local.date()][outcome] += n
        if outcome == "transferred":
            transfers[reason or "unknown"] += n
            day_transfers[local.date()][reason or "unknown"] += n
    first = since.astimezone(zone).date()
    last = (until - dt.timedelta(microseconds=1)).astimezone(zone).date() if until > since else first
    days = []
    for offset in range((last - first).days + 1):
        day = first + dt.timedelta(days=offset)
        counts = by_day.get(day, Counter())
        days.append(DayFigures(day=day, calls=sum(counts.values()), completed=counts["completed"],
                               transferred=counts["transferred"], hung_up=counts["hung_up"],
                               transfers=_most_first(day_transfers.get(day, Counter()))))
    return dict(outcomes), _most_first(transfers), days, hours


def _most_first(counts: Counter[str]) -> dict[str, int]:
    return dict(sorted(((k, v) for k, v in counts.items() if v), key=lambda kv: (-kv[1], kv[0])))


# -- the funnel -----------------------------------------------------------------------------------

def _funnel(conn: sa.Connection, where: list[Any]) -> list[StepFigures]:
    reached = {(f, s): (int(n), float(place or 0)) for f, s, n, place in conn.execute(
        sa.select(calls.c.flow, steps.c.step, sa.func.count(sa.distinct(steps.c.call_id)), sa.func.avg(steps.c.seq))
        .join(calls, calls.c.call_id == steps.c.call_id).where(*where).group_by(calls.c.flow, steps.c.step))}

    def flag(results: tuple[str, ...]) -> sa.ColumnElement[int]:
        return sa.case((turns.c.result.in_(results), 1), else_=0)

    # One row per call and step, then counted per step. Whether the call's first turn at the step
    # was understood at once rides on the lowest turn number: seq * 2 + 0 (understood) or + 1, so
    # the smallest of these is even exactly when that first turn was understood.
    per_call = (sa.select(calls.c.flow, turns.c.step,
                          sa.func.min(turns.c.seq * 2 + 1 - flag(FIRST_TIME_RESULTS)).label("first"),
                          sa.func.max(flag(REASK_RESULTS)).label("reasked"),
                          sa.func.max(flag(CONFIRM_RESULTS)).label("confirm"))
                .join(calls, calls.c.call_id == turns.c.call_id).where(*where, turns.c.step.is_not(None))
                .group_by(calls.c.flow, turns.c.call_id, turns.c.step).subquery())
    at_step = {(f, s): (int(asked), int(first or 0), int(reasked or 0), int(confirm or 0))
               for f, s, asked, first, reasked, confirm in conn.execute(
        sa.select(per_call.c.flow, per_call.c.step, sa.func.count(),
                  sa.func.sum(sa.case((per_call.c.first % 2 == 0, 1), else_=0)),
                  sa.func.sum(per_call.c.reasked), sa.func.sum(per_call.c.confirm))
        .group_by(per_call.c.flow, per_call.c.step))}

    endings: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for f, s, outcome, n in conn.execute(
            sa.select(calls.c.flow, calls.c.end_step, calls.c.outcome, sa.func.count())
            .where(*where, calls.c.end_step.is_not(None), calls.c.outcome.in_(("transferred", "hung_up")))
            .group_by(calls.c.flow, calls.c.end_step, calls.c.outcome)):
        endings[(f, s)][outcome] += int(n)

    keys = set(reached) | set(at_step) | set(endings)
    place = {key: reached.get(key, (0, float("inf")))[1] for key in keys}
    figures = []
    for key in sorted(keys, key=lambda k: (k[0], place[k], k[1])):
        asked, first_time, reasked, confirm = at_step.get(key, (0, 0, 0, 0))
        figures.append(StepFigures(flow=key[0], step=key[1], reached=reached.get(key, (0, 0.0))[0], asked=asked,
                                   first_time=first_time, reasked=reasked, confirmation=confirm,
                                   to_agent=endings[key]["transferred"], hung_up=endings[key]["hung_up"]))
    return figures


# -- feedback, latency, versions ------------------------------------------------------------------

def _feedback(conn: sa.Connection, where: list[Any], zone: ZoneInfo) -> FeedbackFigures:
    scored = [*where, calls.c.feedback.between(1, 5)]
    scores = {score: 0 for score in range(1, 6)}
    for score, n in conn.execute(sa.select(calls.c.feedback, sa.func.count()).where(*scored)
                                 .group_by(calls.c.feedback)):
        scores[int(score)] = int(n)
    by_intent = [IntentFeedback(intent=intent, scores=int(n), average=float(avg)) for intent, n, avg in conn.execute(
        sa.select(calls.c.intent, sa.func.count(), sa.func.avg(calls.c.feedback)).where(*scored)
        .group_by(calls.c.intent))]
    by_intent.sort(key=lambda f: (-f.scores, f.intent or ""))
    comments = [
        Comment(at=_aware(at).astimezone(zone), flow=flow, intent=intent, score=score,
                text=str(text)[:COMMENT_CHARS])
        for at, flow, intent, score, text in conn.execute(
            sa.select(calls.c.started_at, calls.c.flow, calls.c.intent, calls.c.feedback, calls.c.feedback_comment)
            .where(*where, calls.c.feedback_comment.is_not(None), calls.c.feedback_comment != "")
            .order_by(calls.c.started_at.desc(), calls.c.call_id).limit(MAX_COMMENTS))]
    return FeedbackFigures(scores=scores, by_intent=by_intent, comments=comments)


def _percentiles(conn: sa.Connection, where: list[Any], column: sa.Column[Any]) -> Percentiles:
    """Counted per millisecond value in the database (a few thousand distinct values at most for
    any number of turns), ranked here: the same exact answer on both dialects."""
    values = sorted((int(ms), int(n)) for ms, n in conn.execute(
        sa.select(column, sa.func.count()).join(calls, calls.c.call_id == turns.c.call_id)
        .where(*where, column.is_not(None), column >= 0).group_by(column)))
    total = sum(n for _, n in values)
    return Percentiles(count=total, p50=_rank(values, total, 50), p90=_rank(values, total, 90),
                       p95=_rank(values, total, 95))


def _rank(values: list[tuple[int, int]], total: int, percent: int) -> int | None:
    """The smallest value with at least ``percent`` % of the measurements at or below it."""
    if not total:
        return None
    wanted = -(-total * percent // 100)     # ceil without floats
    seen = 0
    for value, n in values:
        seen += n
        if seen >= wanted:
            return value
    return values[-1][0]


def _versions(conn: sa.Connection, where: list[Any], zone: ZoneInfo) -> list[VersionFigures]:
    completed = sa.func.sum(sa.case((calls.c.outcome == "completed", 1), else_=0))
    rows = conn.execute(
        sa.select(calls.c.flow, calls.c.flow_version, sa.func.count(), completed,
                  sa.func.min(calls.c.started_at), sa.func.max(calls.c.started_at))
        .where(*where, calls.c.outcome != "unanswered").group_by(calls.c.flow, calls.c.flow_version))
    found = [VersionFigures(flow=f, version=v or "", calls=int(n), completed=int(done or 0),
                            first=_aware(first).astimezone(zone), last=_aware(last).astimezone(zone))
             for f, v, n, done, first, last in rows]
    return sorted(found, key=lambda v: (v.first, v.flow, v.version))


def _aware(value: dt.datetime | str) -> dt.datetime:
    """A stored time as an aware UTC datetime (SQLite gives it back without its zone, or as text
    from an aggregate)."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)
