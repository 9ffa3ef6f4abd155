"""N emulated phone calls at once against one voicebot server, in real time.

    python benchmarks/call_load.py [--calls 1,2,4,8,16] [--rounds 1] [--repo PATH]

Starts its own redis-server and `voicebot serve` (gunicorn, the Korean test flow
tests/data/ko.yaml with one open question added, and the real Korean model), then for each N
places N calls at once with the Twilio emulator (each in its own process, so the callers do not
compete for one GIL). Every call answers the choice by voice over the opening (barge-in), answers
an open question with a free sentence, keys in a number, confirms by voice and is hung up by the
bot: three recognised utterances and one key entry per call. ``--repo`` serves another checkout
of voicebot (the code before a change) with this same script, so both are measured alike.
Prints for each N:

- (a) the caller's wait: from the last caller frame with speech in it to the first bot audio
  frame, p50/p95, as the emulator sees it; for the closed answers (the choice, the yes/no and
  the keys) and for the open one apart;
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
SCRIPT = [{"say": "예약", "barge_in": 1.0}, {"say": "내일 오후에 방문하고 싶어요"}, {"dtmf": "123#"}, {"say": "네"}]
CLOSED = [True, False, True, True]     # per turn of SCRIPT: a grammar, the keys, yes/no; the sentence is open
OPEN_STEP = """  note:
    type: ask
    slot: note
    slot_type: text
    say: 짧게 말씀해 주세요
    next: number
"""


def bench_flow(folder: Path) -> Path:
    """The Korean test flow with an open question (free speech, no grammar) after the choice."""
    flow = (REPO / "tests" / "data" / "ko.yaml").read_text(encoding="utf-8")
    flow = flow.replace("    next: number\n  number:", "    next: note\n" + OPEN_STEP + "  number:", 1)
    assert "next: note" in flow, "the Korean test flow changed: add the open question by hand"
    folder.mkdir()
    (folder / "ko.yaml").write_text(flow, encoding="utf-8")
    return folder


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(tmp: Path, repo: Path) -> tuple[subprocess.Popen, subprocess.Popen, str]:
    rport, port = free_port(), free_port()
    redis_proc = subprocess.Popen([shutil.which("redis-server"), "--port", str(rport), "--bind", "127.0.0.1",
                                   "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    config = tmp / "config.yaml"
    config.write_text(f"flows: {{dir: {bench_flow(tmp / 'flows')}, default: ko_test}}\n"
                      f"prompts: {{cache_dir: {tmp / 'cache'}}}\n")
    env = {**os.environ, "VOICEBOT_CONFIG": str(config), "REDIS_URL": f"redis://127.0.0.1:{rport}/0",
           "TWILIO_AUTH_TOKEN": TOKEN, "PUBLIC_URL": f"http://127.0.0.1:{port}", "VOICEBOT_HASH_SALT": SALT,
           "PYTHONPATH": str(repo)}
    server = subprocess.Popen([sys.executable, "-m", "voicebot", "serve", "--port", str(port)], env=env, cwd=repo,
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


def one_call(args: tuple[str, int]) -> list[tuple[bool, float]] | None:
    """(closed, the caller's wait) for each answered turn of one call; None for a call off the script.

    Free-form espeak Korean is recognised as nonsense, so now and then the open answer is not
    taken, the bot asks again and the script's later answers land on other questions (a "네"
    spoken over a prompt that cannot be interrupted waited ~5 s): such a call ends with a transfer
    instead of the bot hanging up, and its waits would not be the turns they are labelled.
    """
    from voicebot.emulator import place_call

    url, seed = args
    time.sleep(seed * 0.137)           # calls do not all start on the same frame
    report = place_call(url, SCRIPT, auth_token=TOKEN, voice="ko", max_seconds=90)
    if report.timed_out or report.transfer is not None or report.hung_up_by != "bot":
        return None
    return [(closed, lat) for closed, lat in zip(CLOSED, report.latencies) if lat is not None]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", default="1,2,4,8,16", help="comma-separated N values")
    parser.add_argument("--rounds", type=int, default=1, help="rounds per N")
    parser.add_argument("--repo", type=Path, default=REPO, help="the voicebot checkout to serve (default: this one)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="voicebot-load-"))
    redis_proc, server, url = start(tmp, args.repo.resolve())
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
              f"1 worker, {args.repo.resolve()}; flow tests/data/ko.yaml + an open question; "
              f"{args.rounds} round(s) per N\n")
        print("| calls | (a) closed p50 / p95 | (a) open p50 / p95 | (b) endpoint to bot audio p50 / p95 "
              "| CPU per call | server RSS | calls off the script |")
        print("|---|---|---|---|---|---|---|")
        best = 0
        for n in [int(x) for x in args.calls.split(",")]:
            latencies: list[tuple[bool, float]] = []
            off_script = 0
            before = histogram(url, "voicebot_response_seconds")
            cpu0, t0 = cpu_seconds(pid), time.monotonic()
            for _ in range(args.rounds):
                with multiprocessing.get_context("fork").Pool(n) as pool:
                    for result in pool.map(one_call, [(url, i) for i in range(n)]):
                        off_script += result is None
                        latencies.extend(result or [])
            cpu, wall = cpu_seconds(pid) - cpu0, time.monotonic() - t0
            after = histogram(url, "voicebot_response_seconds")
            b50, b95 = quantile(0.5, before, after), quantile(0.95, before, after)
            if b95 <= 0.05:
                best = n
            closed = [lat for c, lat in latencies if c]
            opened = [lat for c, lat in latencies if not c]
            print(f"| {n} | {pct(closed, 0.5) * 1000:.0f} / {pct(closed, 0.95) * 1000:.0f} ms | "
                  f"{pct(opened, 0.5) * 1000:.0f} / {pct(opened, 0.95) * 1000:.0f} ms ({len(opened)}) | "
                  f"{b50 * 1000:.0f} / {b95 * 1000:.0f} ms | {cpu / wall / n:.0%} of a core | "
                  f"{rss_mb(pid):.0f} MB | {off_script} of {n * args.rounds} |", flush=True)
        print(f"\nlargest N with (b) p95 under 50 ms: {best}")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(10)
        redis_proc.terminate()
        redis_proc.wait(10)


if __name__ == "__main__":
    main()
