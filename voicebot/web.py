"""The HTTP side of voicebot: Twilio's webhooks, the Media Stream socket, health and metrics.

Redis is optional on this path: a call must still be answered when Redis is down (only warm
transfer and cross-process call state need it), so nothing here connects to Redis at import or at
start-up, and /healthz reports Redis instead of failing on it.

Every request under /twilio/, the WebSocket handshake included, must carry a valid
X-Twilio-Signature for the PUBLIC address Twilio called (``telephony.public_url`` / PUBLIC_URL),
never the address Flask sees behind a proxy or tunnel. A bad or missing signature gets 403, a
count and a log line with the method, the path and facts about the headers (never body values).
There is no unsigned mode: local development runs with a generated token (see devmode.py).

Nothing can hold the server: bodies over ``MAX_BODY_BYTES`` are refused (413) from their
Content-Length, before anything is read; a media socket that sends no accepted ``start`` within
``telephony.start_timeout_seconds`` or nothing at all for ``telephony.media_timeout_seconds`` is
closed, pings find dead peers, at most ``telephony.max_pending_streams`` sockets may be waiting for
their ``start`` (more get 503 before the upgrade), and gunicorn has ``web.webhook_threads``
threads beyond the sockets' so a full house never blocks ``/twilio/voice``. A call that comes in
while ``telephony.max_calls`` streams are live hears a short message and waits in the agents'
queue: never silence.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import signal
import sys
import threading
import time
from typing import Any

import redis
from flask import Flask, Response, abort, g, jsonify, request
from flask_sock import Sock
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter

from voicebot import __version__
from voicebot.config import Settings, load_settings
from voicebot.desk import register_desk
from voicebot.dialog.hours import is_open
from voicebot.redis_clients import redis_client
from voicebot.handoff.pickups import announce_pickup
from voicebot.ops import register_ops
from voicebot.records.queueing import enqueue_record
from voicebot.telephony import twiml, unreachable
from voicebot.telephony.logsafe import esc
from voicebot.telephony.runtime import Runtime
from voicebot.telephony.failover import failure_transfer
from voicebot.telephony.resume import forget_unfinished
from voicebot.telephony.session import CallSession
from voicebot.telephony.stream_auth import TOKEN_PARAMETER

log = logging.getLogger("voicebot.web")
XML = "text/xml"

# Twilio's webhooks are a few KB of form fields; nothing legitimate comes near this.
MAX_BODY_BYTES = 64 * 1024
# The socket loop wakes this often to check its deadlines.
POLL_SECONDS = 0.5
# simple_websocket pings every this many seconds and closes a peer that did not answer the last ping.
PING_SECONDS = 10


def _health_client(url: str) -> redis.Redis | None:
    """One client per app so the connection pool is shared by the 32 gunicorn threads.

    A malformed URL gives None (reported as "down") rather than an app that will not start,
    because calls do not need Redis.
    """
    try:
        return redis_client(url, "probe")
    except ValueError:
        return None


def _redis_status(client: redis.Redis | None) -> str:
    if client is None:
        return "down"
    try:
        client.ping()
    except (redis.RedisError, OSError):
        return "down"
    return "ok"


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> Flask:
    """Build the app from explicit settings so tests and `voicebot serve` share one code path.

    The flows are loaded and validated here: an invalid flow stops start-up with every problem
    listed, instead of failing a caller later.
    """
    if settings is None:
        settings = load_settings()
    app = Flask("voicebot")
    app.config["VOICEBOT_SETTINGS"] = settings
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.config["SOCK_SERVER_OPTIONS"] = {"ping_interval": PING_SECONDS, "max_message_size": 256 * 1024}
    health_redis = _health_client(settings.redis_url)
    rt = runtime or Runtime(settings)
    app.extensions["voicebot_runtime"] = rt
    register_desk(app, settings, rt.flows)      # /agent: the agents' desk (its own cookie secret and log-in)
    register_ops(app, settings)                 # /ops: figures and the review queue, for the desk's operators
    tel = settings.telephony
    configured = bool(tel.auth_token and tel.public_url)
    if not configured:
        log.warning("TWILIO_AUTH_TOKEN and PUBLIC_URL (telephony.public_url) are not both set: every Twilio request "
                    "is refused and /healthz answers 503")

    @app.get("/healthz")
    def healthz() -> Any:
        """200 when calls can be taken, else 503 with the reasons. Redis down is reported, not fatal:
        calls go on without it, so an orchestrator must not restart the process for it."""
        problems = []
        if not configured:
            problems.append("not configured: TWILIO_AUTH_TOKEN and PUBLIC_URL must be set")
        if not rt.ready.is_set():
            problems.append("starting: speech models and prompts are not ready yet")
        body = {"status": "ok" if not problems else "unavailable", "version": __version__,
                "redis": _redis_status(health_redis), "ready": rt.ready.is_set()}
        if problems:
            body["problems"] = problems
        if settings.dev:
            body["mode"] = "development"
        return jsonify(body), 200 if not problems else 503

    @app.get("/favicon.ico")
    def favicon() -> Any:
        """No icon, said plainly: a browser asks for one on every page of the desk and /ops, and a 404
        there is an error in the agent's or operator's console."""
        return Response(status=204, headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/metrics")
    def metrics() -> Any:
        if settings.metrics_port:
            return Response(f"metrics are served on 127.0.0.1:{settings.metrics_port}\n", status=404,
                            mimetype="text/plain")
        if settings.metrics_token and not _bearer_ok(settings.metrics_token):
            return Response("a bearer token is needed (VOICEBOT_METRICS_TOKEN)\n", status=401,
                            mimetype="text/plain", headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
        return Response(rt.metrics.render(), mimetype="text/plain; version=0.0.4")

    @app.before_request
    def guard() -> Any:
        length = request.content_length
        if length is not None and length > MAX_BODY_BYTES:
            # Refused from the header alone: not one byte of the body is read.
            log.warning("refused %s %s: body of %d bytes (at most %d)", request.method, esc(request.path), length,
                        MAX_BODY_BYTES)
            return Response("request body too large\n", status=413, mimetype="text/plain")
        if not request.path.startswith("/twilio/"):
            return None
        if not _signature_ok(settings):
            refuse("bad or missing X-Twilio-Signature")
        if request.path == "/twilio/media":
            if not rt.open_pending():
                rt.metrics.closed_sockets.labels(reason="too_many_pending").inc()
                log.warning("refused a media socket: %d sockets are already waiting for their start",
                            tel.max_pending_streams)
                return Response("too many streams starting\n", status=503, mimetype="text/plain",
                                headers={"Retry-After": "1"})
            g.pending_socket = True
        return None

    @app.teardown_request
    def release_pending(_exc: BaseException | None) -> None:
        if g.pop("pending_socket", False):
            rt.close_pending()

    def refuse(why: str) -> None:
        """403 with a log line of header facts only: the body of an unauthenticated request is not logged."""
        rt.metrics.refused.inc()
        log.warning("refused %s %s: %s (signature header %s, %s bytes, user agent %s)", request.method,
                    esc(request.path), why, "present" if request.headers.get("X-Twilio-Signature") else "absent",
                    request.content_length or 0, esc(request.headers.get("User-Agent", ""), 48))
        abort(403)

    def public() -> str:
        return tel.public_url or request.host_url.rstrip("/")

    @app.post("/twilio/voice")
    def voice() -> Any:
        call_sid = request.form.get("CallSid", "")
        if not call_sid:
            return Response("a Twilio voice webhook needs CallSid\n", status=400, mimetype="text/plain")
        if _finished(rt, call_sid, "/twilio/voice"):
            return Response(twiml.hangup(), mimetype=XML)
        flow = rt.flow(request.args.get("flow"))
        rt.metrics.calls.inc()
        fields = {"caller": request.form.get("From", ""), "called": request.form.get("To", ""), "flow": flow.id,
                  "flow_version": flow.version, "language": flow.language,
                  "status": request.form.get("CallStatus", "")}
        if rt.at_capacity():
            return Response(_over_capacity(rt, tel, public(), call_sid, flow, fields), mimetype=XML)
        rt.store.update(call_sid, **fields)
        params = {"from": fields["caller"], "to": fields["called"], "flow": flow.id,
                  TOKEN_PARAMETER: rt.call_token(call_sid)}
        return Response(twiml.connect_stream(public(), params), mimetype=XML)

    @app.post("/twilio/after-stream")
    def after_stream() -> Any:
        call_sid = request.form.get("CallSid", "")
        record = rt.store.get(call_sid) or {} if call_sid else {}
        return Response(_after_stream_twiml(rt, tel, public(), call_sid, record), mimetype=XML)

    @app.route("/twilio/whisper", methods=["GET", "POST"])
    def whisper() -> Any:
        """The agent's briefing: only for the call whose token the URL carries (and the leg's parent)."""
        call_sid = request.args.get("call", "")
        if not rt.token_ok(call_sid, request.args.get(TOKEN_PARAMETER, "")):
            refuse("whisper without the token of its call")
        parent = request.values.get("ParentCallSid")
        if parent and parent != call_sid:
            refuse("whisper for a call that is not the leg's parent")
        record = rt.store.get(call_sid) or {}
        context = (record.get("ending") or {}).get("context") or {}
        flow = rt.call_flow(record)
        text = context.get("summary") or flow.msg("summary_no_intent")
        language = record.get("language") or flow.language
        return Response(twiml.whisper(text, language), mimetype=XML)

    @app.post("/twilio/dial-status")
    def dial_status() -> Any:
        """The agent leg ended (``<Dial action>``). Not answered, busy, failed or canceled: the caller is
        told and offered a call back or a text message (telephony/unreachable.py), never a dead end."""
        call_sid = request.form.get("CallSid", "")
        status = request.form.get("DialCallStatus", "")
        if status in ("completed", "answered", "") or not call_sid or _finished(rt, call_sid, "/twilio/dial-status"):
            return Response(twiml.hangup(), mimetype=XML)
        record = rt.store.get(call_sid) or {}
        why = status if status in unreachable.UNANSWERED else "failed"
        told = rt.call_flow(record).msg("unreachable")
        return Response(unreachable.offer(rt, public(), call_sid, record, why, told=told), mimetype=XML)

    @app.post(unreachable.PATH)
    def unreachable_choice() -> Any:
        """The caller's key after the offer (``<Gather action>``): 1 a call back, 2 a text message."""
        call_sid = request.form.get("CallSid", "")
        if not call_sid or _finished(rt, call_sid, unreachable.PATH):
            return Response(twiml.hangup(), mimetype=XML)
        why = request.args.get("why", "")
        why = why if why in (*unreachable.UNANSWERED, unreachable.AFTER_HOURS) else "failed"
        try:
            offered = int(request.args.get("offer", "1"))
        except ValueError:
            offered = unreachable.OFFERS
        digits = request.form.get("Digits", "")[:1]
        record = rt.store.get(call_sid) or {}
        return Response(unreachable.choose(rt, public(), call_sid, record, digits, why, offered), mimetype=XML)

    @app.post("/twilio/queue-wait")
    def queue_wait() -> Any:
        """``<Enqueue waitUrl>``: what a caller waiting in a Twilio queue hears, asked again each time it
        ends; after ``telephony.queue_max_wait_seconds`` the caller leaves the queue (``<Leave>``)."""
        call_sid = request.form.get("CallSid", "")
        record = (rt.store.get(call_sid) if call_sid else None) or {}
        flow = rt.call_flow(record)
        return Response(twiml.queue_wait(_seconds(request.form.get("QueueTime", "")) or 0,
                                         settings.telephony.queue_max_wait_seconds, flow.msg("transfer"),
                                         flow.language), mimetype=XML)

    @app.post("/twilio/queue-left")
    def queue_left() -> Any:
        """``<Enqueue action>``: the caller left the queue. Put through or hung up: nothing more. Left after
        the longest wait, a full queue or an error: told, and offered a call back or a text message."""
        call_sid = request.form.get("CallSid", "")
        result = request.form.get("QueueResult", "")
        if result in ("bridged", "bridging-in-process", "hangup") or not call_sid \
                or _finished(rt, call_sid, "/twilio/queue-left"):
            return Response(twiml.hangup(), mimetype=XML)
        record = rt.store.get(call_sid) or {}
        told = rt.call_flow(record).msg("unreachable")
        return Response(unreachable.offer(rt, public(), call_sid, record, "no-answer", told=told), mimetype=XML)

    @app.route("/twilio/queue-pickup", methods=["GET", "POST"])
    def queue_pickup() -> Any:
        """``<Dial><Queue url>`` of an agent's phone taking the next caller from a Twilio queue. Twilio runs
        this document on the dequeued *caller's* side just before the bridge (only Say/Play/Pause/Redirect),
        with the caller's CallSid and the agent's call as DequeingCallSid: the caller hears that they are
        put through, and the pairing is stored and announced for the agent's screen (docs/telephony.md)."""
        call_sid = request.values.get("CallSid", "")
        record = rt.store.get(call_sid) if call_sid else None
        if not record or (record.get("ending") or {}).get("action") != "transfer":
            return Response(twiml.empty(), mimetype=XML)
        flow = rt.call_flow(record)
        picked = {"call_id": call_sid, "agent_call": request.values.get("DequeingCallSid", "")[:64],
                  "queue": (record.get("ending") or {}).get("queue") or "",
                  "queue_seconds": _seconds(request.values.get("QueueTime", ""))}
        rt.store.update(call_sid, picked_up=picked)
        announce_pickup(rt.store.redis, picked)
        log.info("call %s: taken from queue %s by call %s", esc(call_sid), esc(picked["queue"]),
                 esc(picked["agent_call"]))
        return Response(twiml.say(flow.msg("transfer"), flow.language), mimetype=XML)

    @app.post("/twilio/status")
    def status() -> Any:
        call_sid = request.form.get("CallSid", "")
        if call_sid and not _finished(rt, call_sid, "/twilio/status"):
            _finalise(rt, call_sid, request.form.get("CallStatus", ""), request.form.get("CallDuration", ""))
        return Response(status=204)

    @app.post("/twilio/stream-status")
    def stream_status() -> Any:
        event, error = request.form.get("StreamEvent", ""), request.form.get("StreamError", "")
        level = logging.ERROR if event == "stream-error" else logging.INFO
        log.log(level, "call %s: %s %s", esc(request.form.get("CallSid")), esc(event, 32), esc(error, 200))
        return Response(status=204)

    sock = Sock(app)

    @sock.route("/twilio/media")
    def media(ws: Any) -> None:
        from simple_websocket import ConnectionClosed

        session = CallSession(rt, ws.send, ws.close)
        opened = last = time.monotonic()
        started = False
        try:
            while not session.closed:
                raw = ws.receive(timeout=POLL_SECONDS)
                now = time.monotonic()
                if raw is None:
                    why = ("no_start" if not started and now - opened > tel.start_timeout_seconds else
                           "silent" if now - last > tel.media_timeout_seconds else None)
                    if why:
                        rt.metrics.closed_sockets.labels(reason=why).inc()
                        log.warning("call %s: closing the media socket: %s", esc(session.call_sid),
                                    "no accepted start in time" if why == "no_start" else "no message in time")
                        ws.close(reason=1008, message=why)
                        break
                    continue
                last = now
                session.on_message(raw)
                if not started and session.started:
                    started = True
                    if g.pop("pending_socket", False):
                        rt.close_pending()
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("media stream failed")
        finally:
            session.on_socket_closed()         # releases the call's stream claim, if it had one

    return app


