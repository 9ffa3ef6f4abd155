"""CRM webhooks: every delivered handoff record POSTed as signed JSON to the URLs of its queue.

The worker's ``deliver`` job, once the record is readable by agents, enqueues one RQ job per URL
(``webhooks.urls`` in config.yaml: the record's queue, and ``*`` for every queue) on the queue
``<queues.handoff>-webhooks``, which the worker reads after the handoff queue: a slow CRM never
holds up the next caller's card for longer than one POST. Each job:

- POSTs the record (the same JSON as the stream's, ``docs/handoff.schema.json``) with
  ``Content-Type: application/json``, ``X-Voicebot-Timestamp: <unix seconds>``,
  ``X-Voicebot-Delivery: <job id>`` (the same on every retry: a receiver drops a delivery it has
  seen) and ``X-Voicebot-Signature: sha256=<hex>``, the HMAC-SHA256, keyed with
  VOICEBOT_WEBHOOK_SECRET, of the timestamp, a full stop and the raw body
  (``f"{timestamp}.".encode() + body``). A receiver recomputes it over the bytes it received,
  compares in constant time and refuses an old timestamp (a replay);
- counts only a 2xx answer as delivered; redirects are not followed (the record goes to the
  address configured, nowhere else); each request is bounded by ``webhooks.timeout_seconds``;
- on failure is retried by RQ after each of ``webhooks.retry_seconds`` (the worker's scheduler),
  and every failed attempt is counted and shown: ``voicebot:webhook:stats`` (counters that
  ``/metrics`` reads, ``voicebot_webhook_*``) and the hash ``voicebot:webhook:failures`` (one entry per
  failing delivery: call id, the URL's host, attempts, the last error as a status code or an
  error class: never the record, never the URL's path or query). A delivery that succeeds after
  all is taken off that hash; one that fails its last attempt stays there, is logged as an error
  and stays in RQ's failed job registry, all for ``redis.call_ttl_seconds``: never dropped
  silently.

A delivery is enqueued once per record and URL (job id ``webhook-<delivery>-<hash of the URL>``):
``deliver`` running again (a retry, a re-enqueue) finds the job and adds none. A receiver may
still see a delivery twice (a worker killed after the POST and before RQ noted it): the
``X-Voicebot-Delivery`` header tells it so.

The worker process sets the configuration (``configure``) before it starts; its work-horses are
forked from it and inherit it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import time
from typing import Any
from urllib.parse import urlsplit

import redis
from rq import Queue, Retry, get_current_job
from rq.job import Job

log = logging.getLogger("voicebot.webhooks")

POST = "voicebot.handoff.webhooks.post_record"
SIGNATURE_HEADER = "X-Voicebot-Signature"
TIMESTAMP_HEADER = "X-Voicebot-Timestamp"
DELIVERY_HEADER = "X-Voicebot-Delivery"
FAILURES_KEY = "voicebot:webhook:failures"
FAILURES_ORDER_KEY = "voicebot:webhook:failures:at"
STATS_KEY = "voicebot:webhook:stats"
MAX_FAILURES = 10000
"""Failing deliveries kept on show at most; the oldest go first (they stay in RQ's failed registry)."""

_settings: Any = None
"""The ``webhooks:`` section (``config.WebhooksSection``) of the worker that runs these jobs."""


class WebhookFailed(Exception):
    """A POST that did not end in a 2xx answer; RQ retries the job, or keeps it as failed."""


def configure(section: Any) -> None:
    """The worker's ``webhooks:`` settings, for ``deliver`` and the POST jobs it runs."""
    global _settings
    _settings = section


def queue_name(handoff_queue: str) -> str:
    """The RQ queue of the webhook jobs for a handoff queue."""
    return f"{handoff_queue}-webhooks"


def urls_for(section: Any, queue: str) -> list[str]:
    """The URLs a record of ``queue`` goes to: the queue's own, then those of ``*``, each once."""
    urls = section.urls if section is not None else {}
    return list(dict.fromkeys([*urls.get(queue, ()), *urls.get("*", ())]))


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Voicebot-Signature`` value of ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def host_of(url: str) -> str:
    """What a failure shows of a URL: the host (and port), never its path or query (they may hold a token)."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname or "")


def job_id(delivery: str, url: str) -> str:
    return f"webhook-{delivery}-{hashlib.sha256(url.encode()).hexdigest()[:16]}"


def enqueue_webhooks(connection: redis.Redis, handoff_queue: str, serializer: Any, record: dict[str, Any],
                     delivery: str, keep_seconds: int) -> list[str]:
    """One POST job per URL of the record's queue that has none yet; their ids (new or not)."""
    section = _settings
    urls = urls_for(section, str(record.get("queue", "")))
    if not urls:
        return []
    queue = Queue(queue_name(handoff_queue), connection=connection, serializer=serializer)
    retry = list(section.retry_seconds)
    ids = []
    for url in urls:
        jid = job_id(delivery, url)
        ids.append(jid)
        if Job.exists(jid, connection=connection):
            continue
        queue.enqueue(POST, url, record, delivery, keep_seconds, job_id=jid,
                      description=f"webhook of {delivery} to {host_of(url)}",
                      ttl=keep_seconds, result_ttl=keep_seconds, failure_ttl=keep_seconds,
                      retry=Retry(max=len(retry), interval=retry) if retry else None)
    return ids


def post_record(url: str, record: dict[str, Any], delivery: str, keep_seconds: int) -> int:
    """The RQ job: POST ``record`` to ``url``, signed; the HTTP status. Raises ``WebhookFailed``
    (after counting and showing the failure) so RQ retries it, or keeps it as failed after the last."""
    import requests

    job = get_current_job()
    connection = job.connection
    section = _settings
    left = job.retries_left or 0                      # retries still to come after this attempt
    attempt = len(job.retry_intervals or []) - left + 1 if job.retries_left is not None else 1
    final = left == 0
    try:
        if section is None or not section.secret:
            raise WebhookFailed("not configured: VOICEBOT_WEBHOOK_SECRET is not set in the worker")
        body = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: timestamp,
                   SIGNATURE_HEADER: sign(section.secret, timestamp, body), DELIVERY_HEADER: job.id,
                   "User-Agent": "voicebot-webhook"}
        try:
            response = requests.post(url, data=body, headers=headers, timeout=section.timeout_seconds,
                                     allow_redirects=False)
        except requests.RequestException as exc:
            raise WebhookFailed(type(exc).__name__) from None
        response.close()
        if not 200 <= response.status_code < 300:
            raise WebhookFailed(f"HTTP {response.status_code}")
    except WebhookFailed as exc:
        _failed(connection, job.id, record, url, attempt, str(exc), final, keep_seconds)
        raise
    _delivered(connection, job.id)
    log.info("webhook %s delivered to %s (attempt %d)", delivery, host_of(url), attempt)
    return response.status_code


