"""The desk's pages and endpoints under /agent: log-in, the board, live updates, claim and close.

Nothing of a caller leaves this blueprint without a logged-in agent: the page sends a visitor to
the log-in form, the API and the event stream answer 401. Every POST (the log-in form included)
must carry the session's CSRF token, as a form field or the ``X-CSRF-Token`` header, or gets 403.
The session is Flask's signed cookie (``VOICEBOT_DESK_SECRET``), HttpOnly, SameSite=Lax, Secure
when the public URL is https, for the whole site (the operations pages at /ops share it); it holds
the agent's name, when they logged in and the account's epoch (``accounts.py``), all checked on
every request, so a session ends after ``desk.session_hours`` or at once when the account changes.
Pages with callers' data are never cached and never framed, and only scripts from the desk's own
static folder run on them (CSP).

Forms work without JavaScript (POST, then back to the board); the page's script submits them with
``fetch`` instead and updates the board in place.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import sqlite3
import time
from typing import Any, Callable

import redis
from flask import (Blueprint, Response, current_app, flash, jsonify, redirect, render_template, request, session,
                   stream_with_context, url_for)

from voicebot.desk.accounts import Account
from voicebot.desk.board import OUTCOMES, NotOnBoard, Outcome
from voicebot.desk.cards import LOW_CONFIDENCE, card
from voicebot.desk.events import board_events
from voicebot.telephony.logsafe import esc

log = logging.getLogger("voicebot.desk")

desk = Blueprint("desk", __name__, url_prefix="/agent", template_folder="templates", static_folder="static",
                 static_url_path="/static")

CALL_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
REDIS_DOWN = (redis.RedisError, OSError, ValueError)
"""Redis refused, timed out or is not reachable (ValueError: REDIS_URL is not a Redis URL)."""
OPEN = {"desk.login", "desk.static"}
"""Endpoints a visitor who has not logged in may reach: nothing of a caller is in them."""
NEXT = re.compile(r"^/(agent|ops)(/[A-Za-z0-9_/-]*)?(\?[A-Za-z0-9_=&%.:+-]*)?$")
"""A page to return to after logging in: a path under /agent or /ops, nothing that leaves the site."""
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


def _state() -> Any:
    return current_app.extensions["voicebot_desk"]


def current_account() -> Account | None:
    """The logged-in account (name, role), or None: no session, too old, or the account changed or is gone."""
    state = _state()
    name, epoch, since = session.get("agent"), session.get("epoch"), session.get("since")
    if not isinstance(name, str) or not isinstance(since, (int, float)):
        return None
    if not 0 <= time.time() - since <= state.settings.session_hours * 3600:
        return None
    try:
        account = state.accounts.account(name)
    except sqlite3.Error as exc:
        log.error("the agents' accounts file %s cannot be read (%s): nobody is let in", state.settings.accounts, exc)
        return None
    if account is None or account.epoch != epoch:
        return None
    return account


def current_agent() -> str | None:
    """The logged-in agent's name, or None (see ``current_account``)."""
    account = current_account()
    return None if account is None else account.name


def safe_next(target: str | None) -> str | None:
    """Where to go after logging in, when it is a page of this app's own (the desk or /ops); None otherwise,
    so the log-in form cannot be used to send someone elsewhere."""
    if not target or len(target) > 200 or not NEXT.match(target):
        return None
    return target


def csrf_token() -> str:
    token = session.get("csrf")
    if not isinstance(token, str) or len(token) < 32:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def csrf_ok() -> bool:
    """The request carries the session's CSRF token (form field ``csrf_token`` or header ``X-CSRF-Token``)."""
    given = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token", "")
    expected = session.get("csrf")
    return bool(isinstance(expected, str) and given and hmac.compare_digest(given.encode(), expected.encode()))


def _wants_json() -> bool:
    return request.accept_mimetypes.best_match(["application/json", "text/html"]) == "application/json"


def refusal(off_words: str) -> Response | None:
    """Why a request to the desk or the operations pages is refused before anyone's session is
    looked at: 503 (``off_words`` and why) while there is no cookie secret, 403 for a POST
    without the session's CSRF token; None when neither."""
    off = _state().off
    if off:
        return Response(f"{off_words}: {off}\n", status=503, mimetype="text/plain")
    if request.method == "POST" and not csrf_ok():
        log.warning("refused %s %s: CSRF token missing or wrong", request.method, esc(request.path))
        return Response("CSRF token missing or wrong: reload the page\n", status=403, mimetype="text/plain")
    return None