def _bearer_ok(token: str) -> bool:
    given = request.headers.get("Authorization", "")
    return given.startswith("Bearer ") and hmac.compare_digest(given[7:].strip().encode(), token.encode())


def _finished(rt: Runtime, call_sid: str, path: str) -> bool:
    """A webhook for a call that is over (a replay) changes nothing and renews no TTL."""
    record = rt.store.get(call_sid)
    if not (record and record.get("finished")):
        return False
    rt.metrics.replays.inc()
    log.warning("call %s: %s after the call finished; ignored", esc(call_sid), path)
    return True


def _seconds(value: str) -> int | None:
    try:
        return max(0, int(value))
    except ValueError:
        return None


def _over_capacity(rt: Runtime, tel: Any, public: str, call_sid: str, flow: Any, fields: dict[str, Any]) -> str:
    """No room for another stream: a short message and the agents' queue (the after-hours one when closed)."""
    transfer = flow.spec.transfer
    queue, say = transfer.queue, flow.msg("transfer")
    if flow.spec.hours and transfer.closed_queue:
        if not is_open(flow.spec.hours, dt.datetime.fromisoformat(rt.local_time(flow))):
            queue, say = transfer.closed_queue, transfer.closed_say or flow.msg("closed")
    queue = tel.agent_queue or queue
    rt.metrics.over_capacity.inc()
    log.warning("call %s: %d streams live (telephony.max_calls %d); the caller goes to queue %s", esc(call_sid),
                rt.live_streams(), tel.max_calls, esc(queue))
    # The caller has said nothing yet: there is no context for an agent, only where the call went.
    rt.store.update(call_sid, **fields, ending={"action": "transfer", "queue": queue, "reason": "capacity"})
    return twiml.transfer(public, call_sid, queue=queue, announce=say, language=flow.language)


