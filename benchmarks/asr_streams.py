"""What recognition costs per call: raw Vosk beside our pipeline, on the same audio, in one run.

    python benchmarks/asr_streams.py [--seconds 20] [--repeats 3] [--grammar] [--processes 2]
                                     [--pause 1] [--warm-up 20] [--repo PATH]

Prints a table:
- decode cost (CPU seconds per audio second, the real-time factor) of raw Vosk (one warm
  recogniser, 20 ms chunks of PCM in a tight loop) and of our pipeline for the same audio (mu-law
  decode, webrtcvad, endpointer, partials, a pooled recogniser per utterance, a decode thread per
  call), and their ratio (goal: at most 1.1);
- how many real-time calls two cores sustain: the CPU bound (cores / RTF) and what a real-time
  run reaches (N calls fed 20 ms every 20 ms, each begun at another sentence as independent callers
  are, or all at the same one with ``--in-step``; a call keeps up while its p95 lag from frame
  arrival to decode stays under 300 ms); goal: twice the calls raw Vosk sustains;
- memory added per call, and the time from the last speech frame to the final result;
- with ``--processes P``, the same real-time search with the calls spread over P processes, each
  with its own model (what P gunicorn workers would do), beside the threads of one process.

Before each search, ``--warm-up`` calls run once unmeasured, and raw Vosk's calls keep their
recognisers from run to run as our pool keeps its own: a recogniser decodes at about four times
the CPU until its lookahead cache fills, so a search that began cold measured the warm-up rather
than the steady state of a server that has been taking calls.

The audio is Korean espeak-ng speech (the only model on these machines is the small Korean one)
with pauses between sentences, through the phone path. Medians of ``--repeats`` runs, raw and
ours alternating, because the machines are noisy.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path


def _repo() -> Path:
    """``--repo PATH`` measures another checkout's pipeline with this script (read before the imports)."""
    if "--repo" in sys.argv[:-1]:
        return Path(sys.argv[sys.argv.index("--repo") + 1]).resolve()
    return Path(__file__).resolve().parent.parent


sys.path.insert(0, str(_repo()))

import numpy as np  # noqa: E402

from voicebot.config import SpeechSettings  # noqa: E402
from voicebot.speech.audio import ulaw_to_pcm, wav_to_ulaw  # noqa: E402
from voicebot.speech.recognizer import Final, SpeechModels, StreamingRecognizer  # noqa: E402

SENTENCES = ["안녕하세요 예약을 하고 싶어요", "네", "상담원 연결해 주세요", "아니요 취소해 주세요",
             "내일 오후 세 시에 예약 가능한가요", "감사합니다"]
GRAMMAR = ("네", "예", "아니요", "예약", "취소", "상담원 연결해 주세요", "감사합니다")
PAGE = os.sysconf("SC_PAGE_SIZE")
LAG_LIMIT = 0.3
WARM_AUDIO: list[bytes] = []
RAW_SLOTS: list = []
PAUSE = [1.0]
IN_STEP = [False]


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


def make_audio(seconds: float) -> tuple[bytes, list[float], list[int]]:
    """About ``seconds`` of mu-law: sentences with pauses (``--pause``, 1 s); returns the audio, speech
    ends, clip starts. A caller on a real call is mostly listening: ``--pause 4`` is closer to that
    (a prompt of about four seconds before each answer); 1 s is speech almost all the time."""
    clips = [wav_to_ulaw(subprocess.run(["espeak-ng", "-v", "ko", "--stdout", s], capture_output=True,
                                        check=True).stdout) for s in SENTENCES]
    audio, ends, starts = b"\xff" * 4000, [], []
    i = 0
    while len(audio) < seconds * 8000:
        clip = clips[i % len(clips)]
        loud = np.nonzero(np.abs(np.frombuffer(ulaw_to_pcm(clip), np.int16)) > 300)[0]
        ends.append((len(audio) + (loud[-1] if len(loud) else len(clip))) / 8000)   # the last audible sample
        starts.append(len(audio))
        audio += clip
        audio += b"\xff" * int(8000 * PAUSE[0])
        i += 1
    return audio, ends, starts


