"""Text messages to the caller, which cannot be turned into a way to spam or to spend our money.

The caller's number can be spoofed, so a message goes out only:

- to a number of an allowed country (``telephony.sms_countries``, by dialling prefix), and
- at most ``telephony.sms_per_number_per_day`` times per number per day (a Redis counter shared by
  every node, with a per-process counter when Redis does not answer).

A refused message is logged with the number masked and counted by reason
(``voicebot_sms_refused_total``). The Twilio REST client has a timeout, and sending runs on an
executor of its own: a slow Twilio never holds a call's thread or the start-up work.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis

from voicebot.config import COUNTRY_PREFIXES
from voicebot.telephony.logsafe import esc, mask_number

log = logging.getLogger("voicebot.sms")

E164 = re.compile(r"\+[1-9][0-9]{6,14}")
COUNTER_PREFIX = "voicebot:sms:"


def country_problem(number: str, countries: list[str] | tuple[str, ...]) -> str | None:
    """None when ``number`` is an E.164 number of an allowed country, else a short reason."""
    if not isinstance(number, str) or not E164.fullmatch(number):
        return "not_e164"
    if not any(number.startswith(COUNTRY_PREFIXES[c]) for c in countries if c in COUNTRY_PREFIXES):
        return "country"
    return None


class DailyLimit:
    """At most ``limit`` messages per number per (UTC) day.

    Numbers are counted under an HMAC of the number keyed with ``salt`` (``VOICEBOT_HASH_SALT``):
    a plain hash of a phone number is undone by hashing every number there is.
    """

    def __init__(self, client: redis.Redis | None, limit: int, salt: str = ""):
        self._redis = client
        self.limit = limit
        self._salt = salt.encode()
        self._memory: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._down_until = 0.0

    def take(self, number: str) -> bool:
        """Count one message for ``number``; False (nothing counted) if the day's limit is reached."""
        day = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d")
        key = hmac.new(self._salt, number.encode(), hashlib.sha256).hexdigest()[:32]   # no number in Redis keys
        if self._redis is not None and time.monotonic() >= self._down_until:
            try:
                name = f"{COUNTER_PREFIX}{day}:{key}"
                pipe = self._redis.pipeline()
                pipe.incr(name)
                pipe.expire(name, 2 * 86400)
                count = int(pipe.execute()[0])
                return count <= self.limit
            except (redis.RedisError, OSError) as exc:
                self._down_until = time.monotonic() + 5.0
                log.warning("Redis text-message counter failed (%s); counting in this process", exc)
        with self._lock:
            for old in [k for k in self._memory if k[0] != day]:
                del self._memory[old]
            count = self._memory.get((day, key), 0) + 1
            self._memory[(day, key)] = count
        return count <= self.limit


class SmsSender:
    """Sends a call's text messages after the checks, on its own small executor."""

    def __init__(self, settings: Any, metrics: Any, client: redis.Redis | None):
        self.settings = settings
        self.metrics = metrics
        tel = settings.telephony
        self.countries = tuple(tel.sms_countries)
        self.limit = DailyLimit(client, tel.sms_per_number_per_day, settings.hash_salt)
        self._client: Any = None
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="voicebot-sms")

    def submit(self, call_sid: str, sender: str, action: Any) -> None:
        self._pool.submit(self.send, call_sid, sender, action)

    def refused(self, call_sid: str, number: str, reason: str) -> None:
        self.metrics.sms_refused.labels(reason=reason).inc()
        log.warning("call %s: text message to %s not sent (%s)", esc(call_sid), esc(mask_number(str(number))), reason)

    def send(self, call_sid: str, sender: str, action: Any) -> bool:
        tel = self.settings.telephony
        problem = country_problem(action.to, self.countries)
        if problem:
            self.refused(call_sid, action.to, problem)
            return False
        if not (tel.account_sid and tel.auth_token):
            log.warning("call %s: text message not sent: TWILIO_ACCOUNT_SID/TWILIO_AUTH_TOKEN not set",
                        esc(call_sid))
            return False
        if not self.limit.take(action.to):
            self.refused(call_sid, action.to, "daily_limit")
            return False
        try:
            self._rest().messages.create(to=action.to, from_=tel.caller_id or sender, body=action.text)
        except Exception as exc:  # twilio raises its own and requests' errors
            log.error("call %s: text message failed: %s", esc(call_sid), exc)
            return False
        self.metrics.sms_sent.inc()
        log.info("call %s: summary sent by text message", esc(call_sid))
        return True

    def _rest(self) -> Any:
        if self._client is None:
            from twilio.http.http_client import TwilioHttpClient
            from twilio.rest import Client

            tel = self.settings.telephony
            client = Client(tel.account_sid, tel.auth_token,
                            http_client=TwilioHttpClient(timeout=tel.rest_timeout_seconds))
            if tel.api_base:
                client.api.base_url = tel.api_base
            self._client = client
        return self._client