def _signature_ok(settings: Settings) -> bool:
    from twilio.request_validator import RequestValidator

    tel = settings.telephony
    signature = request.headers.get("X-Twilio-Signature", "")
    if not (tel.auth_token and tel.public_url and signature):
        return False
    validator = RequestValidator(tel.auth_token)
    if request.path == "/twilio/media":
        return validator.validate(twiml.stream_url(tel.public_url), {}, signature)
    path = request.full_path if request.query_string else request.path
    params = request.form if request.method == "POST" else {}
    return validator.validate(tel.public_url + path, params, signature)


def _after_stream_twiml(rt: Runtime, tel: Any, public: str, call_sid: str, record: dict[str, Any]) -> str:
    """Transfer, hang up, or (no decision stored: the stream broke) hand the caller to a person."""
    engine = rt.engine_for(record.get("flow"), record.get("flow_version"))    # the version the call ran on
    flow = engine.flow
    ending = record.get("ending") or {}
    if ending.get("action") == "hangup":
        return twiml.hangup()
    if ending.get("action") != "transfer":
        log.error("call %s: the stream ended without a decision; handing the caller to a person", esc(call_sid))
        transfer, said = failure_transfer(engine, call_sid, record)
        ending = {"action": "transfer", "queue": transfer.queue, "reason": transfer.reason,
                  "context": transfer.context}
        rt.store.update(call_sid, ending=ending, announce=said)
        rt.enqueue_handoff(transfer.context)
        record = {**record, "announce": said}
    elif isinstance(ending.get("context"), dict):
        rt.ensure_handoff(ending["context"])   # lost on the way (Redis was away)? queued again, or kept
    if ending.get("reason") == "error":      # a broken stream's caller reaches a person: nothing to go on with
        forget_unfinished(rt.store.redis, flow, str(record.get("caller", "")), rt.settings.hash_salt)
    announce = record.get("announce")
    announce = announce if isinstance(announce, str) else flow.msg("transfer") if announce else ""
    queue = ending.get("queue") or flow.spec.transfer.queue
    after_hours = (ending.get("context") or {}).get("after_hours")
    if after_hours:                          # nobody takes calls now: a call back or a text message
        return unreachable.offer(rt, public, call_sid, record, unreachable.AFTER_HOURS, told=announce)
    return twiml.transfer(public, call_sid, number=tel.agent_number, sip=tel.agent_sip,
                          queue=tel.agent_queue or queue, announce=announce, language=flow.language,
                          token=rt.call_token(call_sid))


