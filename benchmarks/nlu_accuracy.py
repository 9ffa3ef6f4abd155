"""Intent accuracy and out-of-scope rejection on held-out caller utterances, with the rule before and now.

The held-out sets in benchmarks/data/*_heldout.yaml were written apart from the flows' training
examples (and are never added to them). Goals: at least 95 % intent accuracy on in-scope
utterances and 90 % rejection of out-of-scope ones, on every set. A reliability table shows
whether the classifier's confidence means what it says.

Each set is classified twice in one run: "now" is the flow as it loads (the flow's examples and
out-of-scope examples, plus the generic out-of-scope background of ``voicebot.nlu.generic_out_of_scope``);
"before" is the rule as it was before that background, trained on the flow alone
(``generic_out_of_scope=False``). ``--before REV`` also takes the flow files for "before" from that
git revision, so flow edits count too: ``--before fa66706`` is the state before the out-of-scope
work (docs/nlu.md). A closing table lists every set side by side.

Loading a flow trains its classifier once and keeps it in the classifier cache (``voicebot.nlu.cache``).
Each flow is loaded cold (an empty cache: the fit) and warm (the same flow again: read from the
cache), and ``voicebot nlu`` is run as a command, start-up and imports included, cold (each run
with an empty cache) and warm (the cache filled); the command figures are medians over ``--runs``
runs (0 skips them). The accuracy is measured on the classifier read back from the cache.

    python benchmarks/nlu_accuracy.py [--verbose] [--runs 5] [--before REV] [HELDOUT.yaml ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voicebot.flow import load_flow  # noqa: E402
from voicebot.nlu.cache import CACHE_ENV, trained_classifier  # noqa: E402
from voicebot.nlu.intents import IntentClassifier  # noqa: E402
from voicebot.yaml12 import load_yaml  # noqa: E402

GOAL_ACCURACY, GOAL_REJECTION = 0.95, 0.90


@dataclass(frozen=True)
class Score:
    """One classifier on one held-out set."""

    accuracy: float
    rejection: float
    errors: list[str]
    bins: dict[int, list[bool]]


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


def flow_text(flow_file: Path, revision: str | None) -> str:
    """The flow file's text now, or as it was at a git revision."""
    if revision is None:
        return flow_file.read_text(encoding="utf-8")
    relative = flow_file.resolve().relative_to(ROOT).as_posix()
    return subprocess.run(["git", "show", f"{revision}:{relative}"], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout


def old_rule_classifier(flow_file: Path, revision: str | None) -> IntentClassifier:
    """The classifier as it was before the generic background: the flow's own examples only."""
    tree = load_yaml(flow_text(flow_file, revision))
    examples = {name: list(intent["examples"]) for name, intent in tree["intents"].items()}
    return trained_classifier(examples, list(tree.get("out_of_scope") or []), tree["language"],
                              generic_out_of_scope=False)


def score(classifier: IntentClassifier, cases: list[tuple[str, str | None]]) -> Score:
    in_scope = [(t, i) for t, i in cases if i is not None]
    oos = [t for t, i in cases if i is None]
    bins: dict[int, list[bool]] = {}
    correct, rejected, errors = 0, 0, []
    for text, want in in_scope:
        result = classifier.classify(text)
        correct += result.intent == want
        best = result.intent or (result.alternatives[0][0] if result.alternatives else None)
        bins.setdefault(min(int(result.confidence * 5), 4), []).append(best == want)
        if result.intent != want:
            errors.append(f"  {text!r}: expected {want}, got {result.intent} ({result.confidence:.2f})")
    for text in oos:
        result = classifier.classify(text)
        rejected += result.intent is None
        if result.intent is not None:
            errors.append(f"  {text!r}: out of scope, got {result.intent} ({result.confidence:.2f})")
    return Score(correct / len(in_scope), rejected / len(oos), errors, bins)


def verdict(value: float, goal: float) -> str:
    return "ok" if value >= goal else "MISSED"


def run(path: Path, verbose: bool, runs: int, before_rev: str | None) -> dict:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    flow_file = ROOT / data["flow"]
    cases = [(c["text"], c["intent"]) for c in data["cases"]]
    with tempfile.TemporaryDirectory() as cache:
        os.environ[CACHE_ENV] = cache
        _, cold = timed(lambda: load_flow(flow_file))
        flow, warm = timed(lambda: load_flow(flow_file))
        old = old_rule_classifier(flow_file, before_rev)
    now, before = score(flow.classifier, cases), score(old, cases)
    n_in = sum(i is not None for _, i in cases)
    print(f"\n{path.name}: {flow.id} ({flow.language}), {n_in} in-scope, {len(cases) - n_in} out-of-scope utterances")
    print("| measure | before | now | goal |\n|---|---|---|---|")
    print(f"| intent accuracy | {before.accuracy:.1%} | {now.accuracy:.1%} | {GOAL_ACCURACY:.0%} "
          f"{verdict(now.accuracy, GOAL_ACCURACY)} |")
    print(f"| out-of-scope rejection | {before.rejection:.1%} | {now.rejection:.1%} | {GOAL_REJECTION:.0%} "
          f"{verdict(now.rejection, GOAL_REJECTION)} |")
    print(f"\n| loading the flow | cold (fit) | warm (cache) |\n|---|---|---|")
    print(f"| `load_flow` | {cold:.2f} s | {warm:.3f} s ({cold / warm:.0f}x faster) |")
    if runs > 0:
        cmd_cold, cmd_warm = command_medians(flow_file, runs)
        print(f"| `voicebot nlu` command (median of {runs}) | {cmd_cold:.2f} s | {cmd_warm:.2f} s "
              f"({cmd_cold / cmd_warm:.1f}x faster) |")
    print("\n| confidence (now) | utterances | best intent right |\n|---|---|---|")
    for b in sorted(now.bins):
        hits = now.bins[b]
        print(f"| {b / 5:.1f}-{(b + 1) / 5:.1f} | {len(hits)} | {sum(hits) / len(hits):.0%} |")
    if verbose and now.errors:
        print("\nerrors (now):\n" + "\n".join(now.errors))
    return {"set": path.name, "in": n_in, "oos": len(cases) - n_in, "before": before, "now": now}


def summary(rows: list[dict], before_rev: str | None) -> None:
    label = f"flows at {before_rev}, old rule" if before_rev else "old rule"
    print(f"\nall sets (before: {label}; now: the flows as they load)")
    print("| held-out set | in-scope | out-of-scope | accuracy before | accuracy now "
          "| rejection before | rejection now |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        b, n = r["before"], r["now"]
        print(f"| {r['set']} | {r['in']} | {r['oos']} | {b.accuracy:.1%} | {n.accuracy:.1%} "
              f"| {b.rejection:.1%} | {n.rejection:.1%} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--verbose", action="store_true", help="list every utterance the classifier gets wrong now")
    parser.add_argument("--runs", type=int, default=5,
                        help="runs of the command, cold and warm (median); 0 skips the command timing")
    parser.add_argument("--before", metavar="REV", help="git revision whose flow files the 'before' column uses")
    args = parser.parse_args()
    files = args.files or sorted((ROOT / "benchmarks" / "data").glob("*_heldout.yaml"))
    rows = [run(path, args.verbose, max(0, args.runs), args.before) for path in files]
    summary(rows, args.before)
    return 0


if __name__ == "__main__":
    sys.exit(main())
