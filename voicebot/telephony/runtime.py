"""What every call in a web process shares: flows and engines, speech models, prompt audio, the call
store, metrics, the handoff queue, text messages and the identity checks.

Built once when the app starts. The expensive parts are prepared in the background so the first
caller does not wait: each flow language's model is loaded and its recogniser pool warmed on the
flow's own prompts (a fresh Vosk recogniser decodes three times slower until its cache fills), and
the prompts are rendered into the cache. A language without a model is logged and the service
starts anyway: its calls go on by keypad and reach a person. ``ready`` is set (and one log line
says so) when that work is done: /healthz answers 503 until then.

The runtime also admits media streams (``admit_stream``: the call's token, its account, one live
stream per call, at most ``telephony.max_calls`` live streams) and counts sockets that have not
sent ``start`` yet, so that neither forged nor idle sockets can take a call or the server's threads.
Handoff jobs and text messages run on executors of their own, never behind the start-up work.
A handoff context Redis does not take goes to the outbox (voicebot/handoff/outbox.py), drained by
a thread of this process while it holds something, and by `voicebot worker`; ``close`` stops it.

Identity checks (``identity``) use the configured customer directory, opened only when a flow has
a verify step, and lockout counters in Redis through the store's client: when Redis does not
answer, a check fails closed (``unavailable``) and the caller goes to a person, unverified.

The flows change while it runs (``reload_flows``, asked by the watcher, SIGHUP or `voicebot flows
reload`: telephony/flow_reload.py): a changed file is validated and its prompts rendered before
new calls get it; a call keeps the engine it started with, and ``engine_for`` finds the version a
call recorded for whatever looks its flow up after the stream.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from zoneinfo import ZoneInfo

import redis
from rq.job import Job

from voicebot.config import Settings
from voicebot.dialog.engine import DialogEngine
from voicebot.errors import VoicebotError
from voicebot.flow import Flow, load_flows
from voicebot.handoff.jobs import CONTEXT_KEY
from voicebot.handoff.outbox import Drainer, Outbox, enqueue_or_known
from voicebot.handoff.queueing import job_id
from voicebot.identity import Directory
from voicebot.identity.service import IdentityService, uses_verification
from voicebot.redis_clients import redis_client
from voicebot.speech.audio import ulaw_to_pcm
from voicebot.dialog.sentences import static_sentences
from voicebot.speech.prompts import PromptAudio
from voicebot.speech.recognizer import SpeechModels
from voicebot.telephony.flow_reload import EngineVersions, FlowFiles, Reloader, ReloadResult
from voicebot.telephony.logsafe import esc
from voicebot.telephony.metrics import Metrics
from voicebot.telephony.sms import SmsSender
from voicebot.telephony.store import CallStore
from voicebot.telephony.stream_auth import TOKEN_PARAMETER, StreamClaims, stream_secret, stream_token, token_ok

log = logging.getLogger("voicebot.runtime")

WARM_RECOGNISERS = 4
WARM_AUDIO_BYTES = 8000 * 20
"""Up to 20 s of a language's prompts warm its recognisers."""