def _finalise(rt: Runtime, call_sid: str, status: str, duration: str) -> None:
    """The call is over: keep the record (transcript included) for its TTL, count where callers failed,
    and queue the job that writes its call record (the worker writes it; this process never does)."""
    record = rt.store.get(call_sid) or {}
    if status in ("completed", "busy", "failed", "no-answer", "canceled") and not record.get("finished"):
        state = record.get("state") or {}
        for failure in state.get("failures", []):
            rt.metrics.failures.labels(flow=record.get("flow", ""), step=str(failure.get("step")),
                                       kind=str(failure.get("kind"))).inc()
        rt.store.update(call_sid, status=status, duration=duration, finished=True)
        rt.store.forget_local(call_sid)
        _queue_record(rt, call_sid)
    else:
        rt.store.update(call_sid, status=status)


def _queue_record(rt: Runtime, call_sid: str) -> None:
    """A record job for the finished call; when Redis does not take it, the worker's sweep writes
    the call later (records/upkeep.py), so it is logged and counted, not retried here."""
    settings = rt.settings
    try:
        if rt.store.redis is None:
            raise redis.ConnectionError("no valid redis.url")
        enqueue_record(rt.store.redis, settings.records.queue, call_sid, keep_seconds=settings.call_ttl_seconds)
    except (redis.RedisError, OSError) as exc:
        rt.metrics.records_unqueued.inc()
        log.error("call %s: its call record job was not queued (%s); the worker's sweep looks for the call later",
                  esc(call_sid), exc)


