"""Requests as Twilio makes them: signed over the public URL, sent to the server's local address.

A server behind TLS termination or a tunnel validates ``X-Twilio-Signature`` against the address
Twilio was given (``PUBLIC_URL``), not the one it is reached at. So every request is signed with
twilio's own ``RequestValidator`` over the public URL and then sent to the same path and query on
the local server. HTTP goes through ``requests``, one session (and its connections) per call.
"""

from __future__ import annotations

import secrets
import urllib.parse

import requests
from twilio.request_validator import RequestValidator

from voicebot.emulator.errors import EmulatorError, ServerUnreachable, WebhookRefused

HTTP_TIMEOUT = 15.0
"""Twilio gives a webhook 15 seconds before it gives up on it."""
USER_AGENT = "TwilioProxy/1.1 (voicebot emulator)"


def new_sid(prefix: str) -> str:
    """A random Twilio-shaped SID: two letters and 32 hex digits."""
    return prefix + secrets.token_hex(16)


def local_url(url: str, public: str, server: str) -> str:
    """Where a public URL is reached on the local server: same path and query, the server's address."""
    scheme = urllib.parse.urlsplit(url).scheme
    websocket = scheme in ("ws", "wss")
    http_url = ("https" if scheme == "wss" else "http") + url[len(scheme):] if websocket else url
    public, server = public.rstrip("/"), server.rstrip("/")
    if http_url == public or http_url.startswith(public + "/") or http_url.startswith(public + "?"):
        local = server + http_url[len(public):]
    else:
        parts, base = urllib.parse.urlsplit(http_url), urllib.parse.urlsplit(server)
        local = urllib.parse.urlunsplit((base.scheme, base.netloc, parts.path, parts.query, ""))
    if websocket:
        local = ("wss" if local.startswith("https:") else "ws") + local[local.index(":"):]
    return local


def _reason(exc: BaseException) -> str:
    """The operating system's words for a failed connection, not urllib3's wrapping of them."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return str(seen)
        seen = seen.__cause__ or seen.__context__
    if isinstance(exc, requests.Timeout):
        return "timed out"
    return str(exc)


class SignedClient:
    """Signed requests to the server, the way Twilio requests webhooks."""

    def __init__(self, server: str, public: str, auth_token: str):
        self.server, self.public = server.rstrip("/"), public.rstrip("/")
        self.validator = RequestValidator(auth_token)
        self.session = requests.Session()

    def signature(self, url: str, params: dict[str, str] | None = None) -> str:
        """``X-Twilio-Signature`` for ``url`` (public, absolute) and the form ``params``."""
        return self.validator.compute_signature(url, params or {})

    def request(self, url: str, params: dict[str, str], method: str = "POST") -> str:
        """Request ``url`` (public, absolute) as Twilio would and return the body."""
        method = (method or "POST").upper()
        if method == "GET":
            sep = "&" if urllib.parse.urlsplit(url).query else "?"
            url, params = url + sep + urllib.parse.urlencode(params), {}
        signature = self.signature(url, params)
        local = local_url(url, self.public, self.server)
        headers = {"X-Twilio-Signature": signature, "User-Agent": USER_AGENT, "Accept": "*/*"}
        try:
            resp = self.session.request(method, local, data=params if method == "POST" else None,
                                        headers=headers, timeout=HTTP_TIMEOUT)
        except (requests.exceptions.InvalidSchema, requests.exceptions.MissingSchema,
                requests.exceptions.InvalidURL) as exc:  # not an http(s) address
            raise EmulatorError(f"cannot request {local}: {exc}") from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise ServerUnreachable(f"cannot reach the server at {local}: {_reason(exc)}") from None
        if resp.status_code == 403:
            raise WebhookRefused(
                f"{local} refused the request (403): the server did not accept the X-Twilio-Signature. "
                f"Check TWILIO_AUTH_TOKEN and --public-url (signed as {url})")
        if not 200 <= resp.status_code < 300:
            body = resp.content.decode("utf-8", "replace").strip()[:200]
            raise EmulatorError(f"{local} answered {resp.status_code} {resp.reason}" + (f": {body}" if body else ""))
        return resp.content.decode("utf-8", "replace")

    def close(self) -> None:
        self.session.close()
