"""Prometheus metrics for ``GET /metrics``: where calls go, how fast the bot answers, where callers fail.

One registry per app (not the global one), so several apps in one process (the tests) do not
collide. The figures the worker measures (the handoff delay, CRM webhooks) come from Redis at
each scrape (handoff/stats.py). Latency buckets are tight around the goals: a reply within 450 ms of the end of speech
(p50), 700 ms (p95).
"""

from __future__ import annotations

import redis
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from voicebot.handoff.stats import SharedHandoffCollector

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.3, 0.45, 0.7, 1.0, 2.0, 5.0)


class Metrics:
    def __init__(self, shared: redis.Redis | None = None) -> None:
        """``shared``: the Redis the worker writes its figures to (handoff delay, CRM webhooks),
        read at each scrape (handoff/stats.py); None leaves them out."""
        self.registry = CollectorRegistry()
        r = self.registry
        r.register(SharedHandoffCollector(shared))
        self.active_calls = Gauge("voicebot_active_calls", "Calls with a live media stream", registry=r)
        self.calls = Counter("voicebot_calls_total", "Incoming calls answered", registry=r)
        self.turns = Counter("voicebot_turns_total", "Caller turns handed to the dialog engine", registry=r)
        self.recognition = Histogram(
            "voicebot_recognition_seconds",
            "From the audio frame that ended an utterance reaching the server to the final result",
            buckets=LATENCY_BUCKETS, registry=r)
        self.response = Histogram(
            "voicebot_response_seconds",
            "From the endpoint decision (or the last key) to the first bot audio sent",
            buckets=LATENCY_BUCKETS, registry=r)
        self.transfers = Counter("voicebot_transfers_total", "Calls handed to a person, by reason", ["reason"],
                                 registry=r)
        self.barge_ins = Counter("voicebot_barge_ins_total", "Prompts the caller interrupted", registry=r)
        self.bad_messages = Counter("voicebot_bad_stream_messages_total", "Stream messages refused, by kind",
                                    ["kind"], registry=r)
        self.refused = Counter("voicebot_refused_requests_total", "Requests with a bad or missing Twilio signature",
                               registry=r)
        self.refused_streams = Counter("voicebot_refused_streams_total",
                                       "Media streams refused at 'start': bad_token, wrong_account, already_live, full",
                                       ["kind"], registry=r)
        self.closed_sockets = Counter("voicebot_closed_sockets_total",
                                      "Media sockets the server closed or refused (no_start, silent, too_many_pending)",
                                      ["reason"], registry=r)
        self.over_capacity = Counter("voicebot_calls_over_capacity_total",
                                     "Calls answered while telephony.max_calls streams were live: sent to the queue",
                                     registry=r)
        self.flow_reloads = Counter("voicebot_flow_reloads_total",
                                    "Changed flow files while running: loaded (new calls get the new version), "
                                    "rejected (broken: the running version stays)", ["result"], registry=r)
        self.flow_version = Gauge("voicebot_flow_version_info",
                                  "1 for the version (content hash) of each flow that new calls get",
                                  ["flow", "version"], registry=r)
        self.replays = Counter("voicebot_replayed_webhooks_total", "Webhooks for a call that had already finished",
                               registry=r)
        self.unreachable = Counter("voicebot_agent_unreachable_total",
                                   "Transfers no agent took: no-answer, busy, failed, canceled, after_hours",
                                   ["why"], registry=r)
        self.unreachable_choices = Counter("voicebot_unreachable_choices_total",
                                           "What callers nobody took chose: callback, text, none", ["choice"],
                                           registry=r)
        self.sms_sent = Counter("voicebot_sms_sent_total", "Text messages handed to Twilio", registry=r)
        self.sms_refused = Counter("voicebot_sms_refused_total",
                                   "Text messages not sent (country, not_e164, daily_limit)", ["reason"], registry=r)
        self.verifications = Counter("voicebot_verifications_total",
                                     "Identity checks by method and outcome (match, no_match, locked, unavailable)",
                                     ["method", "outcome"], registry=r)
        self.outbox = Counter("voicebot_handoff_outbox_total",
                              "Handoff contexts through the local outbox while Redis did not take them: put, "
                              "drained (queued later), expired (older than the call TTL), dropped (outbox full, or not storable)",
                              ["event"], registry=r)
        self.failures = Counter("voicebot_caller_failures_total", "Where callers struggled: step and kind",
                                ["flow", "step", "kind"], registry=r)
        self.records_unqueued = Counter("voicebot_records_unqueued_total",
                                        "Finished calls whose record job Redis did not take (the worker's sweep "
                                        "writes them later)", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
