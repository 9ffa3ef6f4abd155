"""The operations pages at /ops: call figures per flow and period, and the review queue (docs/ops.md).

They live in the web process next to the agent desk and use its log-in: the same accounts, the same
signed session cookie, the same CSRF token; only accounts with the role ``operator`` get in. The
call records database is opened for reading (``records.db.open_engine(url, migrate=False)``, on
first use, so the web process starts and takes calls without it); the only rows these pages write
are operators' verdicts in the review queue. When the database is not there yet or cannot be
read, the pages say so instead of failing.
"""

from __future__ import annotations

from flask import Flask

from voicebot.config import Settings
from voicebot.ops.state import OpsState
from voicebot.ops.views import ops


def register_ops(app: Flask, settings: Settings) -> OpsState:
    """Add the operations pages to ``app``; the desk (``register_desk``) must be registered too: its
    session, log-in and accounts are theirs."""
    state = OpsState(settings)
    app.extensions["voicebot_ops"] = state
    app.register_blueprint(ops)
    return state