class Runtime:
    def __init__(self, settings: Settings, flows: dict[str, Flow] | None = None,
                 models: SpeechModels | None = None, directory: Directory | None = None):
        """``directory``: the customer directory to check identities against (tests); default: the
        one ``identity:`` in config.yaml names, opened when a flow has a verify step."""
        self.settings = settings
        self.flows = flows if flows is not None else load_flows(settings.flows_dir, settings.transfer_words)
        if not self.flows:
            raise VoicebotError(f"no flows in {settings.flows_dir}")
        self.versions = EngineVersions()
        self.engines = {fid: self._engine(flow) for fid, flow in self.flows.items()}
        self._files = FlowFiles(settings.flows_dir, settings.transfer_words, self.flows)
        self._reload_lock = threading.Lock()
        self.reloader: Reloader | None = None
        self.models = models or SpeechModels(settings.speech, pool_size=settings.telephony.max_calls)
        self.prompts = PromptAudio(settings.prompts)
        self.store = CallStore(settings.redis_url, settings.call_ttl_seconds)
        self.metrics = Metrics(shared=self.store.redis)
        self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="voicebot-startup")
        self._handoff = ThreadPoolExecutor(max_workers=2, thread_name_prefix="voicebot-handoff")
        self._queue_connection: Any = None
        self.outbox = Outbox(settings.outbox_path, settings.call_ttl_seconds, settings.outbox_max_entries,
                             on_event=lambda event, n: self.metrics.outbox.labels(event=event).inc(n))
        self._drainer = Drainer(self.outbox, self._enqueue_now)
        self.sms = SmsSender(settings, self.metrics, self.store.redis)
        self.ready = threading.Event()
        tel = settings.telephony
        self.secret = stream_secret(tel.stream_secret, tel.auth_token)
        self.claims = StreamClaims(self.store.redis)
        self._pending = 0
        self._pending_lock = threading.Lock()
        self.identity = self._identity_service(directory)
        self._shown_versions: set[tuple[str, str]] = set()
        self._show_versions()

    def _identity_service(self, directory: Directory | None) -> IdentityService | None:
        """None when no flow verifies anyone (then every check, if one came, is ``unavailable``)."""
        if directory is None:
            if not uses_verification(self.flows.values()):
                return None
            from voicebot.identity.directory import open_directory   # only a flow that verifies needs it

            directory = open_directory(self.settings.identity)
        section = self.settings.identity
        return IdentityService(directory, self.store.redis, self.settings.hash_salt, section.lockout_attempts,
                               section.lockout_minutes, metrics=self.metrics)

    # -- start-up ------------------------------------------------------------------------------

    def prepare(self, wait: bool = False) -> None:
        """Load models, warm recognisers and render prompts, in the background unless ``wait``."""
        future = self._background.submit(self._prepare)
        if wait:
            future.result()

    def _prepare(self) -> None:
        speech_for, keypad_for = [], []
        try:
            for language in sorted({f.language for f in self.flows.values()}):
                (speech_for if self._prepare_language(language) else keypad_for).append(language)
        except Exception:   # never leave /healthz at 503 for ever: calls still reach a person
            log.exception("start-up work failed; taking calls anyway")
        self._drain_leftovers()
        self.ready.set()
        log.info("ready to take calls: %d flow(s); speech recognition for %s; keypad only for %s; prompts rendered",
                 len(self.flows), ", ".join(speech_for) or "no language", ", ".join(keypad_for) or "no language")

    def _drain_leftovers(self) -> None:
        """Contexts an earlier run (or another process) left in the outbox: queue them when Redis answers."""
        try:
            waiting = self.outbox.pending()
        except (sqlite3.Error, OSError) as exc:
            log.error("handoff outbox %s cannot be read: %s", self.outbox.path, exc)
            return
        if waiting:
            log.warning("%d handoff context(s) wait in the outbox %s; queued when Redis answers", waiting,
                        self.outbox.path)
            self._drainer.kick()

    def close(self) -> None:
        """Stop checking the flow files, finish the handoffs under way (each ends queued or in the
        outbox), then stop the outbox's drain thread: what the outbox holds stays for the worker or
        the next start."""
        if self.reloader is not None:
            self.reloader.stop()
        self._handoff.shutdown(wait=True)
        self._drainer.stop()

    def _prepare_language(self, language: str, flows: list[Flow] | None = None) -> bool:
        """Load the language's model and render its flows' prompts; False when it has no model."""
        try:
            model = self.models.get(language)      # first: a caller may already be waiting for it
        except VoicebotError as exc:
            model = None
            log.warning("%s; calls in '%s' will use the keypad and reach a person", exc, language)
        speech = b""
        for flow in flows if flows is not None else [f for f in self.flows.values() if f.language == language]:
            speech += self._render_prompts(flow, WARM_AUDIO_BYTES - len(speech))
        if model is not None:
            model.warm(WARM_RECOGNISERS, ulaw_to_pcm(speech))
            log.info("speech model for '%s' ready at %s", language, model.path)
        return model is not None

    def _render_prompts(self, flow: Flow, room: int = 0) -> bytes:
        """Every prompt the flow can say without a caller's value, into the cache; the first ``room``
        bytes or so of that audio are returned (to warm recognisers on)."""
        speech = b""
        for text, prompt_id in static_sentences(flow):
            try:
                audio = self.prompts.audio_for(text, flow.language, prompt_id)
            except Exception as exc:
                log.error("prompt audio for flow %s cannot be made: %s", flow.id, exc)
                break
            if len(speech) < room:
                speech += audio
        return speech

    # -- flows that change while running --------------------------------------------------------

    def _engine(self, flow: Flow) -> DialogEngine:
        engine = DialogEngine(flow, max_turns=self.settings.max_turns, hash_salt=self.settings.hash_salt)
        self.versions.add(engine)
        return engine

    def watch_flows(self, *, sighup: bool = False) -> Reloader:
        """Start checking the flow files: every ``flows.watch_seconds`` (0: never by itself), when
        `voicebot flows reload` asks on Redis, and (``sighup``; call from the main thread) on SIGHUP.
        The first check, once start-up work is done, picks up what changed since the flows loaded."""
        settings = self.settings
        self.reloader = Reloader(lambda trigger, force, settle: self.reload_flows(trigger, force=force, settle=settle),
                                 watch_seconds=settings.flows_watch_seconds, redis_url=settings.redis_url,
                                 ready=self.ready)
        if sighup:
            self.reloader.install_sighup()
        self.reloader.start()
        return self.reloader

    def reload_flows(self, trigger: str = "request", *, force: bool = True, settle: bool = False) -> ReloadResult:
        """Serve the flow files' valid new versions to new calls; a broken file keeps its running
        version and every problem is logged as ``file:line: message``. Calls in progress keep the
        engine they have. ``force``: read every file, not only those whose size or time changed."""
        with self._reload_lock:
            flows, result = self._files.check(self.flows, trigger, force=force, settle=settle)
            for problem in result.problems:
                log.error("%s", problem)
            if result.changed:
                fresh = [flows[fid] for fid in result.loaded]
                self._prepare_flows(fresh)           # prompts rendered before any caller hears them
                engines = dict(self.engines)
                for flow in fresh:
                    if flow.id in engines:
                        self.versions.retire(engines[flow.id])
                    engines[flow.id] = self._engine(flow)
                self.engines = engines               # first: every flow a call may be given has its engine
                self.flows = flows
                if self.identity is None and uses_verification(flows.values()):
                    self._open_identity()
                self._show_versions()
            for flow_id in result.loaded:
                self.metrics.flow_reloads.labels(result="loaded").inc()
            for _path in result.kept:
                self.metrics.flow_reloads.labels(result="rejected").inc()
            for flow_id in result.orphaned:
                log.warning("no flow file defines %s any more; it is still served (to the calls whose webhook "
                            "names it) until the next restart", flow_id)
            if result.kept:
                log.error("flow reload (%s): %s", trigger, result.summary())
            elif result.changed or force:
                log.info("flow reload (%s): %s; new calls get %s", trigger, result.summary(),
                         ", ".join(f"{fid} {version}" for fid, version in result.serving.items()))
            return result

    def _prepare_flows(self, flows: list[Flow]) -> None:
        """A language new to this process loads its model; every flow's prompts are rendered."""
        prepared = {f.language for f in self.flows.values()}
        for flow in flows:
            if flow.language in prepared:
                self._render_prompts(flow)
            else:
                self._prepare_language(flow.language, [flow])
                prepared.add(flow.language)

    def _open_identity(self) -> None:
        """A reloaded flow verifies callers and nothing opened the directory yet: open it now; when it
        cannot be, that flow's checks answer ``unavailable`` and its callers reach a person."""
        try:
            self.identity = self._identity_service(None)
        except Exception as exc:
            log.error("a reloaded flow verifies callers, but the customer directory cannot be opened (%s); its "
                      "callers reach a person unverified", exc)

    def _show_versions(self) -> None:
        """``voicebot_flow_version_info``: one series per flow, for the version new calls get."""
        gauge = self.metrics.flow_version
        now = {(fid, flow.version) for fid, flow in self.flows.items()}
        for labels in self._shown_versions - now:
            gauge.remove(*labels)
        for fid, version in now:
            gauge.labels(flow=fid, version=version).set(1)
        self._shown_versions = now

    # -- per call ------------------------------------------------------------------------------

    def flow(self, flow_id: str | None) -> Flow:
        """The flow a call asked for (webhook ``?flow=``), else the configured default, else any."""
        if flow_id and flow_id in self.flows:
            return self.flows[flow_id]
        if flow_id:
            log.warning("unknown flow %s requested; using the default", esc(flow_id))
        return self.flows.get(self.settings.default_flow) or next(iter(self.flows.values()))

    def engine_for(self, flow_id: str | None, version: str | None = None) -> DialogEngine:
        """The engine of ``flow_id`` (as ``flow`` finds it) at ``version`` while that version is still
        kept (a call that started before a reload), else the one new calls get."""
        flow = self.flow(flow_id)
        engine = self.engines[flow.id]
        if isinstance(version, str) and version and version != flow.version:
            engine = self.versions.get(flow.id, version) or engine
        return engine

    def call_flow(self, record: dict[str, Any]) -> Flow:
        """The flow, at the version it ran on, of a call's stored record (``flow``, ``flow_version``)."""
        return self.engine_for(record.get("flow"), record.get("flow_version")).flow

    def local_time(self, flow: Flow) -> str:
        """Now in the flow's time zone, for business hours."""
        zone = ZoneInfo(flow.spec.hours.timezone) if flow.spec.hours else None
        return dt.datetime.now(zone).replace(tzinfo=None, microsecond=0).isoformat()

    # -- media streams: who may stream, and how many ---------------------------------------------

    def call_token(self, call_sid: str) -> str:
        """The token ``/twilio/voice`` gives a call (as ``<Parameter name="token">`` and on the whisper URL)."""
        return stream_token(self.secret, call_sid)

    def token_ok(self, call_sid: str, token: Any) -> bool:
        return token_ok(self.secret, call_sid, token)

    def admit_stream(self, start: Any) -> str | None:
        """None: the stream may serve its call (and now holds the call's live-stream claim).

        Else the kind of refusal, already logged and counted: ``bad_token`` (the token is not the
        one of this callSid), ``wrong_account`` (not TWILIO_ACCOUNT_SID), ``full``
        (``telephony.max_calls`` live streams in this process) or ``already_live`` (the call has a
        live stream here or on another node). Nothing is stored for a refused stream.

        Without a secret (no TWILIO_AUTH_TOKEN and no VOICEBOT_STREAM_SECRET) no token can prove
        a call, so every stream is refused (``bad_token``): failing closed, whatever let the
        handshake through.
        """
        tel = self.settings.telephony
        params = getattr(start, "parameters", None) or {}
        kind = None
        if not (self.secret and self.token_ok(start.call_sid, params.get(TOKEN_PARAMETER))):
            kind = "bad_token"
        elif tel.account_sid and start.account_sid != tel.account_sid:
            kind = "wrong_account"
        elif self.claims.live() >= tel.max_calls:
            kind = "full"
        elif not self.claims.claim(start.call_sid):
            kind = "already_live"
        if kind is None:
            return None
        self.metrics.refused_streams.labels(kind=kind).inc()
        log.warning("refused stream %s for call %s (account %s): %s", esc(start.stream_sid), esc(start.call_sid),
                    esc(start.account_sid), kind)
        return kind

    def release_stream(self, call_sid: str) -> None:
        """The call's stream has ended: another may take it (a reconnect). Safe to call twice."""
        self.claims.release(call_sid)

    def live_streams(self) -> int:
        return self.claims.live()

    def at_capacity(self) -> bool:
        """A new call now would find no room for its stream (live streams plus sockets starting)."""
        with self._pending_lock:
            pending = self._pending
        return self.claims.live() + pending >= self.settings.telephony.max_calls

    def open_pending(self) -> bool:
        """A socket is being opened: False when ``telephony.max_pending_streams`` have not started yet."""
        with self._pending_lock:
            if self._pending >= self.settings.telephony.max_pending_streams:
                return False
            self._pending += 1
            return True

    def close_pending(self) -> None:
        """That socket sent an accepted start, or is gone."""
        with self._pending_lock:
            self._pending = max(0, self._pending - 1)

    # -- after a call --------------------------------------------------------------------------

    def enqueue_handoff(self, context: dict[str, Any]) -> None:
        """Push the agent's context through RQ, or into the outbox when Redis does not take it; the
        transfer goes on either way."""
        self._handoff.submit(self._enqueue, context)

    def ensure_handoff(self, context: dict[str, Any]) -> None:
        """The call is being transferred: queue its context again unless Redis holds it already
        (delivered under ``voicebot:handoff:<call id>``, or its job exists)."""
        if context.get("call_id"):
            self._handoff.submit(self._ensure, context)

    def _connection(self) -> Any:
        if self._queue_connection is None:
            self._queue_connection = redis_client(self.settings.redis_url, "enqueue")
        return self._queue_connection

    def _enqueue_now(self, context: dict[str, Any]) -> None:
        enqueue_or_known(self._connection(), self.settings.handoff_queue, context,
                         keep_seconds=self.settings.call_ttl_seconds)

    def _enqueue(self, context: dict[str, Any]) -> None:
        call_id = str(context.get("call_id"))
        try:
            self._enqueue_now(context)
        except (redis.RedisError, OSError, ValueError) as exc:
            if self.outbox.put(context):
                log.error("call %s: handoff context not queued (%s); kept in the outbox until Redis answers, "
                          "the transfer goes on", call_id, exc)
                self._drainer.kick()
            else:
                log.error("call %s: handoff context not queued (%s) nor kept: the agent gets the whisper only",
                          call_id, exc)
            return
        self.outbox.forget(call_id)

    def _ensure(self, context: dict[str, Any]) -> None:
        call_id = str(context["call_id"])
        try:
            connection = self._connection()
            if connection.exists(CONTEXT_KEY.format(call_id=call_id)) or Job.exists(job_id(call_id), connection):
                return
            log.warning("call %s: Redis has neither the handoff context nor its job; queueing it again", call_id)
        except (redis.RedisError, OSError, ValueError):
            pass                 # Redis is away: the enqueue below keeps the context in the outbox
        self._enqueue(context)

    def send_sms(self, call_sid: str, sender: str, action: Any) -> None:
        """Text the caller from ``sender`` (allowed countries, a few per number per day; see telephony/sms.py)."""
        self.sms.submit(call_sid, sender, action)
