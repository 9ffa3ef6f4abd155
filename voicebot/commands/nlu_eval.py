"""`voicebot nlu --flow F --eval`: the flow's understanding measured on held-out sentences, as it is
and with the reviewed examples that wait for export (``voicebot review export``), side by side.

The held-out sets are ``benchmarks/data/<flow id>_*.yaml`` (next to config.yaml; ``--sets DIR``
for another folder), each a list of ``cases`` with ``text`` and ``intent`` (null: out of scope),
as ``benchmarks/nlu_accuracy.py`` reads them. They were written apart from the flows' examples, so
the figures say how the flow does on sentences nobody tuned it to: intent accuracy on in-scope
sentences, and the share of out-of-scope ones rejected.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from voicebot.commands.context import settings_from

MAX_CASES = 20000
"""Sentences read from one set at most: a set is a hand-written file, not a dump."""


@dataclass
class Score:
    in_scope: int = 0
    correct: int = 0
    out_of_scope: int = 0
    rejected: int = 0

    def add(self, other: "Score") -> None:
        self.in_scope += other.in_scope
        self.correct += other.correct
        self.out_of_scope += other.out_of_scope
        self.rejected += other.rejected

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.in_scope if self.in_scope else None

    @property
    def rejection(self) -> float | None:
        return self.rejected / self.out_of_scope if self.out_of_scope else None


def read_cases(path: Path) -> list[tuple[str, str | None]]:
    """A held-out set's ``(text, intent)`` pairs; ClickException for a file that is not one."""
    import yaml

    from voicebot.yaml12 import load_yaml

    try:
        tree = load_yaml(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise click.ClickException(f"{path}: {exc}") from None
    cases = tree.get("cases") if isinstance(tree, dict) else None
    if not isinstance(cases, list):
        raise click.ClickException(f"{path}: a held-out set has a list `cases` of `text` and `intent`")
    found = []
    for case in cases[:MAX_CASES]:
        if isinstance(case, dict) and isinstance(case.get("text"), str) and case["text"].strip():
            intent = case.get("intent")
            found.append((case["text"], intent if isinstance(intent, str) and intent else None))
    return found


def score(classifier: Any, cases: list[tuple[str, str | None]]) -> Score:
    result = Score()
    for text, want in cases:
        got = classifier.classify(text).intent
        if want is None:
            result.out_of_scope += 1
            result.rejected += got is None
        else:
            result.in_scope += 1
            result.correct += got == want
    return result


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def run_eval(ctx: click.Context, flow_name: str | None, sets: str | None) -> None:
    from voicebot.commands.review import pending
    from voicebot.records.db import RecordsUnavailable, open_reader

    settings = settings_from(ctx)
    engine, note = None, None
    try:
        engine = open_reader(settings.records.url)
    except RecordsUnavailable as exc:
        note = str(exc)
    found = pending(ctx, flow_name, engine)
    flow = found.flow
    if flow.classifier is None:
        raise click.ClickException(f"{flow.id} has no intents to measure")
    folder = Path(sets) if sets else settings.root / "benchmarks" / "data"
    files = sorted(folder.glob(f"{flow.id}_*.yaml"))
    if not files:
        raise click.ClickException(f"no held-out sets for {flow.id}: {folder}/{flow.id}_*.yaml")
    after = found.patched
    added = found.additions.added
    if note:
        click.echo(f"{note}: only the flow as it is.")
    elif not added:
        click.echo(f"No reviewed examples of {flow.id} wait for export: only the flow as it is.")
    else:
        intents = sum(1 for where, _ in added if where != "out_of_scope")
        click.echo(f"With the {len(added)} reviewed sentence(s) that wait for export: {intents} intent example(s), "
                   f"{len(added) - intents} out of scope (`voicebot review export --flow {flow.id}`).")
    head = ["set", "in scope", "accuracy now", "out of scope", "rejected now"]
    if after is not None:
        head = ["set", "in scope", "accuracy now", "with reviews", "out of scope", "rejected now", "with reviews"]
    rows = []
    total_now, total_after = Score(), Score()
    for path in files:
        cases = read_cases(path)
        now = score(flow.classifier, cases)
        total_now.add(now)
        later = score(after.classifier, cases) if after is not None else None
        if later is not None:
            total_after.add(later)
        rows.append(_row(path.name, now, later))
    if len(files) > 1:
        rows.append(_row("all sets", total_now, total_after if after is not None else None))
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    click.echo(f"\n{flow.id} ({found.path}, version {flow.version})")
    for row in [head, *rows]:
        click.echo("  ".join(str(cell).ljust(w) if i == 0 else str(cell).rjust(w)
                             for i, (cell, w) in enumerate(zip(row, widths))).rstrip())


def _row(name: str, now: Score, later: Score | None) -> list[str]:
    if later is None:
        return [name, str(now.in_scope), _share(now.accuracy), str(now.out_of_scope), _share(now.rejection)]
    return [name, str(now.in_scope), _share(now.accuracy), _share(later.accuracy), str(now.out_of_scope),
            _share(now.rejection), _share(later.rejection)]
