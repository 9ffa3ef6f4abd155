"""A real CRM over HTTP as the customer directory (``identity.directory: http``).

The CRM answers four requests, all JSON, authorised with ``Authorization: Bearer
$VOICEBOT_CRM_TOKEN``::

    GET  {base}/customers/{number}                              -> a customer, or 404
    GET  {base}/customers?phone={E.164}                         -> a list of customers
    GET  {base}/customers?postcode={1234AB}&house_number={12A}  -> a list of customers
    POST {base}/customers/{number}/pin-check  {"pin": "1234"}   -> {"match": true|false}, or 404

    customer: {"number", "name", "phones", "postcode", "house_number", "birth_date", "has_pin"}

A caller is waiting while the CRM answers, so every request is bounded: ``crm_timeout_seconds``
to connect and again to receive the answer, at most ``MAX_RESPONSE_BYTES`` of it, no redirects
(the token must not travel to another host). After ``crm_failures_to_open`` failed requests in a
row the circuit opens: for ``crm_open_seconds`` every lookup fails at once instead of making
each caller wait for a CRM that is down; then one request is let through to try it again.
Every failure is ``DirectoryUnavailable`` with a message naming what went wrong; verification
then fails closed. Messages and logs name the kind of lookup, never the customer number, phone
number, PIN or birth date asked about or answered.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote, urlsplit

import requests
import urllib3
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, TypeAdapter, ValidationError

from voicebot.errors import ConfigError
from voicebot.identity import Customer, DirectoryUnavailable, fields

if TYPE_CHECKING:
    from voicebot.config import IdentitySection

log = logging.getLogger("voicebot.crm")

MAX_RESPONSE_BYTES = 256 * 1024     # a lookup answers a few customers; anything larger is wrong
MAX_CUSTOMERS = 50                  # a list longer than this is refused, not truncated
MAX_PHONES = 20
_CHUNK = 16 * 1024


class _WithoutQueries(logging.Filter):
    """urllib3 logs each request line at DEBUG, query string included: for an address lookup
    that is the caller's full postcode. Keep the path, drop the query."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(arg.split("?", 1)[0] + "?..." if isinstance(arg, str) and "?" in arg else arg
                                for arg in record.args)
        return True


logging.getLogger("urllib3.connectionpool").addFilter(_WithoutQueries())


class CrmProblem(Exception):
    """Why one request did not give a usable answer (becomes ``DirectoryUnavailable``)."""


class CrmCustomer(BaseModel):
    """One customer as the CRM sends it; extra keys are ignored, wrong types refused."""

    model_config = ConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)

    number: Annotated[StrictStr, Field(min_length=1, max_length=64)]
    name: Annotated[StrictStr, Field(max_length=200)]
    phones: Annotated[list[StrictStr], Field(max_length=MAX_PHONES)] = []
    postcode: Annotated[StrictStr, Field(max_length=16)] = ""
    house_number: Annotated[StrictStr, Field(max_length=16)] = ""
    birth_date: dt.date | None = None
    has_pin: StrictBool = False

    def customer(self) -> Customer:
        """In the directory's stored forms, so lookups compare like with like; a phone number or
        address the CRM holds in a form that cannot be read simply never matches."""
        phones = []
        for written in self.phones:
            try:
                phones.append(fields.phone(written))
            except ValueError:
                log.warning("CRM customer record has a phone number that is not valid; ignored")
        try:
            postcode, house_number = fields.postcode(self.postcode), fields.house_number(self.house_number)
        except ValueError:
            postcode, house_number = "", ""
        try:
            number = fields.customer_number(self.number)
        except ValueError:
            raise CrmProblem("answered a customer number that is not letters, digits or hyphens") from None
        return Customer(number=number, name=self.name.strip(),
                        phones=tuple(dict.fromkeys(phones)), postcode=postcode, house_number=house_number,
                        birth_date=self.birth_date, has_pin=self.has_pin)


class PinCheck(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)

    match: StrictBool


_ONE = TypeAdapter(CrmCustomer)
_LIST = TypeAdapter(Annotated[list[CrmCustomer], Field(max_length=MAX_CUSTOMERS)])
_PIN = TypeAdapter(PinCheck)


