"""The call records' tables, written once for SQLite and PostgreSQL alike (SQLAlchemy Core).

Times are UTC (``DateTime(timezone=True)``; SQLite keeps them as text without the zone, so code
reading them treats a naive value as UTC). Nothing here holds a secret: caller turns are stored
as the engine's transcript wrote them (PINs and dates of birth already replaced, postcodes
masked), and the caller's number only as an HMAC (``caller_hash``) so that ``voicebot records
forget`` can find a caller's calls without the number being stored.

Turn ``result`` says what became of what the caller said (``RESULTS``, the engine's words:
``dialog.outcomes``). The review queue lists
spoken turns whose result is in ``MISUNDERSTOOD``.

Alembic's migrations (``records/migrations``) create and change these tables; a test keeps the
two equal.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean, Column, DateTime, Float, ForeignKey, ForeignKeyConstraint, Index, Integer, MetaData, String, Table, Text,
    UniqueConstraint,
)

from voicebot.dialog.outcomes import MISUNDERSTOOD as MISUNDERSTOOD_RESULTS
from voicebot.dialog.outcomes import TURN_RESULTS

metadata = MetaData()

OUTCOMES = ("completed", "transferred", "hung_up", "unanswered")
"""completed: the assistant finished the call (a hang-up step); transferred: handed to a person
(``reason`` says why); hung_up: the caller hung up before the end (``end_step`` says where);
unanswered: Twilio reported busy / failed / no-answer / canceled before the flow ran."""

RESULTS = TURN_RESULTS
MISUNDERSTOOD = MISUNDERSTOOD_RESULTS

calls = Table(
    "calls", metadata,
    Column("call_id", String(64), primary_key=True),
    Column("flow", String(64), nullable=False),
    Column("flow_version", String(16), nullable=False, default=""),
    Column("language", String(16), nullable=False, default=""),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True)),
    Column("duration_seconds", Integer),
    Column("outcome", String(16), nullable=False),
    Column("reason", String(64)),           # transfer reason, or why the call ended
    Column("end_step", String(64)),         # the step the call was at when it ended
    Column("intent", String(64)),
    Column("intent_confidence", Float),
    Column("identity_level", String(32)),
    Column("verified", Boolean, nullable=False, default=False),
    Column("feedback", Integer),            # 1..5, or NULL when not given
    Column("feedback_comment", Text),
    Column("turns", Integer, nullable=False, default=0),
    Column("keypad_only", Boolean, nullable=False, default=False),
    Column("caller_hash", String(64)),      # HMAC-SHA256 (hex) of the caller's E.164 number, never the number
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)
Index("calls_by_flow_time", calls.c.flow, calls.c.started_at)
Index("calls_by_caller", calls.c.caller_hash)

steps = Table(
    "steps", metadata,
    Column("call_id", String(64), ForeignKey("calls.call_id", ondelete="CASCADE"), primary_key=True),
    Column("seq", Integer, primary_key=True),       # 0, 1, ... in the order the call visited them
    Column("step", String(64), nullable=False),
)
Index("steps_by_step", steps.c.step)

turns = Table(
    "turns", metadata,
    Column("call_id", String(64), ForeignKey("calls.call_id", ondelete="CASCADE"), primary_key=True),
    Column("seq", Integer, primary_key=True),       # 1, 2, ...: the caller's turns in order
    Column("step", String(64)),
    Column("kind", String(16), nullable=False),     # speech, keys, no_input
    Column("text", Text, nullable=False, default=""),   # as the recogniser wrote it, secrets redacted
    Column("digits", String(64)),                   # keys pressed, secrets redacted
    Column("asr_confidence", Float),
    Column("intent", String(64)),                   # what it was understood as (the best guess)
    Column("intent_confidence", Float),
    Column("result", String(24), nullable=False, default="other"),   # one of RESULTS
    Column("recognition_ms", Integer),              # end of speech to the recogniser's final result
    Column("response_ms", Integer),                 # end of the turn to the bot's first audio
)
Index("turns_by_result", turns.c.result)

reviews = Table(
    "reviews", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("call_id", String(64), nullable=False),
    Column("turn_seq", Integer, nullable=False),
    Column("flow", String(64), nullable=False),
    Column("text", Text, nullable=False),           # the turn's text when it was reviewed
    Column("label", String(16), nullable=False),    # intent, out_of_scope, noise
    Column("intent", String(64)),                   # with label intent: which one
    Column("reviewer", String(64), nullable=False),
    Column("reviewed_at", DateTime(timezone=True), nullable=False),
    Column("exported_at", DateTime(timezone=True)),  # set by `voicebot review export --write`
    UniqueConstraint("call_id", "turn_seq", name="reviews_one_per_turn"),
    # Deleted with the call's turns (purge, forget): the sentence is the caller's words.
    ForeignKeyConstraint(["call_id", "turn_seq"], ["turns.call_id", "turns.seq"], ondelete="CASCADE"),
)
Index("reviews_by_flow", reviews.c.flow, reviews.c.exported_at)

LABELS = ("intent", "out_of_scope", "noise")
