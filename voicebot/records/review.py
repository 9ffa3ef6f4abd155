"""The review queue: caller sentences the assistant did not understand, and operators' verdicts on them.

A spoken turn is in the queue when its result is one of ``schema.MISUNDERSTOOD`` (rejected as out
of scope, asked again, a "no" to "klopt dat?", transferred for low confidence), its text is not
empty and not a flow's redaction text (a secret's place in the transcript, ``[verborgen]``), and
nobody has reviewed it yet. An operator marks each as an example of one of the flow's intents, as
out of scope, or as noise (a recogniser's garble, a cough: never exported). ``voicebot review
export`` later writes the intent and out-of-scope examples into the flow file and marks them
exported; a verdict can be changed or taken back until then.

The verdict keeps the sentence as it was reviewed (``reviews.text``), and is deleted with the
call's turns (purge, forget): the sentence is the caller's words.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from voicebot.records.db import writing
from voicebot.records.schema import LABELS, MISUNDERSTOOD, calls, reviews, turns

MAX_ROWS = 500
"""The most rows one look at the queue returns: a page is for reading, not for everything at once."""
MAX_NAME = 64
CHUNK = 500
"""Ids per statement when many verdicts are marked exported at once (SQLite limits a statement's parameters)."""


class ReviewError(ValueError):
    """A verdict that cannot be kept: no such turn, a label or intent that is not one, exported already."""


@dataclass(frozen=True)
class QueueItem:
    """One sentence waiting for a verdict, with where it was said and what the assistant made of it."""

    call_id: str
    seq: int
    flow: str
    step: str | None
    text: str
    intent: str | None          # the guess (an intent, or the slot an ask step wanted)
    confidence: float | None
    result: str
    started_at: dt.datetime     # the call's start (UTC): turns carry no time of their own


@dataclass(frozen=True)
class Verdict:
    """A kept verdict: for the page's list of recent marks and for the export."""

    id: int
    call_id: str
    seq: int
    flow: str
    text: str
    label: str
    intent: str | None
    reviewer: str
    reviewed_at: dt.datetime
    exported: bool


def _utc(moment: Any) -> Any:
    """SQLite gives times back without their zone; they were written in UTC."""
    if isinstance(moment, dt.datetime) and moment.tzinfo is None:
        return moment.replace(tzinfo=dt.timezone.utc)
    return moment


def _waiting(flow: str | None, hidden_texts: Iterable[str]) -> sa.ColumnElement[bool]:
    unreviewed = ~sa.exists().where(reviews.c.call_id == turns.c.call_id, reviews.c.turn_seq == turns.c.seq)
    conditions = [turns.c.kind == "speech", turns.c.result.in_(MISUNDERSTOOD), turns.c.text != "", unreviewed]
    hidden = sorted({text for text in hidden_texts if text})
    if hidden:
        conditions.append(turns.c.text.not_in(hidden))
    if flow:
        conditions.append(calls.c.flow == flow)
    return sa.and_(*conditions)


def queue(engine: sa.Engine, *, flow: str | None = None, hidden_texts: Iterable[str] = (),
          limit: int = 100) -> list[QueueItem]:
    """The sentences waiting for a verdict, newest call first (at most ``limit``, never more than
    ``MAX_ROWS``). ``hidden_texts``: the flows' redaction texts, which stand for a secret, not a sentence."""
    limit = max(1, min(int(limit), MAX_ROWS))
    query = (sa.select(turns.c.call_id, turns.c.seq, calls.c.flow, turns.c.step, turns.c.text, turns.c.intent,
                       turns.c.intent_confidence, turns.c.result, calls.c.started_at)
             .select_from(turns.join(calls, calls.c.call_id == turns.c.call_id))
             .where(_waiting(flow, hidden_texts))
             .order_by(calls.c.started_at.desc(), turns.c.call_id, turns.c.seq)
             .limit(limit))
    with engine.connect() as conn:
        return [QueueItem(row.call_id, row.seq, row.flow, row.step, row.text, row.intent, row.intent_confidence,
                          row.result, _utc(row.started_at)) for row in conn.execute(query)]


def waiting_count(engine: sa.Engine, *, flow: str | None = None, hidden_texts: Iterable[str] = ()) -> int:
    """How many sentences wait for a verdict in all (the page shows only the newest)."""
    query = (sa.select(sa.func.count()).select_from(turns.join(calls, calls.c.call_id == turns.c.call_id))
             .where(_waiting(flow, hidden_texts)))
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def mark(engine: sa.Engine, call_id: str, seq: int, label: str, intent: str | None, reviewer: str, *,
         intents: Collection[str] | None = None, now: dt.datetime | None = None) -> Verdict:
    """Keep a verdict on turn ``seq`` of ``call_id``: ``label`` one of ``LABELS``; ``intent`` the
    intent's name with the label ``intent`` (and only then); ``intents``, when given, the names the
    flow knows, which ``intent`` must be one of. A turn reviewed before gets the new verdict,
    unless it was exported already. Raises ReviewError."""
    now = now or dt.datetime.now(dt.timezone.utc)
    if label not in LABELS:
        raise ReviewError(f"a verdict is one of {', '.join(LABELS)}")
    if label == "intent":
        if not intent:
            raise ReviewError("choose the intent the sentence is an example of")
        if intents is not None and intent not in intents:
            raise ReviewError(f"the flow has no intent {intent[:MAX_NAME]!r}")
        intent = intent[:MAX_NAME]
    else:
        intent = None
    reviewer = (reviewer or "")[:MAX_NAME]
    try:
        return _keep(engine, call_id, seq, label, intent, reviewer, now)
    except sa.exc.IntegrityError:       # two operators marked it at once: the later verdict wins
        return _keep(engine, call_id, seq, label, intent, reviewer, now)


def _keep(engine: sa.Engine, call_id: str, seq: int, label: str, intent: str | None, reviewer: str,
          now: dt.datetime) -> Verdict:
    with writing(engine) as conn:
        turn = conn.execute(
            sa.select(turns.c.text, calls.c.flow).select_from(turns.join(calls, calls.c.call_id == turns.c.call_id))
            .where(turns.c.call_id == call_id, turns.c.seq == seq)).first()
        if turn is None:
            raise ReviewError("no such turn (the call may have been deleted)")
        before = conn.execute(sa.select(reviews.c.id, reviews.c.exported_at)
                              .where(reviews.c.call_id == call_id, reviews.c.turn_seq == seq)).first()
        values = {"label": label, "intent": intent, "reviewer": reviewer, "reviewed_at": now}
        if before is None:
            review_id = conn.execute(reviews.insert().values(call_id=call_id, turn_seq=seq, flow=turn.flow,
                                                             text=turn.text, **values)).inserted_primary_key[0]
        elif before.exported_at is not None:
            raise ReviewError("this sentence was exported to the flow already")
        else:
            review_id = before.id
            conn.execute(reviews.update().where(reviews.c.id == review_id).values(**values))
    return Verdict(int(review_id), call_id, seq, turn.flow, turn.text, label, intent, reviewer, now, False)


def unmark(engine: sa.Engine, call_id: str, seq: int) -> bool:
    """Take a verdict back (the sentence waits again); False when there was none or it was exported."""
    with writing(engine) as conn:
        return conn.execute(reviews.delete().where(reviews.c.call_id == call_id, reviews.c.turn_seq == seq,
                                                   reviews.c.exported_at.is_(None))).rowcount > 0


def recent(engine: sa.Engine, *, flow: str | None = None, limit: int = 20) -> list[Verdict]:
    """The latest verdicts, newest first."""
    query = sa.select(reviews).order_by(reviews.c.reviewed_at.desc(), reviews.c.id.desc())
    if flow:
        query = query.where(reviews.c.flow == flow)
    with engine.connect() as conn:
        rows = conn.execute(query.limit(max(1, min(int(limit), MAX_ROWS)))).all()
    return [_verdict(row) for row in rows]


def pending_examples(engine: sa.Engine, flow: str) -> list[Verdict]:
    """``flow``'s verdicts that belong in its file and are not there yet: examples of an intent and
    out-of-scope sentences, oldest first. Noise is never exported."""
    query = (sa.select(reviews)
             .where(reviews.c.flow == flow, reviews.c.exported_at.is_(None), reviews.c.label.in_(("intent",
                                                                                                  "out_of_scope")))
             .order_by(reviews.c.reviewed_at, reviews.c.id))
    with engine.connect() as conn:
        return [_verdict(row) for row in conn.execute(query)]


def mark_exported(engine: sa.Engine, ids: Iterable[int], now: dt.datetime | None = None) -> int:
    """Note that these verdicts are in the flow file now; how many were marked."""
    ids = sorted({int(i) for i in ids})
    if not ids:
        return 0
    now = now or dt.datetime.now(dt.timezone.utc)
    marked = 0
    with writing(engine) as conn:
        for start in range(0, len(ids), CHUNK):
            marked += conn.execute(reviews.update().where(reviews.c.id.in_(ids[start:start + CHUNK]),
                                                          reviews.c.exported_at.is_(None))
                                   .values(exported_at=now)).rowcount
    return marked


def _verdict(row: Any) -> Verdict:
    return Verdict(row.id, row.call_id, row.turn_seq, row.flow, row.text, row.label, row.intent, row.reviewer,
                   _utc(row.reviewed_at), row.exported_at is not None)