class _Server(BaseApplication):
    """gunicorn driven from Python so `voicebot serve` needs no gunicorn command line or config file."""

    def __init__(self, app: Flask, options: dict[str, Any]):
        self._app = app
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)
        # gunicorn >= 25.1 opens a control socket at one fixed path in $HOME by default; nothing here
        # uses it, and a second server on the same machine (tests, a second checkout) would fight
        # over that path.
        if "control_socket_disable" in self.cfg.settings:
            self.cfg.set("control_socket_disable", True)

    def load(self) -> Flask:
        return self._app

    def run(self) -> None:
        """gunicorn's ``BaseApplication.run`` with the master below."""
        try:
            _FlowReloadingArbiter(self).run()
        except RuntimeError as exc:
            print(f"\nError: {exc}\n", file=sys.stderr)
            sys.exit(1)


class _FlowReloadingArbiter(Arbiter):
    """gunicorn's master, but SIGHUP reloads the flows instead of the workers.

    gunicorn answers SIGHUP by starting new workers and stopping the old ones gracefully, which
    would cut every call in progress after ``graceful_timeout`` and give the new workers the flows
    the master loaded at start. Here the master passes SIGHUP on to its worker, where the runtime
    loads the changed flow files in place (``Runtime.watch_flows``)."""

    def handle_hup(self) -> None:
        log.info("SIGHUP: the worker reloads changed flow files; calls in progress go on (a change to config.yaml "
                 "needs a restart)")
        for pid in list(self.WORKERS):
            self.kill_worker(pid, signal.SIGHUP)


