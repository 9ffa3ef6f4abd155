"""The CRM directory against a real local HTTP server that answers, fails and hangs."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from voicebot.identity import DirectoryUnavailable
from voicebot.identity.crm import MAX_RESPONSE_BYTES, CircuitBreaker, CrmDirectory

TOKEN = "crm-test-token"
TIMEOUT = 0.5        # the client's; the hanging server waits far longer (until released)

CUSTOMERS = {
    "100001": {"number": "100001", "name": "Jan de Vries", "phones": ["06-1234 5678"], "postcode": "1012 ab",
               "house_number": "12", "birth_date": "1975-03-14", "has_pin": False, "segment": "extra keys are fine"},
    "100003": {"number": "100003", "name": "Pieter Bakker", "phones": ["+31634567890"], "postcode": "9711EF",
               "house_number": "3", "birth_date": "1952-06-30", "has_pin": False},
    "100004": {"number": "100004", "name": "Sanne Bakker", "phones": ["+31645678901"], "postcode": "9711EF",
               "house_number": "3", "birth_date": None, "has_pin": True},
}
E164 = {"100001": "+31612345678", "100003": "+31634567890", "100004": "+31645678901"}
PIN = "80417526"      # eight digits: no port number or length in a log line can contain it
PINS = {"100004": PIN}


class Crm(ThreadingHTTPServer):
    """A CRM whose behaviour the test sets in ``mode``; it records every request it gets."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.mode = "ok"
        self.requests: list[dict] = []
        self.received = threading.Event()      # set when a request has come in
        self.release = threading.Event()       # lets hanging handlers go

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/api"

    def handle_error(self, request, client_address) -> None:   # a client that gave up is expected
        pass