@desk.before_request
def guard() -> Any:
    refused = refusal("the agent desk is off")
    if refused is not None:
        return refused
    if request.endpoint in OPEN:
        return None
    if current_agent() is None:
        if request.endpoint == "desk.page":
            return redirect(url_for("desk.login"))
        return Response("log in first\n", status=401, mimetype="text/plain")
    return None


def private_headers(response: Response, *, cacheable: bool = False) -> Response:
    """The headers of every page with callers' data (the desk's and the operations pages'): only
    the site's own scripts and styles, never framed, never cached unless ``cacheable`` (static files)."""
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if not cacheable:
        response.headers["Cache-Control"] = "no-store"
    return response


@desk.after_request
def headers(response: Response) -> Response:
    return private_headers(response, cacheable=request.endpoint == "desk.static")


# -- logging in and out ------------------------------------------------------------------------------

@desk.route("/login", methods=["GET", "POST"])
def login() -> Any:
    state = _state()
    back = safe_next(request.values.get("next"))
    if request.method == "GET":
        if current_agent() is not None:
            return redirect(back or url_for("desk.page"))
        return render_template("desk/login.html", csrf=csrf_token(), problem="", name="", back=back)
    name = request.form.get("name", "")[:64]
    address = request.remote_addr or "unknown"
    try:
        result = state.accounts.log_in(name, request.form.get("password", ""), address)
    except sqlite3.Error as exc:
        log.error("the agents' accounts file %s cannot be read (%s)", state.settings.accounts, exc)
        return render_template("desk/login.html", csrf=csrf_token(), name=name, back=back,
                               problem="Log-in is not possible right now: the accounts file cannot be read."), 503
    if result.ok:
        session.clear()                       # a fresh session: nothing from before the log-in carries over
        session.permanent = True
        session.update(agent=result.agent, epoch=result.epoch, since=time.time())
        csrf_token()
        log.info("agent %s logged in from %s", esc(result.agent), esc(address))
        return redirect(back or url_for("desk.page"), code=303)
    if result.locked_for:
        minutes = max(1, round(result.locked_for / 60))
        log.warning("desk log-in refused for %s from %s: locked", esc(name, 64), esc(address))
        return render_template("desk/login.html", csrf=csrf_token(), name=name, back=back,
                               problem=f"Too many wrong passwords. Try again in about {minutes} minute"
                                       f"{'s' if minutes != 1 else ''}."), 429
    log.warning("desk log-in failed for %s from %s", esc(name, 64), esc(address))
    return render_template("desk/login.html", csrf=csrf_token(), name=name, back=back,
                           problem="Wrong name or password."), 401


@desk.post("/logout")
def logout() -> Any:
    agent = current_agent()
    if agent:
        try:
            _state().accounts.end_sessions(agent)
        except sqlite3.Error:
            pass                               # the cookie goes anyway
    session.clear()
    return redirect(url_for("desk.login"), code=303)


# -- the board ---------------------------------------------------------------------------------------

def _board_payload(agent: str) -> dict[str, Any]:
    """The board for ``agent``: the transfers as data, the cards as HTML, Redis's clock. Raises RedisError."""
    snapshot = _state().board().snapshot()
    cards = [card(t, snapshot.now_ms) for t in snapshot.transfers]
    html = render_template("desk/board.html", cards=cards, agent=agent, outcomes=OUTCOMES, csrf=csrf_token())
    return {"agent": agent, "now_ms": snapshot.now_ms, "waiting": sum(1 for c in cards if c["waiting"]),
            "transfers": [t.to_json(snapshot.now_ms) for t in snapshot.transfers], "html": html,
            "low_confidence": LOW_CONFIDENCE}


@desk.get("")
def page() -> Any:
    account = current_account()
    agent = account.name
    state = _state()
    try:
        payload, problem, status = _board_payload(agent), "", 200
    except REDIS_DOWN:
        payload, problem, status = None, "Redis does not answer: transfers cannot be shown. Retrying.", 503
    return render_template("desk/page.html", agent=agent, operator=account.operator, payload=payload,
                           problem=problem, csrf=csrf_token(),
                           poll_seconds=state.settings.poll_seconds,
                           streams=state.settings.max_event_streams > 0), status


@desk.get("/api/transfers")
def transfers() -> Any:
    try:
        return jsonify(_board_payload(current_agent()))
    except REDIS_DOWN:
        return jsonify({"problem": "Redis does not answer"}), 503