class _Starting:
    """While the app is being built, every request on the port gets 503 "starting" (not a refused
    connection), so a load balancer, `make run`'s user and the tests can tell "busy starting" from "down"."""

    def __init__(self, host: str, port: int):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Starting(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                body = b'{"status": "unavailable", "ready": false, "problems": ["starting: loading the flows"]}\n'
                self.send_response(503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Retry-After", "5")
                self.send_header("Connection", "close")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_POST = do_HEAD = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self._server: Any = None
        try:
            self._server = ThreadingHTTPServer((host, port), Starting)
        except OSError:
            return              # the port is taken: gunicorn will say so
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="voicebot-starting", daemon=True).start()

    def __enter__(self) -> "_Starting":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def start_metrics_server(settings: Settings, runtime: Runtime) -> Any:
    """``web.metrics_port``: /metrics on the loopback address only, for a scraper on the same host
    (or behind its own tunnel); the public port then has no /metrics at all."""
    from prometheus_client import start_http_server

    if not settings.metrics_port:
        return None
    server = start_http_server(settings.metrics_port, addr="127.0.0.1", registry=runtime.metrics.registry)
    log.info("metrics on http://127.0.0.1:%d/metrics only", settings.metrics_port)
    return server


def _worker_started(settings: Settings, runtime: Runtime) -> None:
    """In the gunicorn worker, after the fork (threads do not survive one) and after gunicorn set
    its own signal handlers: start-up work, the flow watcher with SIGHUP, the metrics port."""
    runtime.prepare()
    runtime.watch_flows(sighup=True)
    try:
        start_metrics_server(settings, runtime)
    except OSError as exc:
        log.error("metrics port 127.0.0.1:%d cannot be opened (%s); metrics are not served", settings.metrics_port,
                  exc)


def thread_count(settings: Settings) -> int:
    """Every live stream, every starting socket and every desk's live-update stream holds a thread;
    webhooks keep threads of their own."""
    tel = settings.telephony
    return tel.max_calls + tel.max_pending_streams + settings.desk.max_event_streams + settings.webhook_threads


def serve(settings: Settings, port: int | None = None, announce: str = "") -> None:
    """Run the app under gunicorn until it is stopped.

    Threads rather than processes, because a live call holds its media websocket (flask-sock),
    and so one thread, for the whole call: ``thread_count`` sizes the pool so that
    ``telephony.max_calls`` calls, ``telephony.max_pending_streams`` starting sockets and
    ``web.webhook_threads`` webhooks fit at once. ``timeout`` 0 turns off gunicorn's worker
    timeout, which would otherwise kill the worker in the middle of long calls. The app is built
    here, before gunicorn starts, so a bad config stops `voicebot serve` with its own message
    instead of a worker boot loop. SIGHUP reloads changed flow files in the worker (the master
    passes it on) instead of gunicorn's restart of the worker, which would cut calls in progress.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if announce:
        log.info("%s", announce)
    port = port or settings.port
    log.info("loading and checking the flows (training their intent classifiers can take a while); "
             "/healthz answers 503 until calls can be taken")
    # Until gunicorn's master takes SIGHUP over (and passes it on to the worker), a SIGHUP must not
    # stop a server that is loading its flows: the worker's first check picks up any change.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    with _Starting(settings.host, port):
        app = create_app(settings)
    runtime = app.extensions["voicebot_runtime"]
    log.info("listening on %s:%d with %d threads (up to %d calls); /healthz says 200 once ready to take calls",
             settings.host, port, thread_count(settings), settings.telephony.max_calls)
    options = {
        "bind": f"{settings.host}:{port}",
        "worker_class": "gthread",
        "workers": 1,
        "threads": thread_count(settings),
        "timeout": 0,
        "accesslog": "-",
        # Models, recognisers and the synthesiser's thread are made in the worker, after the fork:
        # threads do not survive a fork.
        "post_worker_init": lambda worker: _worker_started(settings, runtime),
        "worker_exit": lambda server, worker: runtime.close(),
    }
    _Server(app, options).run()