_FAILED = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
local function drop(members)
  for _, member in ipairs(members) do
    redis.call('HDEL', KEYS[1], member)
    redis.call('ZREM', KEYS[2], member)
  end
end
drop(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. (tonumber(ARGV[3]) - tonumber(ARGV[4]))))
local extra = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[5])
if extra > 0 then drop(redis.call('ZRANGE', KEYS[2], 0, extra - 1)) end
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('HINCRBY', KEYS[3], 'failed_attempts', 1)
if ARGV[6] == '1' then redis.call('HINCRBY', KEYS[3], 'given_up', 1) end
return 1
"""
"""KEYS: failures hash, its order (scores: unix seconds), stats. ARGV: job id, the entry as JSON,
now, seconds to keep, most entries, '1' when it was the last attempt."""


def _failed(connection: redis.Redis, jid: str, record: dict[str, Any], url: str, attempt: int, error: str,
            final: bool, keep_seconds: int) -> None:
    entry = {"job": jid, "call_id": str(record.get("call_id", "")), "queue": str(record.get("queue", "")),
             "host": host_of(url), "attempts": attempt, "last_error": error, "final": final,
             "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    level = logging.ERROR if final else logging.WARNING
    log.log(level, "webhook %s to %s failed (attempt %d: %s)%s", jid, entry["host"], attempt, error,
            "; given up: it stays in RQ's failed registry" if final else "; it will be retried")
    connection.eval(_FAILED, 3, FAILURES_KEY, FAILURES_ORDER_KEY, STATS_KEY, jid, json.dumps(entry),
                    int(time.time()), int(keep_seconds), MAX_FAILURES, "1" if final else "0")


def _delivered(connection: redis.Redis, jid: str) -> None:
    pipe = connection.pipeline()
    pipe.hdel(FAILURES_KEY, jid)
    pipe.zrem(FAILURES_ORDER_KEY, jid)
    pipe.hincrby(STATS_KEY, "delivered", 1)
    pipe.execute()


def failures(connection: redis.Redis) -> list[dict[str, Any]]:
    """The deliveries failing now or given up (newest first), for the desk: no personal data."""
    entries = [json.loads(raw) for raw in connection.hvals(FAILURES_KEY)]
    return sorted(entries, key=lambda e: e.get("at", ""), reverse=True)