def staggered(ulaw: bytes, ends: list[float], starts: list[int], i: int, n: int) -> tuple[bytes, list[float]]:
    """Call ``i`` of ``n``: the same audio begun at another sentence, as callers are never in step.

    With every call in step, all of them speak at the same moment and all pause together, so the
    lag shows the peak of N calls decoding at once rather than their average (``--in-step`` keeps that).
    """
    if IN_STEP[0] or n <= 1:
        return ulaw, ends
    cut = starts[i * len(starts) // n]
    total = len(ulaw) / 8000
    return ulaw[cut:] + ulaw[:cut], sorted((e - cut / 8000) % total for e in ends)


def paced(ulaw: bytes, realtime: bool, t0: float):
    """The 20 ms frames of ``ulaw`` with their index, each (in real time) no earlier than a live call sends it."""
    for n in range(len(ulaw) // 160):
        if realtime:
            delay = t0 + n * 0.02 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        yield n, ulaw[n * 160:(n + 1) * 160]


def raw_vosk_stream(model, ulaw: bytes, grammar: bool, realtime: bool = False, slot: int | None = None) -> dict:
    """Raw Vosk on one call: mu-law decoded in the same loop, one recogniser, 20 ms chunks.

    ``slot``: the real-time calls keep their recognisers from run to run (call ``slot`` gets the
    same one each time), so raw Vosk is as warm as our pool is after the same runs."""
    import vosk

    if grammar:
        rec = vosk.KaldiRecognizer(model.model, 8000, json.dumps(list(GRAMMAR), ensure_ascii=False))
    elif slot is None:
        rec = _warm_raw(model)
    else:
        while len(RAW_SLOTS) <= slot:
            RAW_SLOTS.append(_warm_raw(model))
        rec = RAW_SLOTS[slot]
    lags = []
    t0 = time.monotonic()
    for n, frame in paced(ulaw, realtime, t0):
        if rec.AcceptWaveform(ulaw_to_pcm(frame)):
            rec.Result()
        if realtime and n % 25 == 0:
            lags.append(max(0.0, time.monotonic() - (t0 + (n + 1) * 0.02)))
    rec.FinalResult()
    rec.Reset()
    return {"lags": lags, "end_delays": []}


def _warm_raw(model):
    """A free recogniser warmed on other audio and reset: what a fair raw baseline starts with."""
    import vosk

    rec = vosk.KaldiRecognizer(model.model, 8000)
    rec.AcceptWaveform(WARM_AUDIO[0])
    rec.FinalResult()
    rec.Reset()
    return rec


def ours(models: SpeechModels, ulaw: bytes, grammar: bool, realtime: bool = False,
         ends: list[float] | None = None) -> dict:
    """Our pipeline on one call: frames into a StreamingRecognizer, a new listen after each result."""
    phrases = GRAMMAR if grammar else ()
    finals: list[float] = []
    lags: list[float] = []
    holder: list[StreamingRecognizer] = []

    def on_event(event):
        if isinstance(event, Final):
            finals.append(time.monotonic())
            holder[0].listen(phrases)

    rec = StreamingRecognizer(models, "ko", on_event, max_backlog_seconds=None)  # measures the lag itself
    holder.append(rec)
    rec.listen(phrases)
    t0 = time.monotonic()
    for n, frame in paced(ulaw, realtime, t0):
        rec.feed(frame)
        if realtime and n % 25 == 0:
            lags.append(rec.backlog_seconds)
    while rec.backlog_seconds:
        time.sleep(0.002)
    rec.close()
    end_delays = []
    for end in ends or []:
        later = [t for t in finals if t - t0 >= end]
        if later:
            end_delays.append(later[0] - (t0 + end))
    return {"lags": lags, "end_delays": end_delays}


def gil_check(model, ulaw: bytes, grammar: bool) -> float:
    """CPU seconds per wall second while two threads decode at once: ~2 means Vosk releases the GIL."""
    threads = [threading.Thread(target=raw_vosk_stream, args=(model, ulaw, grammar)) for _ in range(2)]
    cpu, wall = time.process_time(), time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return (time.process_time() - cpu) / (time.monotonic() - wall)


def cpu_rtf(run, audio_s: float) -> float:
    """Process CPU (every thread: feeding and decoding) per second of audio."""
    start = time.process_time()
    run()
    return (time.process_time() - start) / audio_s


def realtime_run(fn, n: int, keep: bool = False) -> dict:
    results: list[dict] = [{}] * n
    before = rss_mb()
    peak = [before]
    stop = threading.Event()

    def one(i):
        results[i] = fn(i, n)

    def watch():
        while not stop.wait(0.5):
            peak[0] = max(peak[0], rss_mb())

    threading.Thread(target=watch, daemon=True).start()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    lags = sorted(x for r in results for x in r["lags"])
    delays = sorted(x for r in results for x in r["end_delays"])
    out = summary(lags, delays, (peak[0] - before) / n)
    if keep:        # for a parent that joins several processes' calls
        out.update(lags=lags, delays=delays, added_mb=peak[0] - before)
    return out


def summary(lags: list[float], delays: list[float], mem_per_call: float) -> dict:
    lags, delays = sorted(lags), sorted(delays)
    return {"p95_lag": lags[max(0, int(len(lags) * 0.95) - 1)] if lags else 0.0,
            "mem_per_call": mem_per_call,
            "end_delay_p50": statistics.median(delays) if delays else float("nan")}


def _worker(conn, seconds: float, grammar: bool, in_step: bool, index: int, count: int, warm_up: int,
            pause: float = 1.0) -> None:
    """Process ``index`` of ``count``, with its own model: runs the real-time calls it is sent, as a gunicorn
    worker would; its calls are every ``count``-th of all of them, so they start at their own sentences."""
    PAUSE[0] = pause
    ulaw, ends, starts = make_audio(seconds)
    IN_STEP[0] = in_step
    models = SpeechModels(SpeechSettings())
    base = rss_mb()
    model = models.get("ko")
    WARM_AUDIO.append(ulaw_to_pcm(ulaw)[::-1][: 16000 * 10])
    model.warm(count=8, pcm=WARM_AUDIO[0])
    conn.send(rss_mb() - base)

    def call(i, n):
        audio, audio_ends = staggered(ulaw, ends, starts, i * count + index, n * count)
        return ours(models, audio, grammar, realtime=True, ends=audio_ends)
    if warm_up:
        realtime_run(call, warm_up)
    conn.send("warm")
    while (n := conn.recv()) is not None:
        conn.send(realtime_run(call, n, keep=True) if n else {"lags": [], "delays": [], "added_mb": 0.0})


class Workers:
    """P processes, each with its own model, that split N real-time calls between them."""

    def __init__(self, count: int, seconds: float, grammar: bool, warm_up: int = 0):
        ctx = multiprocessing.get_context("spawn")
        self.pipes = []
        for index in range(count):
            mine, theirs = ctx.Pipe()
            ctx.Process(target=_worker, daemon=True,
                        args=(theirs, seconds, grammar, IN_STEP[0], index, count, warm_up // count, PAUSE[0])).start()
            self.pipes.append(mine)
        self.model_mb = [p.recv() for p in self.pipes]     # each process's model and warm pool
        for pipe in self.pipes:
            pipe.recv()                                    # its warm-up run

    def run(self, n: int) -> dict:
        shares = [n // len(self.pipes) + (i < n % len(self.pipes)) for i in range(len(self.pipes))]
        for pipe, share in zip(self.pipes, shares):
            pipe.send(share)
        results = [p.recv() for p in self.pipes]
        return summary([x for r in results for x in r["lags"]], [x for r in results for x in r["delays"]],
                       sum(r["added_mb"] for r in results) / n)

    def close(self) -> None:
        for pipe in self.pipes:
            pipe.send(None)


def most_calls(fn, start: int, limit: int, rows: list, label: str) -> int:
    """The largest N whose p95 lag stays under LAG_LIMIT: doubling, then bisecting. ``fn(n)`` runs N calls."""
    good, bad, n = 0, None, start
    while n <= limit:
        r = fn(n)
        rows.append((label, n, r))
        if r["p95_lag"] <= LAG_LIMIT:
            good = n
            if bad is not None and bad - good <= 1:
                break
            n = n * 2 if bad is None else (good + bad) // 2
        else:
            bad = n
            if bad - good <= 1:
                break
            n = (good + bad) // 2
        if bad is not None and (n == good or n == bad):
            break
    return good


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="audio per stream")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--grammar", action="store_true", help="grammar-constrained instead of free recognition")
    parser.add_argument("--max-calls", type=int, default=0, help="cap the real-time search (0: from the bound)")
    parser.add_argument("--processes", type=int, default=1,
                        help="also search with the calls spread over this many processes, each with its own model")
    parser.add_argument("--in-step", action="store_true",
                        help="every call starts at the same sentence (all speak at once: the worst case)")
    parser.add_argument("--warm-up", type=int, default=20,
                        help="calls in one unmeasured real-time run before each search, as on a server that "
                             "has been taking calls (0: none)")
    parser.add_argument("--pause", type=float, default=1.0,
                        help="seconds between the caller's sentences (a real caller listens to prompts in between)")
    parser.add_argument("--repo", type=Path, default=None,
                        help="measure this checkout's pipeline (default: the one this script is in)")
    args = parser.parse_args()

    cores = os.cpu_count() or 1
    IN_STEP[0] = args.in_step
    PAUSE[0] = args.pause
    ulaw, ends, starts = make_audio(args.seconds)
    pcm = ulaw_to_pcm(ulaw)
    audio_s = len(ulaw) / 8000
    models = SpeechModels(SpeechSettings())
    rss0 = rss_mb()
    model = models.get("ko")
    model_mb = rss_mb() - rss0

    WARM_AUDIO.append(pcm[::-1][: 16000 * 10])
    model.warm(count=8, pcm=WARM_AUDIO[0])   # as `voicebot serve` does with the flows' prompts
    raw, mine = [], []
    for _ in range(args.repeats):
        raw.append(cpu_rtf(lambda: raw_vosk_stream(model, ulaw, args.grammar), audio_s))
        mine.append(cpu_rtf(lambda: ours(models, ulaw, args.grammar), audio_s))
    rtf_raw, rtf_ours = statistics.median(raw), statistics.median(mine)
    parallel = gil_check(model, ulaw, args.grammar)

    mode = "grammar" if args.grammar else "free"
    print(f"\ncode: {_repo()}")
    print(f"machine: {cores} cores, {os.uname().machine}, Python {sys.version.split()[0]}; mode: {mode}"
          f"{', calls in step' if args.in_step else ', calls staggered'}; {args.pause:g} s between sentences; "
          f"{audio_s:.1f} s of audio per stream; model RSS {model_mb:.0f} MB; median of {args.repeats}\n")
    print("| measure | raw Vosk | voicebot pipeline | ratio |")
    print("|---|---|---|---|")
    print(f"| CPU per audio second (RTF) | {rtf_raw:.3f} | {rtf_ours:.3f} | {rtf_ours / rtf_raw:.2f} (goal <= 1.1) |")
    print(f"| real-time calls, CPU bound ({cores} cores / RTF) | {cores / rtf_raw:.1f} | {cores / rtf_ours:.1f} | |")
    print(f"| two threads decoding at once: CPU seconds per wall second | {parallel:.2f} | | "
          f"(2.0 = Vosk releases the GIL: threads, not processes) |")
    sys.stdout.flush()

    limit = args.max_calls or int(2 * cores / min(rtf_raw, rtf_ours)) + 1
    rows: list = []

    def raw_call(i, n):
        return raw_vosk_stream(model, staggered(ulaw, ends, starts, i, n)[0], args.grammar, realtime=True, slot=i)

    def our_call(i, n):
        audio, audio_ends = staggered(ulaw, ends, starts, i, n)
        return ours(models, audio, args.grammar, realtime=True, ends=audio_ends)
    grown = {}

    def search(label, call):
        """Warm up (unmeasured), then search; notes how much the process grew for this pipeline."""
        before = rss_mb()
        if args.warm_up:
            realtime_run(call, args.warm_up)
        found = most_calls(lambda n: realtime_run(call, n), 1, limit, rows, label)
        grown[label] = rss_mb() - before
        return found
    if args.warm_up:
        print(f"\nwarm-up: {args.warm_up} real-time calls before each search, unmeasured", flush=True)
    raw_n = search("raw", raw_call)
    our_n = search("ours", our_call)
    proc_n, workers = None, None
    if args.processes > 1:
        workers = Workers(args.processes, args.seconds, args.grammar, args.warm_up)
        proc_n = most_calls(workers.run, 1, limit, rows, f"ours, {args.processes} processes")
        workers.close()
    print("\n| pipeline | real-time calls | p95 lag | memory per call | end of speech to final result (p50) |")
    print("|---|---|---|---|---|")
    for label, n, r in rows:
        delay = "" if label == "raw" else f"{r['end_delay_p50'] * 1000:.0f} ms"
        print(f"| {label} | {n} | {r['p95_lag'] * 1000:.0f} ms{'' if r['p95_lag'] <= LAG_LIMIT else ' (behind)'} | "
              f"{r['mem_per_call']:.1f} MB | {delay} |")
    print(f"\nreal-time calls sustained (p95 lag <= {LAG_LIMIT * 1000:.0f} ms): raw Vosk {raw_n}, voicebot {our_n} "
          f"= {our_n / max(raw_n, 1):.2f}x raw (goal >= 2x)")
    print(f"memory the process grew by over warm-up and search (the recognisers kept), per call sustained: "
          f"raw Vosk {grown['raw']:.0f} MB / {raw_n} = {grown['raw'] / max(raw_n, 1):.1f} MB, "
          f"voicebot {grown['ours']:.0f} MB / {our_n} = {grown['ours'] / max(our_n, 1):.1f} MB")
    if workers is not None:
        print(f"voicebot in {args.processes} processes, each with its own model: {proc_n} "
              f"({proc_n / max(our_n, 1):.2f}x the threads of one process); each process adds its model and warm "
              f"pool: {statistics.median(workers.model_mb):.0f} MB")


if __name__ == "__main__":
    main()
