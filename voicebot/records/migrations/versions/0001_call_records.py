"""The call records: calls, the steps they visited, the caller's turns, and reviews of turns.

Revision ID: 0001
Revises: (none)

Written out column by column rather than from ``records.schema``, so this migration stays what it
was when the schema changes later; a test checks that the two agree after the upgrade.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "calls",
        sa.Column("call_id", sa.String(64), primary_key=True),
        sa.Column("flow", sa.String(64), nullable=False),
        sa.Column("flow_version", sa.String(16), nullable=False),
        sa.Column("language", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.Column("duration_seconds", sa.Integer),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64)),
        sa.Column("end_step", sa.String(64)),
        sa.Column("intent", sa.String(64)),
        sa.Column("intent_confidence", sa.Float),
        sa.Column("identity_level", sa.String(32)),
        sa.Column("verified", sa.Boolean, nullable=False),
        sa.Column("feedback", sa.Integer),
        sa.Column("feedback_comment", sa.Text),
        sa.Column("turns", sa.Integer, nullable=False),
        sa.Column("keypad_only", sa.Boolean, nullable=False),
        sa.Column("caller_hash", sa.String(64)),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("calls_by_flow_time", "calls", ["flow", "started_at"])
    op.create_index("calls_by_caller", "calls", ["caller_hash"])

    op.create_table(
        "steps",
        sa.Column("call_id", sa.String(64), sa.ForeignKey("calls.call_id", ondelete="CASCADE"), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("step", sa.String(64), nullable=False),
    )
    op.create_index("steps_by_step", "steps", ["step"])

    op.create_table(
        "turns",
        sa.Column("call_id", sa.String(64), sa.ForeignKey("calls.call_id", ondelete="CASCADE"), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("step", sa.String(64)),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("digits", sa.String(64)),
        sa.Column("asr_confidence", sa.Float),
        sa.Column("intent", sa.String(64)),
        sa.Column("intent_confidence", sa.Float),
        sa.Column("result", sa.String(24), nullable=False),
        sa.Column("recognition_ms", sa.Integer),
        sa.Column("response_ms", sa.Integer),
    )
    op.create_index("turns_by_result", "turns", ["result"])

    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("call_id", sa.String(64), nullable=False),
        sa.Column("turn_seq", sa.Integer, nullable=False),
        sa.Column("flow", sa.String(64), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("label", sa.String(16), nullable=False),
        sa.Column("intent", sa.String(64)),
        sa.Column("reviewer", sa.String(64), nullable=False),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("exported_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("call_id", "turn_seq", name="reviews_one_per_turn"),
        sa.ForeignKeyConstraint(["call_id", "turn_seq"], ["turns.call_id", "turns.seq"], ondelete="CASCADE"),
    )
    op.create_index("reviews_by_flow", "reviews", ["flow", "exported_at"])


def downgrade() -> None:
    for table in ("reviews", "turns", "steps", "calls"):
        op.drop_table(table)
