"""N emulated phone calls at once against one voicebot server, in real time.

    python benchmarks/call_load.py [--calls 1,2,4,8,16] [--rounds 1]

Starts its own redis-server and `voicebot serve` (gunicorn, the Korean test flow
tests/data/ko.yaml and the real Korean model), then for each N places N calls at once with the
Twilio emulator (each in its own process, so the callers do not compete for one GIL). Every call
answers by voice over the opening (barge-in), keys in a number, confirms by voice and is hung up
by the bot: two recognised utterances and one key entry per call. Prints for each N:

- (a) last caller frame to first bot audio frame, p50/p95, as the emulator sees it: the end of
  the caller's audio includes espeak-ng's own trailing silence, so this is the caller's wait;
- (b) endpoint decision (or last key) to first bot audio frame sent, p50/p95, from the server's
  `voicebot_response_seconds` histogram (interpolated within buckets, as Prometheus does);
- server CPU per call (share of one core) and resident memory;
- and the largest N that keeps (b) p95 under 50 ms.
"""

from __future__ import annotations

import argparse
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
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TOKEN = "load-test-token"
SALT = "load-test-hash-salt-" + "7" * 32
SCRIPT = [{"say": "예약", "barge_in": 1.0}, {"dtmf": "123#"}, {"say": "네"}]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(tmp: Path) -> tuple[subprocess.Popen, subprocess.Popen, str]:
    rport, port = free_port(), free_port()
    redis_proc = subprocess.Popen([shutil.which("redis-server"), "--port", str(rport), "--bind", "127.0.0.1",
                                   "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    config = tmp / "config.yaml"
    config.write_text(f"flows: {{dir: {REPO / 'tests' / 'data'}, default: ko_test}}\n"
                      f"prompts: {{cache_dir: {tmp / 'cache'}}}\n")
    env = {**os.environ, "VOICEBOT_CONFIG": str(config), "REDIS_URL": f"redis://127.0.0.1:{rport}/0",
           "TWILIO_AUTH_TOKEN": TOKEN, "PUBLIC_URL": f"http://127.0.0.1:{port}", "VOICEBOT_HASH_SALT": SALT}
    server = subprocess.Popen([sys.executable, "-m", "voicebot", "serve", "--port", str(port)], env=env,
                              stdout=(tmp / "server.log").open("wb"), stderr=subprocess.STDOUT,
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(url + "/healthz", timeout=1)
            break
        except OSError:
            time.sleep(0.2)
    return redis_proc, server, url


def worker_pid(server: subprocess.Popen) -> int:
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
    return int(children[0]) if children else server.pid


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def histogram(url: str, name: str) -> list[tuple[float, float]]:
    text = urllib.request.urlopen(url + "/metrics").read().decode()
    buckets = []
    for match in re.finditer(rf'^{name}_bucket{{le="([^"]+)"}} (\S+)$', text, re.M):
        buckets.append((float(match.group(1)), float(match.group(2))))
    return buckets


def quantile(q: float, before: list[tuple[float, float]], after: list[tuple[float, float]]) -> float:
    """histogram_quantile over the observations made between two scrapes."""
    counts = [(le, a - b) for (le, a), (_, b) in zip(after, before)]
    total = counts[-1][1]
    if total <= 0:
        return float("nan")
    rank, lower, below = q * total, 0.0, 0.0
    for le, cumulative in counts:
        if cumulative >= rank:
            if le == float("inf"):
                return lower
            return lower + (le - lower) * (rank - below) / max(cumulative - below, 1e-9)
        lower, below = le, cumulative
    return lower


def one_call(args: tuple[str, int]) -> list[float]:
    from voicebot.emulator import place_call

    url, seed = args
    time.sleep(seed * 0.137)           # calls do not all start on the same frame
    report = place_call(url, SCRIPT, auth_token=TOKEN, voice="ko", max_seconds=90)
    return [lat for lat in report.latencies if lat is not None] if not report.timed_out else []


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", default="1,2,4,8,16", help="comma-separated N values")
    parser.add_argument("--rounds", type=int, default=1, help="rounds per N")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="voicebot-load-"))
    redis_proc, server, url = start(tmp)
    try:
        pid = worker_pid(server)
        one_call((url, 0))            # the first call waits for the model: not measured
        idle = cpu_seconds(pid)
        for _ in range(120):          # let start-up work (prompt rendering, recogniser warm-up) finish
            time.sleep(1.0)
            now = cpu_seconds(pid)
            if now - idle < 0.05:
                break
            idle = now
        print(f"\nmachine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; server: gunicorn gthread, "
              f"1 worker; flow tests/data/ko.yaml; {args.rounds} round(s) per N\n")
        print("| calls | (a) caller's last frame to bot audio p50 / p95 | (b) endpoint to bot audio p50 / p95 "
              "| CPU per call | server RSS |")
        print("|---|---|---|---|---|")
        best = 0
        for n in [int(x) for x in args.calls.split(",")]:
            latencies: list[float] = []
            before = histogram(url, "voicebot_response_seconds")
            cpu0, t0 = cpu_seconds(pid), time.monotonic()
            for _ in range(args.rounds):
                with multiprocessing.get_context("fork").Pool(n) as pool:
                    for result in pool.map(one_call, [(url, i) for i in range(n)]):
                        latencies.extend(result)
            cpu, wall = cpu_seconds(pid) - cpu0, time.monotonic() - t0
            after = histogram(url, "voicebot_response_seconds")
            b50, b95 = quantile(0.5, before, after), quantile(0.95, before, after)
            if b95 <= 0.05:
                best = n
            print(f"| {n} | {pct(latencies, 0.5) * 1000:.0f} / {pct(latencies, 0.95) * 1000:.0f} ms | "
                  f"{b50 * 1000:.0f} / {b95 * 1000:.0f} ms | {cpu / wall / n:.0%} of a core | "
                  f"{rss_mb(pid):.0f} MB |", flush=True)
        print(f"\nlargest N with (b) p95 under 50 ms: {best}")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(10)
        redis_proc.terminate()
        redis_proc.wait(10)


if __name__ == "__main__":
    main()
