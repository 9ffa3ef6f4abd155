"""Proof that a Media Stream belongs to its call, and one live stream per call.

Twilio signs the WebSocket handshake over the fixed ``wss://…/twilio/media`` address, so that
signature is the same for every call: whoever has seen one could open sockets at will and name any
call in ``start``. ``/twilio/voice`` (a signed request for one CallSid) therefore hands the call a
token, an HMAC of the CallSid under a server secret, as a ``<Parameter>``; a ``start`` is accepted
only with the token of its own ``callSid``.

The secret is ``VOICEBOT_STREAM_SECRET``, or else derived from ``TWILIO_AUTH_TOKEN`` (an HMAC under a
fixed label, so the auth token itself never signs anything of ours): every node configured for the
same Twilio account agrees, with nothing more to set.

``StreamClaims`` keeps one live stream per call across nodes: ``SET NX`` with an expiry in Redis,
refreshed while the stream lives and deleted (only by its owner) at the end. When Redis does not
answer, a claim is held in this process's memory only, so a call is still served.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from typing import Any

import redis

log = logging.getLogger("voicebot.stream_auth")

TOKEN_PARAMETER = "token"
CLAIM_PREFIX = "voicebot:stream:"
CLAIM_TTL_SECONDS = 30
RETRY_AFTER = 5.0

_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
_REFRESH = ("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('expire', KEYS[1], ARGV[2]) "
            "else return 0 end")


def stream_secret(explicit: str, auth_token: str) -> bytes:
    """``VOICEBOT_STREAM_SECRET`` if set, else a key derived from the Twilio auth token."""
    if explicit:
        return explicit.encode()
    if not auth_token:
        return b""
    return hmac.new(auth_token.encode(), b"voicebot stream token v1", hashlib.sha256).digest()


def stream_token(secret: bytes, call_sid: str) -> str:
    """The token of one call: hex HMAC-SHA256 of the CallSid (64 characters, fits a <Parameter>)."""
    return hmac.new(secret, call_sid.encode(), hashlib.sha256).hexdigest()


def token_ok(secret: bytes, call_sid: str, token: Any) -> bool:
    """Constant-time check; no secret (nothing configured) proves nothing."""
    if not secret or not call_sid or not isinstance(token, str) or not token:
        return False
    return hmac.compare_digest(stream_token(secret, call_sid), token)


class StreamClaims:
    """Which calls have a live stream: across nodes through Redis, always in this process too."""

    def __init__(self, client: redis.Redis | None, ttl: int = CLAIM_TTL_SECONDS):
        self._redis = client
        self.ttl = ttl
        self._owner = secrets.token_hex(8)
        self._local: dict[str, str] = {}          # call SID -> claim value
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None

    def _usable(self) -> bool:
        return self._redis is not None and time.monotonic() >= self._down_until

    def _failed(self, what: str, exc: Exception) -> None:
        self._down_until = time.monotonic() + RETRY_AFTER
        log.warning("Redis %s of a stream claim failed (%s); claims are held in this process only", what, exc)

    def claim(self, call_sid: str) -> bool:
        """True if the call had no live stream and now has ours."""
        value = f"{self._owner}:{secrets.token_hex(4)}"
        with self._lock:
            if call_sid in self._local:
                return False
            self._local[call_sid] = value
        if self._usable():
            try:
                taken = self._redis.set(CLAIM_PREFIX + call_sid, value, nx=True, ex=self.ttl)  # type: ignore[union-attr]
                if not taken:
                    with self._lock:
                        self._local.pop(call_sid, None)
                    return False
            except (redis.RedisError, OSError) as exc:
                self._failed("write", exc)
        self._ensure_refresher()
        return True

    def release(self, call_sid: str) -> None:
        with self._lock:
            value = self._local.pop(call_sid, None)
        if value is None or not self._usable():
            return
        try:
            self._redis.eval(_RELEASE, 1, CLAIM_PREFIX + call_sid, value)  # type: ignore[union-attr]
        except (redis.RedisError, OSError) as exc:
            self._failed("release", exc)

    def live(self) -> int:
        with self._lock:
            return len(self._local)

    def refresh(self) -> None:
        """Renew the expiry of every claim this process holds (so a crashed node's claims lapse)."""
        with self._lock:
            held = list(self._local.items())
        if not held or not self._usable():
            return
        try:
            for call_sid, value in held:
                self._redis.eval(_REFRESH, 1, CLAIM_PREFIX + call_sid, value, self.ttl)  # type: ignore[union-attr]
        except (redis.RedisError, OSError) as exc:
            self._failed("refresh", exc)

    def _ensure_refresher(self) -> None:
        if self._refresher is not None and self._refresher.is_alive():
            return
        with self._lock:
            if self._refresher is not None and self._refresher.is_alive():
                return
            self._refresher = threading.Thread(target=self._refresh_loop, name="voicebot-claims", daemon=True)
            self._refresher.start()

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            self.refresh()

    def close(self) -> None:
        self._stop.set()
