"""Intent accuracy and out-of-scope rejection on held-out caller utterances.

The held-out sets in benchmarks/data/ were written apart from the flows' training examples. Goals:
at least 92 % intent accuracy on in-scope utterances and 85 % rejection of out-of-scope ones.
A reliability table shows whether the classifier's confidence means what it says.

Loading a flow trains its classifier once and keeps it in the classifier cache (``voicebot.nlu.cache``).
Each flow is loaded cold (an empty cache: the fit) and warm (the same flow again: read from the
cache), and ``voicebot nlu`` is run as a command, start-up and imports included, cold (each run
with an empty cache) and warm (the cache filled); the command figures are medians over ``--runs``
runs. The accuracy is measured on the classifier read back from the cache.

    python benchmarks/nlu_accuracy.py [--verbose] [--runs 5] [HELDOUT.yaml ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voicebot.flow import load_flow  # noqa: E402
from voicebot.nlu.cache import CACHE_ENV  # noqa: E402

GOAL_ACCURACY, GOAL_REJECTION = 0.92, 0.85


def timed(what) -> tuple[object, float]:
    start = time.perf_counter()
    result = what()
    return result, time.perf_counter() - start


def command_seconds(flow_file: Path, cache: str) -> float:
    """Wall time of one `voicebot nlu` run, as an operator would type it."""
    env = {**os.environ, CACHE_ENV: cache}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "voicebot", "nlu", "--flow", str(flow_file), "hallo"],
                   cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def command_medians(flow_file: Path, runs: int) -> tuple[float, float]:
    """Median wall time of `voicebot nlu` with an empty cache, and with the cache it filled."""
    cold, warm = [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as cache:
            cold.append(command_seconds(flow_file, cache))
            warm.append(command_seconds(flow_file, cache))
    return statistics.median(cold), statistics.median(warm)


def run(path: Path, verbose: bool, runs: int) -> tuple[float, float]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    flow_file = ROOT / data["flow"]
    with tempfile.TemporaryDirectory() as cache:
        os.environ[CACHE_ENV] = cache
        _, cold = timed(lambda: load_flow(flow_file))
        flow, warm = timed(lambda: load_flow(flow_file))
    cmd_cold, cmd_warm = command_medians(flow_file, runs)
    cases = [(c["text"], c["intent"]) for c in data["cases"]]
    in_scope = [(t, i) for t, i in cases if i is not None]
    oos = [t for t, i in cases if i is None]
    bins: dict[int, list[bool]] = {}
    correct = 0
    errors = []
    for text, want in in_scope:
        result = flow.classifier.classify(text)
        ok = result.intent == want
        correct += ok
        best = result.intent or (result.alternatives[0][0] if result.alternatives else None)
        bins.setdefault(min(int(result.confidence * 5), 4), []).append(best == want)
        if not ok:
            errors.append(f"  {text!r}: expected {want}, got {result.intent} ({result.confidence:.2f})")
    rejected = 0
    for text in oos:
        result = flow.classifier.classify(text)
        rejected += result.intent is None
        if result.intent is not None:
            errors.append(f"  {text!r}: out of scope, got {result.intent} ({result.confidence:.2f})")
    accuracy, rejection = correct / len(in_scope), rejected / len(oos)
    print(f"\n{flow.id} ({flow.language}): {len(in_scope)} in-scope, {len(oos)} out-of-scope utterances")
    print(f"| measure | result | goal |\n|---|---|---|")
    print(f"| intent accuracy | {accuracy:.1%} | {GOAL_ACCURACY:.0%} {'ok' if accuracy >= GOAL_ACCURACY else 'MISSED'} |")
    print(f"| out-of-scope rejection | {rejection:.1%} | {GOAL_REJECTION:.0%} "
          f"{'ok' if rejection >= GOAL_REJECTION else 'MISSED'} |")
    print(f"\n| loading the flow | cold (fit) | warm (cache) |\n|---|---|---|")
    print(f"| `load_flow` | {cold:.2f} s | {warm:.3f} s ({cold / warm:.0f}x faster) |")
    print(f"| `voicebot nlu` command (median of {runs}) | {cmd_cold:.2f} s | {cmd_warm:.2f} s "
          f"({cmd_cold / cmd_warm:.1f}x faster) |")
    print("\n| confidence | utterances | best intent right |\n|---|---|---|")
    for b in sorted(bins):
        hits = bins[b]
        print(f"| {b / 5:.1f}-{(b + 1) / 5:.1f} | {len(hits)} | {sum(hits) / len(hits):.0%} |")
    if verbose and errors:
        print("\nerrors:\n" + "\n".join(errors))
    return accuracy, rejection


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--verbose", action="store_true", help="list every misclassified utterance")
    parser.add_argument("--runs", type=int, default=5, help="runs of the command, cold and warm (median)")
    args = parser.parse_args()
    files = args.files or sorted((ROOT / "benchmarks" / "data").glob("*_heldout.yaml"))
    for path in files:
        run(path, args.verbose, max(1, args.runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
