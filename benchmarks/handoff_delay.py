"""The time from the transfer decision to the handoff record being readable by an agent, with the worker running.

    python benchmarks/handoff_delay.py [--calls 20] [--parallel 4]

Starts its own redis-server, `voicebot serve` (gunicorn, the Korean test flow tests/data/ko.yaml,
an agent number to dial) and `voicebot worker`, then places N emulated phone calls, ``--parallel``
at a time, each in its own process: the caller presses 0 during the opening, the bot says it
transfers, and the after-stream TwiML dials the agent with the whisper. The delay of each call is
what the worker measured: from the job's ``enqueued_at`` (set when the web process enqueued the
record, the moment of the transfer decision) to the record written to the queue's stream
(``delivered_at``), read back from the job's meta; the server's ``voicebot_handoff_delay_seconds``
histogram (on /metrics, read from Redis) must count the same calls. Prints p50, p95 and the
largest delay in a table; the goal is p95 under one second.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TOKEN = "handoff-delay-token"
SALT = "handoff-delay-salt-" + "8" * 32
AGENT = "+31201234567"
SCRIPT = [{"dtmf": "0"}]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} did not happen within {seconds:g} s")
        time.sleep(0.2)


def start(tmp: Path) -> tuple[list[subprocess.Popen], str, str]:
    """redis-server, `voicebot serve` and `voicebot worker`; the server's URL and the Redis URL."""
    import redis

    rport, port = free_port(), free_port()
    redis_url = f"redis://127.0.0.1:{rport}/0"
    procs = [subprocess.Popen([shutil.which("redis-server"), "--port", str(rport), "--bind", "127.0.0.1",
                               "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)]

    def redis_up() -> bool:
        try:
            return bool(redis.Redis.from_url(redis_url, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    wait_until(redis_up, 10, "redis-server answering")
    config = tmp / "config.yaml"
    config.write_text(f"flows: {{dir: {REPO / 'tests' / 'data'}, default: ko_test}}\n"
                      f"prompts: {{cache_dir: {tmp / 'cache'}}}\n"
                      f"telephony: {{agent_number: '{AGENT}'}}\n")
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "VOICEBOT_CONFIG": str(config), "REDIS_URL": redis_url, "TWILIO_AUTH_TOKEN": TOKEN,
           "PUBLIC_URL": url, "VOICEBOT_HASH_SALT": SALT}
    for name, args in (("server", ["serve", "--port", str(port)]), ("worker", ["worker"])):
        procs.append(subprocess.Popen([sys.executable, "-m", "voicebot", *args], env=env,
                                      stdout=(tmp / f"{name}.log").open("wb"), stderr=subprocess.STDOUT,
                                      start_new_session=True))

    def ready() -> bool:
        try:
            return json.loads(urllib.request.urlopen(url + "/healthz", timeout=1).read()).get("ready") is True
        except (OSError, ValueError):
            return False

    wait_until(ready, 300, "voicebot serve becoming ready")
    return procs, url, redis_url


def one_call(args: tuple[str, str, int]) -> tuple[str, str]:
    """Place one call that transfers; its call SID and what happened to it."""
    from voicebot.emulator import place_call
    from voicebot.emulator.signing import new_sid

    url, _redis_url, seed = args
    time.sleep(seed * 0.05)
    call_sid = new_sid("CA")
    report = place_call(url, SCRIPT, auth_token=TOKEN, voice="ko", max_seconds=60, call_sid=call_sid,
                        out=open(os.devnull, "w"))
    transfer = report.transfer or {}
    return call_sid, f"{transfer.get('kind')} {transfer.get('target')}" if transfer else "no transfer"


def job_meta(client, call_sid: str) -> dict:
    raw = client.hget(f"rq:job:handoff-{call_sid}", "meta")
    if not raw:
        return {}
    try:
        return json.loads(zlib.decompress(raw))
    except zlib.error:
        return json.loads(raw)


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def histogram_count(url: str) -> float:
    text = urllib.request.urlopen(url + "/metrics", timeout=5).read().decode()
    match = re.search(r"^voicebot_handoff_delay_seconds_count (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def main() -> None:
    import redis

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20, help="calls to place")
    parser.add_argument("--parallel", type=int, default=4, help="calls at once")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="voicebot-handoff-"))
    procs, url, redis_url = start(tmp)
    client = redis.Redis.from_url(redis_url)
    try:
        one_call((url, redis_url, 0))           # the first call renders and loads what it needs: not measured
        counted_before = histogram_count(url)
        started = time.monotonic()
        with multiprocessing.get_context("fork").Pool(args.parallel) as pool:
            results = pool.map(one_call, [(url, redis_url, i % args.parallel) for i in range(args.calls)])
        wall = time.monotonic() - started
        transferred = [sid for sid, what in results if what.startswith("number")]
        delays: list[float] = []

        def delivered() -> bool:
            delays[:] = [m["delay_seconds"] for m in (job_meta(client, sid) for sid in transferred)
                         if "delay_seconds" in m]
            return len(delays) == len(transferred)

        wait_until(delivered, 60, "every transferred call's record delivered")
        counted = histogram_count(url) - counted_before
        print(f"\nmachine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; server: gunicorn gthread, "
              f"1 worker; one `voicebot worker`; flow tests/data/ko.yaml; {args.calls} calls, "
              f"{args.parallel} at a time, {wall:.0f} s\n")
        print("| calls transferred | decision to record readable p50 | p95 | max | counted on /metrics |")
        print("|---|---|---|---|---|")
        print(f"| {len(transferred)} of {args.calls} | {pct(delays, 0.5) * 1000:.0f} ms | "
              f"{pct(delays, 0.95) * 1000:.0f} ms | {max(delays) * 1000:.0f} ms | {counted:.0f} |")
        goal = "met" if pct(delays, 0.95) < 1.0 else "NOT met"
        print(f"\ngoal p95 under 1 s: {goal}")
    finally:
        client.close()
        for proc in reversed(procs):
            if proc is procs[0]:
                proc.terminate()                # redis-server: its own process only
            else:
                os.killpg(proc.pid, signal.SIGTERM)   # voicebot serve / worker and their children
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    main()
