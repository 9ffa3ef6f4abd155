"""The operations pages under /ops: the figures and the review queue, for operators only.

Who gets in is the desk's business (``desk.views``): a visitor is sent to the desk's log-in form
(and back here after it), a logged-in agent whose role is not ``operator`` gets 403, and the role
is read from the accounts file on every request. Every POST carries the session's CSRF token.
Pages are never cached or framed, run only this package's own script and take styles only from
its own files: the figures' look (``records.render.REPORT_CSS``) is served as ``/ops/report.css``,
and the inline SVG charts carry plain SVG attributes, no style attributes.

Marking works as plain forms (POST, then back to the queue, 303); the page's script sends the
same forms with ``fetch`` and takes the row away without reloading.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, Response, current_app, flash, jsonify, redirect, render_template, request, url_for

from voicebot.desk.views import csrf_token, current_account, private_headers, refusal
from voicebot.ops.period import SPANS, period_from, zone
from voicebot.records import render, review, stats
from voicebot.records.db import RecordsUnavailable
from voicebot.records.schema import calls
from voicebot.telephony.logsafe import esc

log = logging.getLogger("voicebot.ops")

ops = Blueprint("ops", __name__, url_prefix="/ops", template_folder="templates", static_folder="static",
                static_url_path="/static")

OPEN = {"ops.static", "ops.report_css"}
CALL_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
QUEUE_ROWS = 100
RECENT_ROWS = 15
LABEL_WORDS = {"intent": "example of", "out_of_scope": "out of scope", "noise": "noise"}
RESULT_WORDS = {"out_of_scope": "rejected as out of scope", "not_understood": "not understood, asked again",
                "low_confidence": "too unsure, asked again", "denied": "guess denied by the caller"}
DB_ERRORS = (sa.exc.SQLAlchemyError, OSError)


def _records() -> Any:
    return current_app.extensions["voicebot_ops"]


def _flows() -> dict[str, Any]:
    """The flows the server runs now (read on every request: a reloaded flow shows at once)."""
    return dict(current_app.extensions["voicebot_runtime"].flows)


def _unreadable(exc: BaseException) -> str:
    """The page's words for a database error; the log gets the kind, never the statement's values."""
    orig = getattr(exc, "orig", None)
    log.error("the call records cannot be read: %s%s", type(exc).__name__,
              f" ({type(orig).__name__}: {esc(str(orig), 200)})" if orig is not None else "")
    return (f"The call records cannot be read right now ({type(exc).__name__}); the server's log says more. "
            "Is the worker running, and has it created the database?")


@ops.before_request
def guard() -> Any:
    if request.endpoint in OPEN:
        return None
    refused = refusal("the operations pages are off")
    if refused is not None:
        return refused
    account = current_account()
    if account is None:
        if request.method == "GET":
            return redirect(url_for("desk.login", next=request.full_path.rstrip("?")))
        return Response("log in first\n", status=401, mimetype="text/plain")
    if not account.operator:
        log.warning("refused %s %s to %s: not an operator", request.method, esc(request.path), esc(account.name))
        return render_template("ops/refused.html", agent=account.name, csrf=csrf_token()), 403
    return None


@ops.after_request
def headers(response: Response) -> Response:
    return private_headers(response, cacheable=request.endpoint in OPEN)


def _chosen_flow(flows: dict[str, Any]) -> str:
    """The flow the page's form asked for, when the server runs it; "" (every flow) otherwise."""
    flow_id = request.args.get("flow", "")
    return flow_id if flow_id in flows else ""


def _timezone(flows: dict[str, Any], flow_id: str | None) -> str:
    """The flow's time zone (its business hours'), else the first flow's that has one, else the
    figures' default (``records.stats.DEFAULT_TIMEZONE``)."""
    chosen = [flows[flow_id]] if flow_id in flows else []
    for flow in [*chosen, *flows.values()]:
        if flow.spec.hours is not None:
            return flow.spec.hours.timezone
    return stats.DEFAULT_TIMEZONE


@ops.get("/report.css")
def report_css() -> Any:
    """The figures' own stylesheet (the same rules a report file carries inline)."""
    response = Response(render.REPORT_CSS, mimetype="text/css")
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


# -- the figures --------------------------------------------------------------------------------------

@ops.get("")
def figures() -> Any:
    account = current_account()
    flows = _flows()
    flow_id = _chosen_flow(flows)
    timezone = _timezone(flows, flow_id or None)
    period = period_from(request.args.get("period"), request.args.get("from"), request.args.get("until"),
                         timezone=timezone, now=dt.datetime.now(dt.timezone.utc))
    body, problem, status = "", "", 200
    try:
        report = stats.compute(_records().engine(), flow=flow_id or None, since=period.since, until=period.until,
                               timezone=timezone)
        body = render.page_body(report)
    except RecordsUnavailable as exc:
        problem, status = _sentence(str(exc)), 503
    except DB_ERRORS as exc:
        problem, status = _unreadable(exc), 503
    return render_template("ops/figures.html", agent=account.name, csrf=csrf_token(), flows=sorted(flows),
                           flow=flow_id, period=period, spans=SPANS, timezone=timezone, body=body,
                           problem=problem), status


# -- the review queue ---------------------------------------------------------------------------------

def _hidden_texts(flows: dict[str, Any]) -> set[str]:
    """Texts that stand in for a secret in transcripts (every flow's redaction word): never sentences."""
    return {flow.msg("redacted") for flow in flows.values()}


