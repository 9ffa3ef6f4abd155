"""CRM webhooks: a delivered record POSTed as signed JSON to its queue's URLs by the real RQ worker,
retried with back-off against a local HTTP server that fails the first attempts, failures counted
for /metrics and shown in voicebot:webhook:failures without personal data, a last failure kept in
RQ's failed registry, and each record sent once per URL."""

from __future__ import annotations

import dataclasses
import os
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import redis
from rq.job import JobStatus

from voicebot.config import WebhooksSection, load_settings
from voicebot.handoff.contract import handoff_record
from voicebot.handoff.queueing import enqueue_context, handoff_queue
from voicebot.handoff.webhooks import FAILURES_KEY, failures, job_id, queue_name
from voicebot.telephony.metrics import Metrics
from voicebot.worker import run_worker

SECRET = "whsec-" + "4" * 32
KEEP = 900


class Receiver(BaseHTTPRequestHandler):
    """A CRM's webhook endpoint: answers the first ``failures`` requests with ``fail_status``."""

    received: list[tuple[dict, bytes]]
    failures = 0
    fail_status = 503
    location = ""

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        cls = type(self)
        cls.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        if len(cls.received) <= cls.failures:
            self.send_response(cls.fail_status)
            if cls.location:
                self.send_header("Location", cls.location)
        else:
            self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    """Start a receiver; ``receiver(failures, status)`` gives its URL and its handler class."""
    servers = []

    def start(failures: int = 0, fail_status: int = 503, location: str = ""):
        handler = type("Handler", (Receiver,), {"received": [], "failures": failures, "fail_status": fail_status,
                                               "location": location})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/hooks/voicebot?token=t0ps3cret", handler

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def connection(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def settings_with(redis_url, urls: dict, retry_seconds=(1, 1, 1), secret: str = SECRET):
    # The session's call records (tests/conftest.py): the worker's sweep never writes this repository's.
    settings = load_settings(environ={"REDIS_URL": redis_url, "VOICEBOT_RECORDS_URL": os.environ["VOICEBOT_RECORDS_URL"]})
    return dataclasses.replace(settings, handoff_queue=f"test-{uuid.uuid4().hex}", webhooks=WebhooksSection(
        urls={q: tuple(u) for q, u in urls.items()}, timeout_seconds=2.0, retry_seconds=tuple(retry_seconds),
        secret=secret))


def a_record(queue: str) -> dict:
    context = {"call_id": "CA" + secrets.token_hex(16), "flow": "energie", "language": "nl", "caller": "+31612345678",
               "called": "+31850000000", "started_at": "2026-11-23T10:00:00", "queue": queue,
               "reason": "explicit_request", "after_hours": False, "intent": None,
               "slots": {"postcode": "1234AB"}, "partial_slots": [], "keypad_only": False, "secrets_provided": [],
               "identity": {"verified": False, "level": "none", "method": None, "customer": None, "attempts": []},
               "step": "vraag", "turns": 1, "failures": [], "sources": [], "summary": "Onderwerp: meterstand.",
               "transcript": [], "earlier_call": None}
    return handoff_record(context, waited_seconds=4.0)


def work_until(settings, done, seconds: float = 90.0) -> None:
    """Run the worker in bursts (its scheduler puts due retries back) until ``done()``."""
    deadline = time.monotonic() + seconds
    while True:
        assert run_worker(settings, burst=True) == 0
        if done():
            return
        assert time.monotonic() < deadline, "the worker did not get there in time"
        time.sleep(0.3)


def signature_ok(headers: dict, body: bytes, secret: str = SECRET) -> bool:
    """What a receiver does, as docs/telephony.md tells it: HMAC-SHA256 of "<timestamp>." + body."""
    timestamp = headers["x-voicebot-timestamp"]
    expected = "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers["x-voicebot-signature"]) and abs(time.time() - int(timestamp)) < 300


def scraped(connection, name: str) -> float:
    for row in Metrics(shared=connection).render().decode().splitlines():
        if row.startswith(name + " "):
            return float(row.rsplit(" ", 1)[1])
    return 0.0


def test_a_record_is_posted_signed_retried_until_accepted_and_its_failures_shown(receiver, redis_url, connection):
    url, handler = receiver(failures=2)
    queue = "agents-" + secrets.token_hex(4)
    settings = settings_with(redis_url, {queue: [url]})
    record = a_record(queue)
    delivered, attempts = scraped(connection, "voicebot_webhook_delivered_total"), \
        scraped(connection, "voicebot_webhook_failed_attempts_total")
    enqueue_context(connection, settings.handoff_queue, record, keep_seconds=KEEP)
    hook = job_id(record["call_id"], url)

    work_until(settings, lambda: len(handler.received) >= 1)              # the delivery, then the first POST

    shown = [f for f in failures(connection) if f["job"] == hook]
    assert shown and shown[0]["attempts"] == 1 and shown[0]["last_error"] == "HTTP 503" and not shown[0]["final"]
    assert shown[0]["host"] == url.split("/")[2] and shown[0]["call_id"] == record["call_id"]
    raw = connection.hget(FAILURES_KEY, hook).decode()
    for personal in ("+31612345678", "1234AB", "meterstand", "t0ps3cret", "/hooks"):
        assert personal not in raw                                        # no caller, no URL path or token

    webhooks = handoff_queue(connection, queue_name(settings.handoff_queue))
    work_until(settings, lambda: webhooks.fetch_job(hook).get_status(refresh=True) == JobStatus.FINISHED)

    assert len(handler.received) == 3
    for headers, body in handler.received:
        assert headers["content-type"] == "application/json" and headers["x-voicebot-delivery"] == hook
        assert signature_ok(headers, body)
        assert json.loads(body) == record
    tampered = handler.received[0][1].replace(b"meterstand", b"meterstant")
    assert not signature_ok(handler.received[0][0], tampered)
    assert not signature_ok(handler.received[0][0], handler.received[0][1], secret="another secret")
    assert connection.hget(FAILURES_KEY, hook) is None                    # delivered after all: off the list
    assert scraped(connection, "voicebot_webhook_delivered_total") == delivered + 1
    assert scraped(connection, "voicebot_webhook_failed_attempts_total") == attempts + 2


def test_a_delivery_that_never_succeeds_stays_failed_shown_and_logged(receiver, redis_url, connection, tmp_path):
    url, handler = receiver(failures=100, fail_status=500)
    queue = "agents-" + secrets.token_hex(4)
    settings = settings_with(redis_url, {queue: [url]}, retry_seconds=(1,))
    record = a_record(queue)
    given_up = scraped(connection, "voicebot_webhook_given_up_total")
    enqueue_context(connection, settings.handoff_queue, record, keep_seconds=KEEP)
    hook = job_id(record["call_id"], url)
    webhooks = handoff_queue(connection, queue_name(settings.handoff_queue))

    logged = logging.FileHandler(tmp_path / "worker.log")        # the POST runs in a forked work-horse
    logged.setLevel(logging.ERROR)
    logging.getLogger("voicebot.webhooks").addHandler(logged)
    try:
        work_until(settings, lambda: hook in webhooks.failed_job_registry.get_job_ids())
    finally:
        logging.getLogger("voicebot.webhooks").removeHandler(logged)
        logged.close()

    assert len(handler.received) == 2                                     # the first attempt and one retry
    entry = json.loads(connection.hget(FAILURES_KEY, hook))
    assert entry["final"] is True and entry["attempts"] == 2 and entry["last_error"] == "HTTP 500"
    assert scraped(connection, "voicebot_webhook_given_up_total") == given_up + 1
    assert scraped(connection, "voicebot_webhook_failing") >= 1
    assert 0 < connection.ttl(f"rq:job:{hook}") <= KEEP                   # kept as long as the call, no longer
    assert 0 < connection.ttl(FAILURES_KEY) <= KEEP
    errors = (tmp_path / "worker.log").read_text().splitlines()
    assert len(errors) == 1 and hook in errors[0] and "given up" in errors[0] and "t0ps3cret" not in errors[0]


def test_a_redirect_is_not_followed_and_counts_as_a_failure(receiver, redis_url, connection):
    elsewhere, other = receiver()
    url, handler = receiver(failures=100, fail_status=302, location=elsewhere)
    queue = "agents-" + secrets.token_hex(4)
    settings = settings_with(redis_url, {queue: [url]}, retry_seconds=())
    record = a_record(queue)
    enqueue_context(connection, settings.handoff_queue, record, keep_seconds=KEEP)
    hook = job_id(record["call_id"], url)
    webhooks = handoff_queue(connection, queue_name(settings.handoff_queue))

    work_until(settings, lambda: hook in webhooks.failed_job_registry.get_job_ids())

    assert len(handler.received) == 1 and other.received == []
    assert json.loads(connection.hget(FAILURES_KEY, hook))["last_error"] == "HTTP 302"


def test_each_record_goes_once_to_each_url_of_its_queue_and_of_every_queue(receiver, redis_url, connection):
    own, own_handler = receiver()
    every, every_handler = receiver()
    unrelated, unrelated_handler = receiver()
    queue = "agents-" + secrets.token_hex(4)
    settings = settings_with(redis_url, {queue: [own], "*": [every, own], "other-queue": [unrelated]})
    record = a_record(queue)

    for _ in range(2):                                   # enqueued and run twice: still one POST per URL
        enqueue_context(connection, settings.handoff_queue, record, keep_seconds=KEEP)
        work_until(settings, lambda: own_handler.received and every_handler.received)

    time.sleep(0.5)
    assert len(own_handler.received) == 1 and len(every_handler.received) == 1
    assert unrelated_handler.received == []


def test_the_worker_will_not_post_unsigned(redis_url, capsys):
    settings = settings_with(redis_url, {"agents": ["https://crm.example.com/hook"]}, secret="")
    assert run_worker(settings, burst=True) == 1
    assert "VOICEBOT_WEBHOOK_SECRET" in capsys.readouterr().err
