"""Intent accuracy and out-of-scope rejection on held-out caller utterances.

The held-out sets in benchmarks/data/ were written apart from the flows' training examples. Goals:
at least 92 % intent accuracy on in-scope utterances and 85 % rejection of out-of-scope ones.
A reliability table shows whether the classifier's confidence means what it says.

    python benchmarks/nlu_accuracy.py [--verbose] [HELDOUT.yaml ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voicebot.flow import load_flow  # noqa: E402

GOAL_ACCURACY, GOAL_REJECTION = 0.92, 0.85


def run(path: Path, verbose: bool) -> tuple[float, float]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    flow = load_flow(ROOT / data["flow"])
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
    args = parser.parse_args()
    files = args.files or sorted((ROOT / "benchmarks" / "data").glob("*_heldout.yaml"))
    for path in files:
        run(path, args.verbose)
    return 0


if __name__ == "__main__":
    sys.exit(main())
