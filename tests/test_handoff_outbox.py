"""The handoff outbox on its own: what it keeps, for how long, how much, and that it hands each
context over once, only after Redis took it. A real SQLite file, a real Redis and real RQ jobs."""

from __future__ import annotations

import stat
import time
import uuid
from collections import Counter

import pytest
import redis
from rq.job import Job

from voicebot.handoff import outbox as outbox_module
from voicebot.handoff.outbox import Drainer, Outbox, enqueue_or_known
from voicebot.handoff.queueing import SERIALIZER, job_id

TTL = 3600
WAIT = 30.0


def context(call_id: str, **extra) -> dict:
    return {"call_id": call_id, "queue": "agents", "summary": "meter reading", "transcript": [], **extra}


class Events(Counter):
    def __call__(self, event: str, n: int) -> None:
        self[event] += n


@pytest.fixture
def events():
    return Events()


@pytest.fixture
def box(tmp_path, events):
    return Outbox(tmp_path / "data" / "outbox.sqlite3", TTL, max_entries=3, on_event=events)


def refused(_context):
    raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")


def test_a_context_leaves_only_once_redis_has_taken_it(box, events, redis_url):
    box.put(context("CA-o1"))
    box.put(context("CA-o2"))
    assert box.drain(refused) == 0 and box.pending() == 2

    queue = f"test-{uuid.uuid4().hex}"
    connection = redis.Redis.from_url(redis_url)
    assert box.drain(lambda c: enqueue_or_known(connection, queue, c)) == 2
    assert box.pending() == 0
    for call_id in ("CA-o1", "CA-o2"):
        job = Job.fetch(job_id(call_id), connection=connection, serializer=SERIALIZER)
        assert job.origin == queue and job.args[0]["call_id"] == call_id
    assert events == {"put": 2, "drained": 2}


def test_the_file_and_its_folder_are_private(box):
    box.put(context("CA-o4"))
    assert stat.S_IMODE(box.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(box.path.parent.stat().st_mode) == 0o700
    for companion in (box.path.with_name(box.path.name + "-wal"), box.path.with_name(box.path.name + "-shm")):
        if companion.exists():
            assert stat.S_IMODE(companion.stat().st_mode) == 0o600


def test_a_file_made_readable_by_others_is_made_private_again(box):
    box.put(context("CA-o5"))
    box.path.chmod(0o644)
    assert box.pending() == 1
    assert stat.S_IMODE(box.path.stat().st_mode) == 0o600


def test_one_entry_per_call(box, events):
    assert box.put(context("CA-o6"))
    assert box.put(context("CA-o6", summary="again"))
    assert box.pending() == 1 and events["put"] == 1
    taken = []
    box.drain(taken.append)
    assert [c["summary"] for c in taken] == ["meter reading"]


def test_entries_expire_with_the_call_and_leave_nothing_behind(box, events, monkeypatch):
    now = time.time()
    monkeypatch.setattr(outbox_module, "clock", lambda: now)
    box.put(context("CA-o7", postcode="1234AB-outbox-secret"))
    assert b"1234AB-outbox-secret" in box.path.read_bytes() + _wal(box)
    now += TTL + 1
    taken = []
    assert box.drain(taken.append) == 0 and not taken
    assert box.pending() == 0 and events["expired"] == 1
    assert b"1234AB-outbox-secret" not in box.path.read_bytes() + _wal(box)


def _wal(box) -> bytes:
    wal = box.path.with_name(box.path.name + "-wal")
    return wal.read_bytes() if wal.exists() else b""


def test_a_full_outbox_drops_the_oldest_and_says_so(box, events, caplog, monkeypatch):
    now = time.time()
    monkeypatch.setattr(outbox_module, "clock", lambda: now)
    with caplog.at_level("ERROR", logger="voicebot.outbox"):
        for i in range(4):
            now += 1
            assert box.put(context(f"CA-full{i}"))
    taken = []
    box.drain(taken.append)
    assert [c["call_id"] for c in taken] == ["CA-full1", "CA-full2", "CA-full3"]
    assert events["dropped"] == 1
    assert "dropped unsent, calls CA-full0" in caplog.text


def test_what_cannot_be_kept_is_refused_and_counted(box, events):
    assert not box.put({"summary": "no call id"})
    assert not box.put(context("CA-big", transcript=["x" * outbox_module.MAX_CONTEXT_BYTES]))
    assert box.pending() == 0 and events["dropped"] == 2


def test_two_drainers_never_take_the_same_entry(box):
    box.put(context("CA-o8"))
    other_took = []

    def enqueue_while_another_drains(ctx):
        other_took.append(box.drain(lambda c: pytest.fail("taken twice")))

    assert box.drain(enqueue_while_another_drains) == 1
    assert other_took == [0]


def test_an_entry_a_dead_drainer_held_is_free_again_after_its_lease(box, monkeypatch):
    now = time.time()
    monkeypatch.setattr(outbox_module, "clock", lambda: now)
    box.put(context("CA-o9"))

    class Died(BaseException):
        pass

    def die(_ctx):
        raise Died

    with pytest.raises(Died):
        box.drain(die)
    assert box.drain(lambda c: pytest.fail("taken while leased")) == 0
    now += outbox_module.LEASE_SECONDS + 1
    taken = []
    assert box.drain(taken.append) == 1 and taken[0]["call_id"] == "CA-o9"


def test_an_entry_that_fails_for_another_reason_does_not_hold_up_the_rest(box):
    box.put(context("CA-bad"))
    box.put(context("CA-good"))
    taken = []

    def enqueue(ctx):
        if ctx["call_id"] == "CA-bad":
            raise TypeError("not serialisable")
        taken.append(ctx["call_id"])

    assert box.drain(enqueue) == 1 and taken == ["CA-good"] and box.pending() == 1


def test_the_drain_thread_runs_only_while_the_outbox_holds_something(box):
    attempts = []

    def enqueue(ctx):
        attempts.append(ctx["call_id"])
        if len(attempts) < 3:          # Redis is away for the first two tries
            refused(ctx)

    drainer = Drainer(box, enqueue, interval=0.05)
    box.put(context("CA-o10"))
    drainer.kick()
    deadline = time.monotonic() + WAIT
    while drainer.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not drainer.running and attempts == ["CA-o10"] * 3 and box.pending() == 0
    drainer.stop()
    box.put(context("CA-o11"))
    drainer.kick()
    assert not drainer.running and box.pending() == 1      # stopped for good: the entry waits for another process