@ops.get("/review")
def review_page() -> Any:
    account = current_account()
    flows = _flows()
    flow_id = _chosen_flow(flows)
    items: list[review.QueueItem] = []
    recent: list[review.Verdict] = []
    waiting, problem, status = 0, "", 200
    try:
        engine = _records().engine()
        hidden = _hidden_texts(flows)
        items = review.queue(engine, flow=flow_id or None, hidden_texts=hidden, limit=QUEUE_ROWS)
        waiting = review.waiting_count(engine, flow=flow_id or None, hidden_texts=hidden)
        recent = review.recent(engine, flow=flow_id or None, limit=RECENT_ROWS)
    except RecordsUnavailable as exc:
        problem, status = _sentence(str(exc)), 503
    except DB_ERRORS as exc:
        problem, status = _unreadable(exc), 503
    rows = [_row(item, flows) for item in items]
    marks = [_row(verdict, flows) for verdict in recent]
    return render_template("ops/review.html", agent=account.name, csrf=csrf_token(), flows=sorted(flows),
                           flow=flow_id, rows=rows, waiting=waiting, marks=marks, problem=problem,
                           labels=LABEL_WORDS, results=RESULT_WORDS), status


def _row(item: review.QueueItem | review.Verdict, flows: dict[str, Any]) -> dict[str, Any]:
    """What the page shows of a sentence: its flow's intents to choose from, its time in the flow's zone."""
    flow = flows.get(item.flow)
    moment = item.started_at if isinstance(item, review.QueueItem) else item.reviewed_at
    local = moment.astimezone(zone(_timezone(flows, item.flow))) if isinstance(moment, dt.datetime) else None
    intents = [(name, intent.label) for name, intent in flow.spec.intents.items()] if flow else []
    return {"item": item, "dom_id": f"turn-{item.call_id}-{item.seq}", "when": local.strftime("%Y-%m-%d %H:%M")
            if local else "", "language": flow.language if flow else "", "intents": intents,
            "known": flow is not None,
            "intent_label": dict(intents).get(item.intent or "", "")}


def _answer(status: int, message: str, flow_id: str) -> Any:
    """JSON for the page's script; for a plain form a message and back to the queue."""
    if request.accept_mimetypes.best_match(["application/json", "text/html"]) == "application/json":
        return jsonify({"message": message}), status
    flash(message)
    return redirect(url_for("ops.review_page", flow=flow_id or None), code=303)


def _turn() -> tuple[str, int] | None:
    call_id, seq = request.form.get("call_id", ""), request.form.get("seq", "")
    if not CALL_ID.match(call_id) or not seq.isdigit() or len(seq) > 6:
        return None
    return call_id, int(seq)


@ops.post("/review/mark")
def mark() -> Any:
    account = current_account()
    back = request.form.get("back_flow", "")[:64]
    turn = _turn()
    label = request.form.get("label", "")
    if turn is None:
        return _answer(404, "No such sentence.", back)
    if label not in LABEL_WORDS:
        return _answer(400, "Choose intent, out of scope or noise.", back)
    intent = request.form.get("intent", "")[:64] or None
    flows = _flows()
    try:
        engine = _records().engine()
        flow_id = _flow_of(engine, turn[0])
        known = None if flow_id is None else list(flows[flow_id].spec.intents) if flow_id in flows else []
        verdict = review.mark(engine, *turn, label, intent, account.name, intents=known)
    except review.ReviewError as exc:
        return _answer(409 if "exported" in str(exc) else 400, f"{exc}.", back)
    except RecordsUnavailable as exc:
        return _answer(503, _sentence(str(exc)), back)
    except DB_ERRORS as exc:
        return _answer(503, _unreadable(exc), back)
    log.info("%s marked turn %d of call %s as %s%s", esc(account.name), turn[1], esc(turn[0]), label,
             f" {esc(verdict.intent)}" if verdict.intent else "")
    what = f"an example of {verdict.intent}" if verdict.intent else LABEL_WORDS[label]
    return _answer(200, f"Marked as {what}.", back)


def _flow_of(engine: sa.Engine, call_id: str) -> str | None:
    """The flow of a call (None when there is no such call: ``review.mark`` then says so)."""
    with engine.connect() as conn:
        return conn.execute(sa.select(calls.c.flow).where(calls.c.call_id == call_id)).scalar()


@ops.post("/review/unmark")
def unmark() -> Any:
    account = current_account()
    back = request.form.get("back_flow", "")[:64]
    turn = _turn()
    if turn is None:
        return _answer(404, "No such sentence.", back)
    try:
        taken = review.unmark(_records().engine(), *turn)
    except RecordsUnavailable as exc:
        return _answer(503, _sentence(str(exc)), back)
    except DB_ERRORS as exc:
        return _answer(503, _unreadable(exc), back)
    if not taken:
        return _answer(409, "That verdict is gone or was exported already.", back)
    log.info("%s took back the verdict on turn %d of call %s", esc(account.name), turn[1], esc(turn[0]))
    return _answer(200, "Verdict taken back: the sentence waits again.", back)


def _sentence(text: str) -> str:
    """A message as a sentence on the page: capital first letter, full stop."""
    text = text.strip()
    return (text[:1].upper() + text[1:]).rstrip(".") + "." if text else text