@desk.get("/events")
def events() -> Any:
    state = _state()
    agent = current_agent()
    if not state.slots.take():
        return Response("too many live desks on this server: poll /agent/api/transfers\n", status=503,
                        mimetype="text/plain", headers={"Retry-After": str(state.settings.event_stream_seconds)})

    def look() -> tuple[str, dict]:
        payload = _board_payload(agent)
        digest = hashlib.sha256(json.dumps(payload["transfers"], sort_keys=True).encode()).hexdigest()
        return digest, payload

    try:
        board = state.board()
    except REDIS_DOWN:
        state.slots.give_back()
        return Response("Redis does not answer\n", status=503, mimetype="text/plain")
    body = board_events(board.client, board.channels, look, heartbeat_seconds=state.settings.heartbeat_seconds,
                        max_seconds=state.settings.event_stream_seconds)
    response = Response(stream_with_context(body), mimetype="text/event-stream",
                        headers={"X-Accel-Buffering": "no"})
    response.call_on_close(state.slots.give_back)
    return response


# -- claim and close ---------------------------------------------------------------------------------

def _answer(status: int, message: str, agent: str) -> Any:
    """JSON (with the new board) for the page's script; a message and the board for a plain form."""
    if _wants_json():
        body: dict[str, Any] = {"message": message}
        try:
            body["board"] = _board_payload(agent)
        except REDIS_DOWN:
            pass
        return jsonify(body), status
    flash(message)
    return redirect(url_for("desk.page"), code=303)


def _on_board(agent: str, act: Callable[[Any], Outcome], gone: str) -> tuple[Outcome | None, Any]:
    """One board action on a call, with the answers every action gives alike: no such call, no
    longer on the board (``gone``), Redis down. Returns the outcome, or None and the answer."""
    try:
        return act(_state().board()), None
    except NotOnBoard:
        return None, _answer(404, gone, agent)
    except REDIS_DOWN:
        return None, _answer(503, "Redis does not answer: try again.", agent)


def _not_yours(outcome: Outcome, agent: str, doing: str) -> Any:
    """Why an agent cannot give back or close a transfer: closed already, or someone else's."""
    if outcome.why == "closed":
        return _answer(409, "That transfer was closed already.", agent)
    return _answer(409, f"Only {outcome.agent or 'the agent who takes it'} can {doing} this transfer.", agent)


@desk.post("/transfers/<call_id>/claim")
def claim(call_id: str) -> Any:
    agent = current_agent()
    if not CALL_ID.match(call_id):
        return _answer(404, "No such transfer.", agent)
    outcome, refused = _on_board(agent, lambda board: board.claim(call_id, agent),
                                 "That transfer is no longer waiting.")
    if outcome is None:
        return refused
    if outcome.ok:
        log.info("agent %s took call %s", esc(agent), esc(call_id))
        return _answer(200, "You took this transfer.", agent)
    return _answer(409, f"Already taken by {outcome.agent}.", agent)


@desk.post("/transfers/<call_id>/release")
def release(call_id: str) -> Any:
    agent = current_agent()
    if not CALL_ID.match(call_id):
        return _answer(404, "No such transfer.", agent)
    outcome, refused = _on_board(agent, lambda board: board.release(call_id, agent),
                                 "That transfer is no longer open.")
    if outcome is None:
        return refused
    if outcome.ok:
        log.info("agent %s gave back call %s", esc(agent), esc(call_id))
        return _answer(200, "Given back: it waits for anyone again.", agent)
    return _not_yours(outcome, agent, "give back")


@desk.post("/transfers/<call_id>/close")
def close(call_id: str) -> Any:
    agent = current_agent()
    outcome_name = request.form.get("outcome", "")
    if not CALL_ID.match(call_id):
        return _answer(404, "No such transfer.", agent)
    if outcome_name not in OUTCOMES:
        return _answer(400, "Choose an outcome from the list.", agent)
    outcome, refused = _on_board(agent, lambda board: board.close(call_id, agent, outcome_name),
                                 "That transfer is no longer open.")
    if outcome is None:
        return refused
    if outcome.ok:
        log.info("agent %s closed call %s: %s", esc(agent), esc(call_id), outcome_name)
        return _answer(200, f"Closed: {OUTCOMES[outcome_name]}.", agent)
    return _not_yours(outcome, agent, "close")
