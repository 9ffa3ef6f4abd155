"""The HTTP side of voicebot: Twilio's webhooks, the Media Stream socket, health and metrics.

Redis is optional on this path: a call must still be answered when Redis is down (only warm
transfer and cross-process call state need it), so nothing here connects to Redis at import or at
start-up, and /healthz reports Redis instead of failing on it.

Every request under /twilio/, the WebSocket handshake included, must carry a valid
X-Twilio-Signature for the PUBLIC address Twilio called (``telephony.public_url`` / PUBLIC_URL),
never the address Flask sees behind a proxy or tunnel. A bad or missing signature gets 403 and a
log line. ``telephony.verify_signatures: false`` turns this off for local development, with a
warning at start-up and on every request.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import Flask, Response, abort, jsonify, request
from flask_sock import Sock
from gunicorn.app.base import BaseApplication
from redis.backoff import NoBackoff
from redis.retry import Retry

from voicebot import __version__
from voicebot.config import Settings, load_settings
from voicebot.telephony import twiml
from voicebot.telephony.runtime import Runtime
from voicebot.telephony.session import CallSession

log = logging.getLogger("voicebot.web")
XML = "text/xml"

# A health check that hangs is worse than one that says "down": load balancers and the telephony
# provider's webhooks time out long before a default Redis socket timeout would.
REDIS_PING_TIMEOUT = 0.5


def _redis_client(url: str) -> redis.Redis | None:
    """One client per app so the connection pool is shared by the 32 gunicorn threads.

    A malformed URL gives None (reported as "down") rather than an app that will not start,
    because calls do not need Redis.
    """
    try:
        return redis.Redis.from_url(
            url,
            socket_timeout=REDIS_PING_TIMEOUT,
            socket_connect_timeout=REDIS_PING_TIMEOUT,
            # No retries: redis-py's defaults may retry with back-off, which would turn a 0.5 s
            # probe into several seconds.
            retry=Retry(NoBackoff(), 0),
        )
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
    app.config["SOCK_SERVER_OPTIONS"] = {"ping_interval": None, "max_message_size": 256 * 1024}
    health_redis = _redis_client(settings.redis_url)
    rt = runtime or Runtime(settings)
    app.extensions["voicebot_runtime"] = rt
    tel = settings.telephony
    if not tel.verify_signatures:
        log.warning("Twilio signature checking is OFF (telephony.verify_signatures): anyone can post calls. "
                    "Local development only.")
    elif not (tel.auth_token and tel.public_url):
        log.error("TWILIO_AUTH_TOKEN and PUBLIC_URL (telephony.public_url) must be set: every Twilio request "
                  "is refused until they are")

    @app.get("/healthz")
    def healthz() -> Any:
        # Always 200: the process can take calls without Redis, so an orchestrator must not
        # restart it for a Redis outage; the "redis" field tells monitoring what is degraded.
        return jsonify(status="ok", version=__version__, redis=_redis_status(health_redis))

    @app.get("/metrics")
    def metrics() -> Any:
        return Response(rt.metrics.render(), mimetype="text/plain; version=0.0.4")

    @app.before_request
    def check_signature() -> Any:
        if not request.path.startswith("/twilio/"):
            return None
        if not tel.verify_signatures:
            log.warning("unsigned request accepted for %s (signature checking is off)", request.path)
            return None
        if _signature_ok(settings):
            return None
        rt.metrics.refused.inc()
        log.warning("refused %s %s: bad or missing X-Twilio-Signature (CallSid %s)", request.method, request.path,
                    request.values.get("CallSid", "-"))
        abort(403)

    def public() -> str:
        return tel.public_url or request.host_url.rstrip("/")

    @app.post("/twilio/voice")
    def voice() -> Any:
        call_sid = request.form.get("CallSid", "")
        if not call_sid:
            return Response("a Twilio voice webhook needs CallSid\n", status=400, mimetype="text/plain")
        flow = rt.flow(request.args.get("flow"))
        rt.metrics.calls.inc()
        rt.store.update(call_sid, caller=request.form.get("From", ""), called=request.form.get("To", ""),
                        flow=flow.id, language=flow.language, status=request.form.get("CallStatus", ""))
        params = {"from": request.form.get("From", ""), "to": request.form.get("To", ""), "flow": flow.id}
        return Response(twiml.connect_stream(public(), params), mimetype=XML)

    @app.post("/twilio/after-stream")
    def after_stream() -> Any:
        call_sid = request.form.get("CallSid", "")
        record = rt.store.get(call_sid) or {} if call_sid else {}
        return Response(_after_stream_twiml(rt, tel, public(), call_sid, record), mimetype=XML)

    @app.route("/twilio/whisper", methods=["GET", "POST"])
    def whisper() -> Any:
        call_sid = request.args.get("call", "")
        record = rt.store.get(call_sid) or {} if call_sid else {}
        context = (record.get("ending") or {}).get("context") or {}
        flow = rt.flow(record.get("flow"))
        text = context.get("summary") or flow.msg("summary_no_intent")
        language = record.get("language") or flow.language
        return Response(twiml.whisper(text, language), mimetype=XML)

    @app.post("/twilio/dial-status")
    def dial_status() -> Any:
        """The agent leg ended. Not answered, busy or failed: the caller waits in the queue, never a dead end."""
        call_sid = request.form.get("CallSid", "")
        status = request.form.get("DialCallStatus", "")
        if status in ("completed", "answered", ""):
            return Response(twiml.hangup(), mimetype=XML)
        record = rt.store.get(call_sid) or {}
        flow = rt.flow(record.get("flow"))
        queue = (record.get("ending") or {}).get("queue") or flow.spec.transfer.queue
        log.warning("call %s: agent leg %s; caller goes to queue %s", call_sid, status, queue)
        return Response(twiml.transfer(public(), call_sid, queue=tel.agent_queue or queue,
                                       announce=flow.msg("closed"), language=flow.language), mimetype=XML)

    @app.post("/twilio/status")
    def status() -> Any:
        call_sid = request.form.get("CallSid", "")
        if call_sid:
            _finalise(rt, call_sid, request.form.get("CallStatus", ""), request.form.get("CallDuration", ""))
        return Response(status=204)

    @app.post("/twilio/stream-status")
    def stream_status() -> Any:
        event, error = request.form.get("StreamEvent", ""), request.form.get("StreamError", "")
        level = logging.ERROR if event == "stream-error" else logging.INFO
        log.log(level, "call %s: %s %s", request.form.get("CallSid", "-"), event, error)
        return Response(status=204)

    sock = Sock(app)

    @sock.route("/twilio/media")
    def media(ws: Any) -> None:
        from simple_websocket import ConnectionClosed

        session = CallSession(rt, ws.send, ws.close)
        try:
            while not session.closed:
                raw = ws.receive(timeout=1.0)
                if raw is not None:
                    session.on_message(raw)
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("media stream failed")
        finally:
            session.on_socket_closed()

    return app


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
    flow = rt.flow(record.get("flow"))
    ending = record.get("ending") or {}
    if ending.get("action") == "hangup":
        return twiml.hangup()
    if ending.get("action") != "transfer":
        log.error("call %s: the stream ended without a decision; handing the caller to a person", call_sid or "-")
        rt.store.update(call_sid, ending={"action": "transfer", "queue": flow.spec.transfer.queue, "reason": "error",
                                          "context": {"call_id": call_sid, "reason": "error",
                                                      "summary": flow.msg("summary_reason",
                                                                          reason=flow.msg("reason_error"))}})
        record = {**record, "announce": True}
        ending = {"queue": flow.spec.transfer.queue}
    announce = flow.msg("transfer") if record.get("announce") else ""
    queue = ending.get("queue") or flow.spec.transfer.queue
    after_hours = (ending.get("context") or {}).get("after_hours")
    number, sip = ("", "") if after_hours else (tel.agent_number, tel.agent_sip)
    return twiml.transfer(public, call_sid, number=number, sip=sip, queue=tel.agent_queue or queue,
                          announce=announce, language=flow.language)


def _finalise(rt: Runtime, call_sid: str, status: str, duration: str) -> None:
    """The call is over: keep the record (transcript included) for its TTL and count where callers failed."""
    record = rt.store.get(call_sid) or {}
    if status in ("completed", "busy", "failed", "no-answer", "canceled") and not record.get("finished"):
        state = record.get("state") or {}
        for failure in state.get("failures", []):
            rt.metrics.failures.labels(flow=record.get("flow", ""), step=str(failure.get("step")),
                                       kind=str(failure.get("kind"))).inc()
        rt.store.update(call_sid, status=status, duration=duration, finished=True)
        rt.store.forget_local(call_sid)
    else:
        rt.store.update(call_sid, status=status)


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


def serve(settings: Settings, port: int | None = None) -> None:
    """Run the app under gunicorn until it is stopped.

    Threads rather than processes, because a live call holds its media websocket (flask-sock),
    and so one thread, for the whole call: 32 threads is 32 concurrent calls. ``timeout`` 0 turns
    off gunicorn's worker timeout, which would otherwise kill the worker in the middle of long
    calls. The app is built here, before gunicorn starts, so a bad
    config stops `voicebot serve` with its own message instead of a worker boot loop.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    runtime = app.extensions["voicebot_runtime"]
    options = {
        "bind": f"{settings.host}:{port or settings.port}",
        "worker_class": "gthread",
        "workers": 1,
        "threads": 32,
        "timeout": 0,
        "accesslog": "-",
        # Models, recognisers and the synthesiser's thread are made in the worker, after the fork:
        # threads do not survive a fork.
        "post_worker_init": lambda worker: runtime.prepare(),
    }
    _Server(app, options).run()
