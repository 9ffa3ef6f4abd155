"""The agent desk: the browser page where agents see, take and close warm transfers (docs/desk.md).

``register_desk`` adds it to the web app under /agent. It needs a secret to sign its session
cookies (``VOICEBOT_DESK_SECRET``; the development mode keeps one in .run/desk-secret); without one
the desk answers 503 and says why, and calls are not affected. Its Redis client is made on first
use, so the app starts (and takes calls) with Redis down, like the rest of the web process.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

from flask import Flask

from voicebot.config import Settings
from voicebot.desk.accounts import Accounts
from voicebot.desk.board import Board
from voicebot.desk.events import StreamSlots
from voicebot.desk.views import desk
from voicebot.redis_clients import redis_client

COOKIE = "voicebot_desk"
MIN_SECRET = 32
SECRET_RECIPE = "python3 -c 'import secrets; print(secrets.token_hex(32))'"


def secret_problem(secret: str) -> str | None:
    """Why ``secret`` cannot sign the desk's cookies, or None."""
    if not secret:
        return f"VOICEBOT_DESK_SECRET is not set: make one with `{SECRET_RECIPE}` and set it (the same on every node)"
    if len(secret) < MIN_SECRET:
        return f"VOICEBOT_DESK_SECRET is too short ({len(secret)} characters, at least {MIN_SECRET})"
    return None


def flow_queues(flows: dict[str, Any]) -> list[str]:
    """Every queue the flows transfer to: each flow's queue and after-hours queue, and transfer steps' own."""
    queues = []
    for flow in flows.values():
        transfer = flow.spec.transfer
        queues += [transfer.queue, transfer.closed_queue or ""]
        queues += [getattr(step, "queue", None) or "" for step in flow.spec.steps.values()
                   if getattr(step, "type", "") == "transfer"]
    return [q for q in dict.fromkeys(queues) if q]


class DeskState:
    """What the desk's views share in one process: settings, accounts, stream slots, the board."""

    def __init__(self, settings: Settings, queues: list[str]):
        self.settings = settings.desk
        self.redis_url = settings.redis_url
        self.keep_seconds = settings.call_ttl_seconds
        self.queues = queues
        self.off = secret_problem(settings.desk.secret) or ""
        desk_settings = settings.desk
        self.accounts = Accounts(desk_settings.accounts, attempts=desk_settings.lockout_attempts,
                                 address_attempts=desk_settings.lockout_attempts_per_address,
                                 window_seconds=desk_settings.lockout_minutes * 60)
        self.slots = StreamSlots(desk_settings.max_event_streams)
        self._board: Board | None = None
        self._lock = threading.Lock()

    def board(self) -> Board:
        """The board, its Redis client made on first use (ValueError for a malformed REDIS_URL)."""
        with self._lock:
            if self._board is None:
                self._board = Board(redis_client(self.redis_url, "desk"), self.queues, group=self.settings.group,
                                    keep_seconds=self.keep_seconds, max_cards=self.settings.max_cards)
            return self._board


def register_desk(app: Flask, settings: Settings, flows: dict[str, Any]) -> DeskState:
    """Add the desk to ``app``: its blueprint, its cookie settings and its shared state."""
    state = DeskState(settings, list(settings.desk.queues) or flow_queues(flows))
    app.extensions["voicebot_desk"] = state
    app.config.update(
        SECRET_KEY=settings.desk.secret or None,
        SESSION_COOKIE_NAME=COOKIE,
        SESSION_COOKIE_PATH="/",               # one log-in for the desk (/agent) and the operations pages (/ops)
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.telephony.public_url.startswith("https://"),
        PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=settings.desk.session_hours),
    )
    app.register_blueprint(desk)
    return state