class Handler(BaseHTTPRequestHandler):
    server: Crm

    def log_message(self, *args) -> None:
        pass

    def reply(self, status: int, body: bytes, *, length: bool = True, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if length:
            self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def answer(self, status: int, data: object) -> None:
        self.reply(status, json.dumps(data).encode())

    def do_GET(self) -> None:
        self.serve("GET", b"")

    def do_POST(self) -> None:
        self.serve("POST", self.rfile.read(int(self.headers.get("Content-Length", "0"))))

    def serve(self, method: str, body: bytes) -> None:
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        crm = self.server
        crm.requests.append({"method": method, "path": url.path, "query": query, "body": body,
                             "auth": self.headers.get("Authorization")})
        crm.received.set()
        mode = crm.mode
        if mode == "hang":
            crm.release.wait(30)
            return
        if mode == "500":
            return self.reply(500, b"internal error")
        if mode == "401":
            return self.reply(401, b"{}")
        if mode == "redirect":
            return self.reply(302, b"", headers={"Location": "http://elsewhere.example/"})
        if mode == "not json":
            return self.reply(200, b"<html>gateway</html>")
        if mode == "wrong shape":
            return self.answer(200, {"number": "100001", "name": "Jan", "birth_date": "14-03-1975", "has_pin": "yes"})
        if mode == "another customer":
            return self.answer(200, CUSTOMERS["100003"])
        if mode == "huge":
            return self.reply(200, b" " * (MAX_RESPONSE_BYTES + 1))
        if mode == "huge unannounced":
            return self.reply(200, b"[" + b" " * (MAX_RESPONSE_BYTES + 1) + b"]", length=False)
        parts = url.path.removeprefix("/api/").split("/")
        if method == "GET" and parts == ["customers"]:
            if "phone" in query:
                found = [c for n, c in CUSTOMERS.items() if E164[n] == query["phone"]]
            else:
                found = [c for c in CUSTOMERS.values() if c["postcode"].replace(" ", "").upper() == query.get("postcode")
                         and c["house_number"] == query.get("house_number")]
            return self.answer(200, found)
        if method == "GET" and len(parts) == 2 and parts[0] == "customers":
            if parts[1] in CUSTOMERS:
                return self.answer(200, CUSTOMERS[parts[1]])
            return self.answer(404, {"error": "no such customer"})
        if method == "POST" and len(parts) == 3 and parts[2] == "pin-check":
            if parts[1] not in CUSTOMERS:
                return self.answer(404, {"error": "no such customer"})
            return self.answer(200, {"match": PINS.get(parts[1]) == json.loads(body)["pin"]})
        self.answer(400, {"error": "unknown request"})


@pytest.fixture
def crm():
    server = Crm()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


class Clock:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def directory(crm: Crm, clock: Clock | None = None, failures_to_open: int = 100) -> CrmDirectory:
    return CrmDirectory(crm.base_url, TOKEN, timeout_seconds=TIMEOUT, failures_to_open=failures_to_open,
                        open_seconds=30.0, clock=clock or Clock())


# -- answers ----------------------------------------------------------------------------------

def test_lookups_use_the_documented_api_with_the_bearer_token(crm):
    d = directory(crm)
    jan = d.by_number(" 100001 ")
    assert (jan.number, jan.name, jan.phones, jan.postcode, jan.house_number, jan.birth_date, jan.has_pin) == \
        ("100001", "Jan de Vries", ("+31612345678",), "1012AB", "12", dt.date(1975, 3, 14), False)
    assert crm.requests[-1] == {"method": "GET", "path": "/api/customers/100001", "query": {}, "body": b"",
                                "auth": f"Bearer {TOKEN}"}
    assert d.by_number("999999") is None                                   # 404: no such customer

    assert [c.number for c in d.by_phone("06 12345678")] == ["100001"]
    assert crm.requests[-1]["query"] == {"phone": "+31612345678"}
    assert d.by_phone("+31687654321") == []

    household = d.by_address("9711 ef", "3")
    assert [c.number for c in household] == ["100003", "100004"]
    assert crm.requests[-1]["query"] == {"postcode": "9711EF", "house_number": "3"}
    assert household[1].birth_date is None and household[1].has_pin

    assert d.pin_matches("100004", PIN)
    request = crm.requests[-1]
    assert (request["method"], request["path"], json.loads(request["body"])) == \
        ("POST", "/api/customers/100004/pin-check", {"pin": PIN})
    assert not d.pin_matches("100004", "1234")
    assert not d.pin_matches("999999", "4321")                             # 404: no match
    assert d.breaker.state == "closed"
    d.close()


def test_values_that_cannot_be_a_customer_never_reach_the_crm(crm):
    d = directory(crm)
    assert d.by_number("100001/../admin") is None
    assert d.by_phone("no number") == [] and d.by_address("not a postcode", "3") == []
    assert not d.pin_matches("", "4321")
    assert crm.requests == []


# -- failures ---------------------------------------------------------------------------------

@pytest.mark.parametrize("mode, words", [
    ("500", "answered HTTP 500"),
    ("401", r"refused the bearer token \(HTTP 401\): check VOICEBOT_CRM_TOKEN"),
    ("redirect", "redirect"),
    ("not json", "not JSON"),
    ("wrong shape", r"wrong shape: birth_date: .*has_pin: "),
    ("another customer", "another customer than the one asked for"),
    ("huge", "answer too large"),
    ("huge unannounced", "answer too large"),
    ("hang", f"no answer within {TIMEOUT:g} s"),
])
def test_every_failure_is_unavailable_with_clear_words(crm, mode, words, caplog):
    crm.mode = mode
    d = directory(crm)
    with pytest.raises(DirectoryUnavailable, match=f"^CRM lookup by customer number failed: .*{words}") as caught:
        d.by_number("100001")
    assert "14-03-1975" not in str(caught.value)                 # a customer's values are never repeated
    assert f"CRM lookup by customer number failed: " in caplog.text
    assert "100001" not in caplog.text
    crm.release.set()
    d.close()


def test_nothing_secret_is_logged_even_at_debug(crm, caplog):
    caplog.set_level(logging.DEBUG)
    d = directory(crm)
    d.by_address("9711EF", "3")
    assert d.pin_matches("100004", PIN)
    crm.mode = "wrong shape"
    with pytest.raises(DirectoryUnavailable):
        d.by_number("100001")
    assert "/api/customers" in caplog.text                        # urllib3 did log its request lines
    for secret in ("9711EF", PIN, "14-03-1975"):
        assert secret not in caplog.text


# -- the circuit breaker ----------------------------------------------------------------------

def test_the_circuit_opens_after_failures_in_a_row_and_closes_after_a_good_trial(crm):
    clock = Clock()
    d = directory(crm, clock, failures_to_open=3)
    crm.mode = "500"
    for _ in range(3):
        with pytest.raises(DirectoryUnavailable, match="HTTP 500"):
            d.by_number("100001")
    assert len(crm.requests) == 3 and d.breaker.state == "open"
    with pytest.raises(DirectoryUnavailable, match=r"CRM circuit open after 3 failed requests in a row; next try in 30 s"):
        d.by_phone("+31612345678")
    clock.now += 29
    with pytest.raises(DirectoryUnavailable, match="CRM circuit open"):
        d.pin_matches("100004", "4321")
    assert len(crm.requests) == 3                                  # the CRM was left alone
    crm.mode = "ok"
    clock.now += 1
    assert d.breaker.state == "half-open"
    assert d.by_number("100001").name == "Jan de Vries"            # the one trial request
    assert len(crm.requests) == 4 and d.breaker.state == "closed"
    assert d.by_number("100003").name == "Pieter Bakker"
    assert len(crm.requests) == 5


def test_a_failed_trial_opens_the_circuit_again_for_the_full_time(crm):
    clock = Clock()
    d = directory(crm, clock, failures_to_open=2)
    crm.mode = "hang"
    for _ in range(2):
        with pytest.raises(DirectoryUnavailable, match="no answer within"):
            d.by_number("100001")
    clock.now += 30
    with pytest.raises(DirectoryUnavailable, match="no answer within"):
        d.by_number("100001")                                      # the trial hangs too
    assert len(crm.requests) == 3 and d.breaker.state == "open"
    clock.now += 29
    with pytest.raises(DirectoryUnavailable, match="circuit open"):
        d.by_number("100001")
    assert len(crm.requests) == 3
    crm.release.set()


def test_a_success_resets_the_count_of_failures(crm):
    d = directory(crm, Clock(), failures_to_open=2)
    for mode in ("500", "ok", "500", "ok", "500"):
        crm.mode = mode
        try:
            d.by_number("100001")
        except DirectoryUnavailable:
            pass
    assert d.breaker.state == "closed" and len(crm.requests) == 5


def test_while_the_trial_runs_every_other_request_is_refused_at_once(crm):
    clock = Clock()
    d = directory(crm, clock, failures_to_open=1)
    crm.mode = "500"
    with pytest.raises(DirectoryUnavailable):
        d.by_number("100001")
    clock.now += 30
    crm.mode = "hang"
    crm.received.clear()
    trial_error: list[BaseException] = []

    def trial() -> None:
        try:
            d.by_number("100001")
        except DirectoryUnavailable as exc:
            trial_error.append(exc)

    worker = threading.Thread(target=trial)
    worker.start()
    assert crm.received.wait(30), "the trial request never reached the CRM"
    with pytest.raises(DirectoryUnavailable, match="one request is trying the CRM again"):
        d.by_number("100003")
    crm.release.set()
    worker.join(30)
    assert len(crm.requests) == 2 and trial_error


def test_breaker_alone():
    clock = Clock()
    breaker = CircuitBreaker(failures_to_open=2, open_seconds=10, clock=clock)
    breaker.before()
    breaker.failure()
    assert breaker.state == "closed"
    breaker.failure()
    assert breaker.state == "open"
    clock.now += 10
    breaker.before()                    # the trial
    with pytest.raises(DirectoryUnavailable):
        breaker.before()                # a second one is not let through
    breaker.success()
    assert breaker.state == "closed"
    breaker.before()