class CircuitBreaker:
    """Closed until ``failures_to_open`` failures in a row, then open for ``open_seconds``
    (``before`` refuses at once), then half-open: exactly one trial request, whose success
    closes it and whose failure opens it again.

    The clock is injectable (``time.monotonic`` by default) so tests move time instead of
    sleeping. pybreaker was considered; it reads the wall clock, which neither tests nor a
    clock change can steer.
    """

    def __init__(self, failures_to_open: int, open_seconds: float, clock: Callable[[], float] = time.monotonic):
        self.failures_to_open = failures_to_open
        self.open_seconds = open_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = False

    @property
    def state(self) -> str:
        with self._lock:
            if self._opened_at is None:
                return "closed"
            if self._trial or self._clock() - self._opened_at >= self.open_seconds:
                return "half-open"
            return "open"

    def before(self) -> None:
        """Allow a request, or raise ``DirectoryUnavailable`` while the circuit is open."""
        with self._lock:
            if self._opened_at is None:
                return
            left = self.open_seconds - (self._clock() - self._opened_at)
            if self._trial:
                raise DirectoryUnavailable("CRM circuit open: one request is trying the CRM again")
            if left > 0:
                raise DirectoryUnavailable(f"CRM circuit open after {self._failures} failed requests in a row; "
                                           f"next try in {left:.0f} s")
            self._trial = True

    def success(self) -> None:
        with self._lock:
            if self._opened_at is not None:
                log.info("CRM answers again; circuit closed")
            self._failures, self._opened_at, self._trial = 0, None, False

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._trial or (self._opened_at is None and self._failures >= self.failures_to_open):
                if not self._trial:
                    log.warning("CRM failed %d times in a row; circuit open for %g s",
                                self._failures, self.open_seconds)
                self._opened_at, self._trial = self._clock(), False


