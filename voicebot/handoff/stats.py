"""Handoff figures the worker measures and the web process shows on ``/metrics``, kept in Redis.

The worker is a process of its own (and its jobs run in forked work-horses that live for one
job), so it cannot add to the web process's Prometheus registry; it writes to Redis instead, and
``/metrics`` reads Redis when it is scraped (``SharedHandoffCollector``):

- ``voicebot_handoff_delay_seconds`` (histogram): from the transfer decision (the enqueue: the
  ``enqueued_at`` of the job's meta, set once when the record is first enqueued) to the record
  being readable by an agent (its stream entry written by ``deliver``). Kept in the hash
  ``voicebot:handoff:delay``: one count per bucket, ``count`` and ``sum``. Both times are the
  machines' wall clocks: keep the web and worker hosts' clocks in sync (NTP).
- ``voicebot_webhook_delivered_total``, ``voicebot_webhook_failed_attempts_total``,
  ``voicebot_webhook_given_up_total`` (counters) from ``voicebot:webhook:stats``, and
  ``voicebot_webhook_failing`` (gauge): the deliveries in ``voicebot:webhook:failures``
  (handoff/webhooks.py).

These are figures for the whole installation, the same on every node: aggregate them with
``max``, not ``sum``, when several nodes are scraped. Redis restarting resets them, which
Prometheus reads as a counter reset. A Redis that does not answer a scrape leaves these series
out of that scrape; the others are unaffected.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Iterator

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from voicebot.handoff.webhooks import FAILURES_KEY, STATS_KEY

log = logging.getLogger("voicebot.handoff")

DELAY_KEY = "voicebot:handoff:delay"
DELAY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
"""Seconds; tight below one second, the goal for the 95th percentile."""


def _bucket(seconds: float) -> str:
    for bound in DELAY_BUCKETS:
        if seconds <= bound:
            return repr(bound)
    return "+Inf"


def observe_delay(connection: redis.Redis, seconds: float) -> None:
    """Count one transfer's delay (negative, from clocks apart, counts as 0)."""
    seconds = max(0.0, float(seconds))
    pipe = connection.pipeline()
    pipe.hincrby(DELAY_KEY, f"le:{_bucket(seconds)}", 1)
    pipe.hincrby(DELAY_KEY, "count", 1)
    pipe.hincrbyfloat(DELAY_KEY, "sum", seconds)
    pipe.execute()


def _number(raw: dict[bytes, bytes], name: str) -> float:
    value = raw.get(name.encode())
    return float(value) if value is not None else 0.0


class SharedHandoffCollector:
    """A Prometheus collector that reads the worker's figures from Redis at each scrape."""

    def __init__(self, connection: redis.Redis | None):
        self._redis = connection

    def describe(self) -> list[Any]:
        return []       # read at scrape time only: registering must not touch Redis

    def collect(self) -> Iterator[Any]:
        if self._redis is None:
            return
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.hgetall(DELAY_KEY)
            pipe.hgetall(STATS_KEY)
            pipe.hlen(FAILURES_KEY)
            delay, stats, failing = pipe.execute()
        except (redis.RedisError, OSError) as exc:
            log.warning("handoff figures not read from Redis for /metrics: %s", exc)
            return
        cumulative, buckets = 0.0, []
        for bound in (*DELAY_BUCKETS, math.inf):
            cumulative += _number(delay, f"le:{'+Inf' if bound == math.inf else repr(bound)}")
            buckets.append(("+Inf" if bound == math.inf else repr(bound), cumulative))
        yield HistogramMetricFamily(
            "voicebot_handoff_delay_seconds",
            "From the transfer decision (enqueue) to the record readable by agents (delivered), measured by the worker",
            buckets=buckets, sum_value=_number(delay, "sum"))
        for name, field, text in (
                ("voicebot_webhook_delivered", "delivered", "CRM webhook POSTs answered with 2xx"),
                ("voicebot_webhook_failed_attempts", "failed_attempts", "CRM webhook POSTs that failed (each attempt)"),
                ("voicebot_webhook_given_up", "given_up", "CRM webhook deliveries that failed their last attempt")):
            counter = CounterMetricFamily(name, text)
            counter.add_metric([], _number(stats, field))
            yield counter
        yield GaugeMetricFamily("voicebot_webhook_failing",
                                "CRM webhook deliveries failing or given up now (voicebot:webhook:failures)",
                                value=float(failing))
