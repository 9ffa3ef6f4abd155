"""Never lost, never doubled: a transfer's context under faults.

Each test has a redis-server of its own that it stops and starts, and real `voicebot worker`
processes (tests/stalling_worker.py: the first delivery stalls, so the test can kill the
work-horse in the middle of it). Delivered means what the agents' side reads: the per-call key
``voicebot:handoff:<call id>``; once means one announcement on ``voicebot:handoff``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import redis
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.scheduler import RQScheduler
from twilio.request_validator import RequestValidator

import servers
from conftest import RedisServer
from voicebot.config import SpeechSettings, load_settings
from voicebot.emulator import place_call
from voicebot.flow import load_flows
from voicebot.handoff import outbox as outbox_module
from voicebot.handoff.outbox import Outbox
from voicebot.handoff.queueing import SERIALIZER, enqueue_context, job_id
from voicebot.speech.recognizer import SpeechModels
from voicebot.telephony.runtime import Runtime
from voicebot.web import create_app

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"
DATA = TESTS / "data"
QUEUE = "handoff"
CHANNEL = "voicebot:handoff"
PUBLIC = "https://bot.example.com"
TOKEN = "faults-auth-token"
WAIT = 120.0
"""Bounded waits for what other processes do; generous, the machine may be busy."""


@pytest.fixture
def private_redis(tmp_path):
    folder = tmp_path / "redis"
    folder.mkdir()
    server = RedisServer(folder)
    server.start()
    yield server
    server.stop()


def wait_for(predicate, what: str, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout:.0f} s for {what}")
        time.sleep(0.1)


def context(call_id: str) -> dict:
    return {"call_id": call_id, "queue": "agents", "reason": "explicit_request", "summary": "meter reading",
            "transcript": [{"speaker": "caller", "text": "a person please"}]}


def delivered(connection: redis.Redis, call_id: str) -> dict | None:
    raw = connection.get(f"voicebot:handoff:{call_id}")
    return json.loads(raw) if raw else None


def announcements(pubsub, call_id: str) -> int:
    """Announcements of ``call_id`` received so far on the subscribed channel."""
    count = 0
    while (message := pubsub.get_message(timeout=1.0)) is not None:
        if message["type"] == "message" and call_id.encode() in message["data"]:
            count += 1
    return count


# -- workers -------------------------------------------------------------------------------------

def worker_config(tmp_path: Path) -> Path:
    config = tmp_path / "worker.yaml"
    config.write_text(f"queues: {{outbox: {tmp_path / 'outbox.sqlite3'}}}\n")
    return config


class WorkerProcess:
    """`voicebot worker` (tests/stalling_worker.py) in a process group of its own."""

    def __init__(self, tmp_path: Path, redis_url: str, name: str, config: Path | None = None, stall: bool = True):
        """``stall``: the first delivery of all the test's workers stalls; else the plain `voicebot worker`."""
        self.stall_file = tmp_path / "stalled-horse.pid"
        self.log = tmp_path / f"{name}.log"
        env = {**os.environ, "REDIS_URL": redis_url, "VOICEBOT_CONFIG": str(config or worker_config(tmp_path)),
               "STALL_FILE": str(self.stall_file)}
        command = [str(TESTS / "stalling_worker.py")] if stall else ["-m", "voicebot", "worker"]
        self.proc = subprocess.Popen([sys.executable, *command], env=env, cwd=tmp_path,
                                     stdout=self.log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)

    def stalled_horse(self) -> int:
        """The pid of the work-horse caught in the middle of the first delivery."""
        def pid():
            if self.proc.poll() is not None:
                pytest.fail(f"the worker ended:\n{self.output()[-3000:]}")
            text = self.stall_file.read_text().strip() if self.stall_file.exists() else ""
            return int(text) if text.isdigit() else None
        return wait_for(pid, "a delivery to stall")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def kill(self) -> None:
        """SIGKILL to the worker and its scheduler (the work-horse has a process group of its own)."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_a_work_horse_killed_mid_delivery_is_retried_and_delivers_once(tmp_path, private_redis):
    connection = redis.Redis.from_url(private_redis.url)
    pubsub = connection.pubsub()
    pubsub.subscribe(CHANNEL)
    enqueue_context(connection, QUEUE, context("CA-horse"))
    worker = WorkerProcess(tmp_path, private_redis.url, "worker")
    horse = None
    try:
        horse = worker.stalled_horse()
        os.kill(horse, signal.SIGKILL)
        wait_for(lambda: delivered(connection, "CA-horse"), "the retried delivery")
        job = Job.fetch(job_id("CA-horse"), connection=connection, serializer=SERIALIZER)
        wait_for(lambda: job.get_status(refresh=True) == JobStatus.FINISHED, "the job to finish")
    finally:
        if horse:
            kill(horse)
        worker.stop()
    assert "Work-horse terminated unexpectedly" in worker.output()
    assert delivered(connection, "CA-horse")["summary"] == "meter reading"
    assert announcements(pubsub, "CA-horse") == 1
    assert FailedJobRegistry(QUEUE, connection=connection).count == 0


def test_a_worker_killed_whole_leaves_its_job_to_the_next_worker(tmp_path, private_redis):
    connection = redis.Redis.from_url(private_redis.url)
    pubsub = connection.pubsub()
    pubsub.subscribe(CHANNEL)
    enqueue_context(connection, QUEUE, context("CA-whole"))
    first = WorkerProcess(tmp_path, private_redis.url, "first")
    try:
        horse = first.stalled_horse()
    finally:
        first.kill()              # the worker first: it would otherwise fail the job itself when the horse dies
    kill(horse)
    job = Job.fetch(job_id("CA-whole"), connection=connection, serializer=SERIALIZER)
    assert job.get_status(refresh=True) == JobStatus.STARTED     # nobody left to say it failed
    # What time does for a dead worker: its heartbeat in the registry of started jobs runs out
    # (after about 90 s) and so does its scheduler's lock (61 s).
    started = StartedJobRegistry(QUEUE, connection=connection)
    for member in connection.zrange(started.key, 0, -1):
        connection.zadd(started.key, {member: 1})
    connection.delete(RQScheduler.get_locking_key(QUEUE))
    second = WorkerProcess(tmp_path, private_redis.url, "second")
    try:
        wait_for(lambda: delivered(connection, "CA-whole"), "the abandoned job's delivery by the next worker")
        wait_for(lambda: job.get_status(refresh=True) == JobStatus.FINISHED, "the job to finish")
    finally:
        second.stop()
    assert announcements(pubsub, "CA-whole") == 1
    assert FailedJobRegistry(QUEUE, connection=connection).count == 0


# -- the web process -------------------------------------------------------------------------------

def test_a_live_call_with_redis_down_is_transferred_and_its_context_delivered_when_redis_returns(
        tmp_path, private_redis):
    server = servers.Server(tmp_path, private_redis.url, "serve")      # its outbox: tmp_path/data/
    outbox = Outbox(tmp_path / "data" / "outbox.sqlite3", 86400, 1000)
    worker = None
    try:
        private_redis.stop()
        report = place_call(server.url, [{"dtmf": "0"}], auth_token=servers.TOKEN, account_sid=servers.ACCOUNT,
                            voice="ko", max_seconds=60)
        assert not report.timed_out, report.events
        assert report.transfer and report.transfer["target"] == servers.AGENT
        wait_for(lambda: outbox.pending() == 1, "the context in the outbox")
        assert oct(outbox.path.stat().st_mode & 0o777) == oct(0o600)
        assert server.metric('voicebot_handoff_outbox_total{event="put"}') == 1

        private_redis.start()                      # back, and empty
        worker = WorkerProcess(tmp_path, private_redis.url, "worker", config=tmp_path / "serve.yaml", stall=False)
        connection = redis.Redis.from_url(private_redis.url)
        context = wait_for(lambda: delivered(connection, report.call_sid), "the context delivered")
        assert context["reason"] == "explicit_request" and context["summary"]
        wait_for(lambda: outbox.pending() == 0, "the outbox to empty")
    finally:
        if worker is not None:
            worker.stop()
        server.stop()


def web_runtime(tmp_path: Path, redis_url: str) -> Runtime:
    """A runtime on the Korean test flow, without speech models (nothing here listens)."""
    settings = load_settings(REPO / "config.yaml", environ={
        "REDIS_URL": redis_url, "PUBLIC_URL": PUBLIC, "TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_ACCOUNT_SID": "AC1"})
    settings = dataclasses.replace(settings, flows_dir=DATA, default_flow="ko_test",
                                   outbox_path=tmp_path / "data" / "outbox.sqlite3",
                                   prompts=dataclasses.replace(settings.prompts, cache_dir=tmp_path / "cache"))
    no_models = SpeechModels(SpeechSettings(models_dir=tmp_path, models={"ko": str(tmp_path / "none")}))
    return Runtime(settings, flows={"ko_test": load_flows(DATA)["ko_test"]}, models=no_models)


def outbox_events(rt: Runtime, event: str) -> float:
    return rt.metrics.registry.get_sample_value("voicebot_handoff_outbox_total", {"event": event}) or 0.0


def test_redis_down_at_the_transfer_the_web_process_keeps_the_context_and_queues_it_later(
        tmp_path, private_redis, monkeypatch):
    monkeypatch.setattr(outbox_module, "DRAIN_SECONDS", 0.2)
    rt = web_runtime(tmp_path, private_redis.url)
    try:
        private_redis.stop()
        rt.enqueue_handoff(context("CA-down"))
        wait_for(lambda: rt.outbox.pending() == 1, "the context in the outbox")
        assert outbox_events(rt, "put") == 1
        assert oct(rt.outbox.path.stat().st_mode & 0o777) == oct(0o600)
        private_redis.start()                      # back, and empty
        connection = redis.Redis.from_url(private_redis.url)
        wait_for(lambda: Job.exists(job_id("CA-down"), connection), "the outbox's context queued again")
        wait_for(lambda: rt.outbox.pending() == 0, "the outbox to empty")
        assert outbox_events(rt, "drained") == 1
        assert Job.fetch(job_id("CA-down"), connection=connection, serializer=SERIALIZER).args[0]["call_id"] == "CA-down"
    finally:
        rt.close()


def after_stream(client, call_sid: str):
    params = {"CallSid": call_sid, "AccountSid": "AC1", "From": "+821012345678", "To": "+82200000000",
              "CallStatus": "in-progress"}
    signature = RequestValidator(TOKEN).compute_signature(PUBLIC + "/twilio/after-stream", params)
    return client.post("/twilio/after-stream", data=params, headers={"X-Twilio-Signature": signature})


def test_after_stream_queues_the_context_again_when_redis_lost_it(tmp_path, private_redis):
    rt = web_runtime(tmp_path, private_redis.url)
    connection = redis.Redis.from_url(private_redis.url)
    client = create_app(rt.settings, runtime=rt).test_client()
    for call_sid in ("CA-lost", "CA-there"):
        rt.store.update(call_sid, flow="ko_test", language="ko", ending={
            "action": "transfer", "queue": "agents", "reason": "explicit_request", "context": context(call_sid)})
    connection.set("voicebot:handoff:CA-there", json.dumps(context("CA-there")))   # delivered before
    try:
        for call_sid in ("CA-lost", "CA-there"):
            response = after_stream(client, call_sid)
            assert response.status_code == 200 and ET.fromstring(response.data).find("Enqueue").text == "agents"
    finally:
        rt.close()                                  # waits for the handoffs under way
    assert Job.fetch(job_id("CA-lost"), connection=connection, serializer=SERIALIZER).args[0]["call_id"] == "CA-lost"
    assert not Job.exists(job_id("CA-there"), connection)