def _validation_words(exc: ValidationError) -> str:
    """Where the answer has the wrong shape, without the values (they may be a customer's)."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False)[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "the answer"
        parts.append(f"{where}: {error['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _parse(adapter: TypeAdapter[Any], body: bytes) -> Any:
    try:
        return adapter.validate_json(body, strict=True)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise CrmProblem("answered something that is not JSON") from None
        raise CrmProblem(f"answered JSON of the wrong shape: {_validation_words(exc)}") from None


class CrmDirectory:
    """The ``Directory`` behind a CRM's HTTP API (see the module docstring)."""

    def __init__(self, base_url: str, token: str, *, timeout_seconds: float = 3.0, failures_to_open: int = 5,
                 open_seconds: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.base_url = base_url.rstrip("/")
        self.timeout_seconds = timeout_seconds
        self.breaker = CircuitBreaker(failures_to_open, open_seconds, clock)
        self._token = token
        # requests.Session is not promised to be thread-safe: one per thread (webhook threads).
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._sessions_lock = threading.Lock()

    @classmethod
    def from_settings(cls, identity: IdentitySection) -> CrmDirectory:
        url = identity.crm_url.strip()
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError("identity.directory is http but identity.crm_url is not an http(s) URL: "
                              "set it to the CRM's customer API, like https://crm.example.nl/api")
        if not identity.crm_token:
            raise ConfigError("identity.directory is http but VOICEBOT_CRM_TOKEN is not set: "
                              "set it to the CRM's bearer token")
        return cls(url, identity.crm_token, timeout_seconds=identity.crm_timeout_seconds,
                   failures_to_open=identity.crm_failures_to_open, open_seconds=identity.crm_open_seconds)

    def __repr__(self) -> str:
        return f"CrmDirectory({self.base_url!r}, circuit {self.breaker.state})"

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers.update({"Accept": "application/json", "User-Agent": "voicebot"})
            if self._token:
                session.headers["Authorization"] = f"Bearer {self._token}"
            self._local.session = session
            with self._sessions_lock:
                self._sessions.append(session)
        return session

    def close(self) -> None:
        with self._sessions_lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()
        self._local = threading.local()

    # -- one request -------------------------------------------------------------------------

    def _fetch(self, method: str, path: str, **kwargs: Any) -> tuple[int, bytes]:
        """Status and body, within the timeout and the size bound, or ``CrmProblem``."""
        timeout = self.timeout_seconds
        deadline = time.monotonic() + 2 * timeout      # connecting, then receiving all of it
        try:
            with self._session().request(method, self.base_url + path, timeout=(timeout, timeout), stream=True,
                                         allow_redirects=False, **kwargs) as response:
                declared = response.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
                    raise CrmProblem(f"answer too large ({declared} bytes, at most {MAX_RESPONSE_BYTES})")
                body = bytearray()
                for chunk in response.iter_content(_CHUNK):
                    body += chunk
                    if len(body) > MAX_RESPONSE_BYTES:
                        raise CrmProblem(f"answer too large (more than {MAX_RESPONSE_BYTES} bytes)")
                    if time.monotonic() > deadline:
                        raise CrmProblem(f"answer not complete within {2 * timeout:g} s")
                return response.status_code, bytes(body)
        except requests.Timeout:
            raise CrmProblem(f"no answer within {timeout:g} s") from None
        except requests.ConnectionError as exc:
            if exc.args and isinstance(exc.args[0], urllib3.exceptions.ReadTimeoutError):
                raise CrmProblem(f"no answer within {timeout:g} s") from None
            raise CrmProblem(f"cannot connect to {self.base_url}") from None
        except requests.RequestException as exc:
            raise CrmProblem(f"request failed ({type(exc).__name__})") from None

    def _call(self, what: str, method: str, path: str, answer: Callable[[int, bytes], Any], **kwargs: Any) -> Any:
        """One request through the circuit breaker; ``answer`` turns status and body into the
        result or raises ``CrmProblem``."""
        self.breaker.before()
        try:
            status, body = self._fetch(method, path, **kwargs)
            if status in (401, 403):
                raise CrmProblem(f"refused the bearer token (HTTP {status}): check VOICEBOT_CRM_TOKEN")
            if 300 <= status < 400:
                raise CrmProblem(f"answered HTTP {status}, a redirect (not followed): check identity.crm_url")
            result = answer(status, body)
        except CrmProblem as exc:
            self.breaker.failure()
            log.warning("CRM %s failed: %s", what, exc)
            raise DirectoryUnavailable(f"CRM {what} failed: {exc}") from None
        except Exception as exc:       # an answer this code did not foresee: still fail closed
            self.breaker.failure()
            log.warning("CRM %s failed unexpectedly: %s", what, type(exc).__name__)
            raise DirectoryUnavailable(f"CRM {what} failed: unexpected {type(exc).__name__}") from None
        except BaseException:
            self.breaker.failure()
            raise
        self.breaker.success()
        return result

    @staticmethod
    def _expect_ok(status: int) -> None:
        if status != 200:
            raise CrmProblem(f"answered HTTP {status}")

    # -- the Directory -----------------------------------------------------------------------

    def by_number(self, number: str) -> Customer | None:
        try:
            number = fields.customer_number(number)
        except ValueError:
            return None

        def answer(status: int, body: bytes) -> Customer | None:
            if status == 404:
                return None
            self._expect_ok(status)
            customer = _parse(_ONE, body).customer()
            if customer.number != number:
                raise CrmProblem("answered with another customer than the one asked for")
            return customer

        return self._call("lookup by customer number", "GET", f"/customers/{quote(number, safe='')}", answer)

    def _search(self, what: str, params: dict[str, str]) -> list[Customer]:
        def answer(status: int, body: bytes) -> list[Customer]:
            self._expect_ok(status)
            return [found.customer() for found in _parse(_LIST, body)]

        return self._call(what, "GET", "/customers", answer, params=params)

    def by_phone(self, e164: str) -> list[Customer]:
        try:
            e164 = fields.phone(e164)
        except ValueError:
            return []
        return self._search("lookup by phone number", {"phone": e164})

    def by_address(self, postcode: str, house_number: str) -> list[Customer]:
        try:
            postcode, house_number = fields.postcode(postcode), fields.house_number(house_number)
        except ValueError:
            return []
        return self._search("lookup by address", {"postcode": postcode, "house_number": house_number})

    def pin_matches(self, number: str, pin: str) -> bool:
        try:
            number = fields.customer_number(number)
        except ValueError:
            return False

        def answer(status: int, body: bytes) -> bool:
            if status == 404:
                return False
            self._expect_ok(status)
            return _parse(_PIN, body).match

        return self._call("PIN check", "POST", f"/customers/{quote(number, safe='')}/pin-check", answer,
                          json={"pin": str(pin)})
