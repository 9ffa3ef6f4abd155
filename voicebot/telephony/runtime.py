"""What every call in a web process shares: flows and engines, speech models, prompt audio, the call
store, metrics, the handoff queue and text messages.

Built once when the app starts. The expensive parts are prepared in the background so the first
caller does not wait: each flow language's model is loaded and its recogniser pool warmed on the
flow's own prompts (a fresh Vosk recogniser decodes three times slower until its cache fills), and
the prompts are rendered into the cache. A language without a model is logged and the service
starts anyway: its calls go on by keypad and reach a person.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from zoneinfo import ZoneInfo

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from voicebot.config import Settings
from voicebot.dialog.engine import DialogEngine
from voicebot.errors import VoicebotError
from voicebot.flow import Flow, load_flows
from voicebot.speech.audio import ulaw_to_pcm
from voicebot.speech.prompts import PromptAudio, static_prompts
from voicebot.speech.recognizer import SpeechModels
from voicebot.telephony.metrics import Metrics
from voicebot.telephony.store import CallStore

log = logging.getLogger("voicebot.runtime")

WARM_RECOGNISERS = 4


class Runtime:
    def __init__(self, settings: Settings, flows: dict[str, Flow] | None = None,
                 models: SpeechModels | None = None):
        self.settings = settings
        self.flows = flows if flows is not None else load_flows(settings.flows_dir, settings.transfer_words)
        if not self.flows:
            raise VoicebotError(f"no flows in {settings.flows_dir}")
        self.engines = {fid: DialogEngine(flow, max_turns=settings.max_turns, hash_salt=settings.hash_salt)
                        for fid, flow in self.flows.items()}
        self.models = models or SpeechModels(settings.speech)
        self.prompts = PromptAudio(settings.prompts)
        self.store = CallStore(settings.redis_url, settings.call_ttl_seconds)
        self.metrics = Metrics()
        self._background = ThreadPoolExecutor(max_workers=2, thread_name_prefix="voicebot-bg")
        self._queue: Any = None
        self._sms_client: Any = None
        self.ready = threading.Event()

    # -- start-up ------------------------------------------------------------------------------

    def prepare(self, wait: bool = False) -> None:
        """Load models, warm recognisers and render prompts, in the background unless ``wait``."""
        future = self._background.submit(self._prepare)
        if wait:
            future.result()

    def _prepare(self) -> None:
        for language in sorted({f.language for f in self.flows.values()}):
            try:
                model = self.models.get(language)      # first: a caller may already be waiting for it
            except VoicebotError as exc:
                model = None
                log.error("%s; calls in '%s' will use the keypad and reach a person", exc, language)
            speech = b""
            for flow in (f for f in self.flows.values() if f.language == language):
                for text, prompt_id in static_prompts(flow):
                    try:
                        audio = self.prompts.audio_for(text, language, prompt_id)
                    except Exception as exc:
                        log.error("prompt audio for flow %s cannot be made: %s", flow.id, exc)
                        break
                    if len(speech) < 8000 * 20:
                        speech += audio
            if model is not None:
                model.warm(WARM_RECOGNISERS, ulaw_to_pcm(speech))
                log.info("speech model for '%s' ready at %s", language, model.path)
        self.ready.set()

    # -- per call ------------------------------------------------------------------------------

    def flow(self, flow_id: str | None) -> Flow:
        """The flow a call asked for (webhook ``?flow=``), else the configured default, else any."""
        if flow_id and flow_id in self.flows:
            return self.flows[flow_id]
        if flow_id:
            log.warning("unknown flow '%s' requested; using the default", flow_id)
        return self.flows.get(self.settings.default_flow) or next(iter(self.flows.values()))

    def local_time(self, flow: Flow) -> str:
        """Now in the flow's time zone, for business hours."""
        zone = ZoneInfo(flow.spec.hours.timezone) if flow.spec.hours else None
        return dt.datetime.now(zone).replace(tzinfo=None, microsecond=0).isoformat()

    def enqueue_handoff(self, context: dict[str, Any]) -> None:
        """Push the agent's context through RQ; a dead Redis is logged, the transfer goes on."""
        self._background.submit(self._enqueue, context)

    def _enqueue(self, context: dict[str, Any]) -> None:
        from rq import Queue

        try:
            if self._queue is None:
                connection = redis.Redis.from_url(self.settings.redis_url, socket_timeout=1.0,
                                                  socket_connect_timeout=1.0, retry=Retry(NoBackoff(), 0))
                self._queue = Queue(self.settings.handoff_queue, connection=connection)
            # A short description: RQ logs it, and the context (full postcode, transcript) must not be logged.
            self._queue.enqueue("voicebot.handoff.jobs.deliver", context, job_id=f"handoff-{context['call_id']}",
                                description=f"handoff of call {context['call_id']} to {context.get('queue')}")
        except (redis.RedisError, OSError, ValueError) as exc:
            log.error("call %s: handoff context not queued (%s); the transfer goes on, the agent gets the whisper",
                      context.get("call_id"), exc)

    def send_sms(self, info: Any, action: Any) -> None:
        self._background.submit(self._send_sms, info, action)

    def _send_sms(self, info: Any, action: Any) -> None:
        tel = self.settings.telephony
        if not (tel.account_sid and tel.auth_token):
            log.warning("call %s: text message not sent: TWILIO_ACCOUNT_SID/TWILIO_AUTH_TOKEN not set", info.call_sid)
            return
        try:
            if self._sms_client is None:
                from twilio.rest import Client

                client = Client(tel.account_sid, tel.auth_token)
                if tel.api_base:
                    client.api.base_url = tel.api_base
                self._sms_client = client
            self._sms_client.messages.create(to=action.to, from_=tel.caller_id or info.called, body=action.text)
            log.info("call %s: summary sent by text message", info.call_sid)
        except Exception as exc:  # twilio raises its own and requests' errors
            log.error("call %s: text message failed: %s", info.call_sid, exc)
