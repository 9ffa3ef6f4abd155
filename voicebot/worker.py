"""The RQ worker that runs warm-transfer (handoff) jobs, apart from the web process.

Handoff work (building the agent's context, talking to the agents' side) is slow and may fail;
keeping it in its own process means a stuck handoff never holds up a thread serving a live call.
It reads the queue with the JSON serializer the web process writes it with
(``handoff.queueing.handoff_queue``), and runs RQ's scheduler too: a failed delivery is retried
after a pause, and it is the scheduler that puts it back on the queue when the pause is over.

Nothing handed to the worker is lost:

- A job whose work-horse dies (SIGKILL, out of memory) is failed by the worker at once and, with
  the retries the job was queued with, scheduled again: the worker runs RQ's scheduler, which
  moves a retry whose back-off has passed back onto the queue.
- A job whose whole worker died stays "started" until the dead worker's heartbeat runs out
  (about 90 s); RQ's maintenance then retries it. The worker runs maintenance when it starts and
  every ``MAINTENANCE_SECONDS`` (RQ's default is ten minutes, and an idle worker only gets to it
  between its blocking waits, hence the shorter ``WORKER_TTL``).
- Contexts a web process could not queue (Redis was away) wait in the outbox: the worker queues
  them before it starts working and every few seconds while it runs (voicebot/handoff/outbox.py).

It reads the CRM webhook queue (``<queues.handoff>-webhooks``) after the handoff queue, so agents'
cards go first, and the call records queue (``records.queue``) last: a finished call's record can
wait, a caller on hold cannot. More than one worker process may run (each takes whichever job
comes next).

Call records are written only here (``voicebot/records/jobs.py``). At start the worker creates or
migrates the records database; a thread then purges records past their retention once a day and
sweeps the call store every few minutes for finished calls no job wrote
(``voicebot/records/upkeep.py``). A records database that does not answer never stops the worker:
handoffs go on, and the records wait in Redis.
"""

from __future__ import annotations

import functools
import signal
import sys

import redis
from rq import Worker

from voicebot.config import Settings
from voicebot.handoff.outbox import Drainer, Outbox, enqueue_or_known
from voicebot.handoff.queueing import SERIALIZER, handoff_queue
from voicebot.handoff.webhooks import configure as configure_webhooks
from voicebot.handoff.webhooks import queue_name as webhook_queue
from voicebot.records.jobs import configure as configure_records
from voicebot.records.queueing import records_queue
from voicebot.records.upkeep import Upkeep
from voicebot.redis_clients import ping, redis_client, shown_url

MAINTENANCE_SECONDS = 30
"""How often RQ's maintenance looks for jobs of dead workers (it retries them)."""
WORKER_TTL = 45
"""The worker's heartbeat; an idle worker blocks on the queue for 15 s less, then may run maintenance."""


def _fail(url: str, reason: str) -> int:
    print(
        f"voicebot worker: cannot reach Redis at {shown_url(url)}: {reason}\n"
        "Start redis-server (`make run` does) or set REDIS_URL to a Redis that is running.",
        file=sys.stderr,
    )
    return 1


def run_worker(settings: Settings, burst: bool = False) -> int:
    """Process handoff and call record jobs until stopped (or, with ``burst``, until the queues are empty).

    Returns an exit code instead of raising, so a missing Redis is one readable line for
    `voicebot worker` rather than a traceback. Uses RQ's forking ``Worker``: each job runs in a
    child process, so a job that crashes or leaks cannot take the worker down with it. With
    ``burst``, retries whose pause is over when it starts are run too; later ones wait for the
    next worker.
    """
    hooks = settings.webhooks
    if any(hooks.urls.values()) and not hooks.secret:
        print("voicebot worker: webhooks.urls is set in config.yaml but VOICEBOT_WEBHOOK_SECRET is not: "
              "CRM webhooks are signed with it. Set it (the receivers check with the same secret).",
              file=sys.stderr)
        return 1
    configure_webhooks(hooks)       # the forked work-horses inherit it
    configure_records(settings)     # and this
    url = settings.redis_url
    reason = ping(url, "startup")
    if reason is not None:
        return _fail(url, reason)

    connection = redis_client(url, "queue")
    enqueue_connection = redis_client(url, "enqueue")
    outbox = Outbox(settings.outbox_path, settings.call_ttl_seconds, settings.outbox_max_entries)
    enqueue = functools.partial(enqueue_or_known, enqueue_connection, settings.handoff_queue,
                                keep_seconds=settings.call_ttl_seconds)
    drainer = Drainer(outbox, enqueue, keep_going=True, name="voicebot-worker-outbox")
    upkeep = Upkeep(settings, enqueue_connection)
    # RQ installs its own SIGINT/SIGTERM handlers for a warm shutdown; put the caller's back
    # afterwards so an in-process caller (the tests) is left as it was.
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        outbox.drain(enqueue, limit=settings.outbox_max_entries)
        upkeep.prepare()
        if burst:
            upkeep.round()
        else:
            drainer.kick()
            upkeep.start()
        queues = [handoff_queue(connection, settings.handoff_queue),     # cards first, then CRM webhooks,
                  handoff_queue(connection, webhook_queue(settings.handoff_queue)),     # then call records
                  records_queue(connection, settings.records.queue)]
        worker = Worker(queues, connection=connection, serializer=SERIALIZER,
                        maintenance_interval=MAINTENANCE_SECONDS, worker_ttl=WORKER_TTL)
        worker.work(burst=burst, with_scheduler=True)
    except redis.ConnectionError as exc:
        # Redis went away between the probe and the worker's start-up; inside its loop RQ logs
        # and stops by itself.
        return _fail(url, str(exc))
    finally:
        drainer.stop()
        upkeep.stop()
        for sig, handler in saved.items():
            if handler is not None:
                signal.signal(sig, handler)
        connection.close()
        enqueue_connection.close()
    return 0
