"""Everything that can be wrong with a flow, found at load time and reported with file and line.

A flow is checked as a whole and every problem is reported at once, so an operator fixes a file
in one pass instead of one error per run.
"""

from __future__ import annotations

import string
from typing import Any, Iterable

from pydantic import ValidationError

from voicebot.errors import Problem
from voicebot.flow.messages import MESSAGE_KEYS, MESSAGES
from voicebot.flow.schema import (
    LISTENING_TYPES, STEP_TYPES, TERMINAL_TYPES, AskStep, FlowSpec, targets,
)
from voicebot.flow.yamlsrc import line_of
from voicebot.nlu.lexicon import DISCLOSURE

_BUILTIN_PLACEHOLDERS = {"value"}
_NEEDS_PROMPT = {"say", "answer", "route", "ask", "feedback"}


class Checker:
    """Collects problems for one file; ``at(path)`` turns a key path into a line number."""

    def __init__(self, file: str, tree: Any):
        self.file = file
        self.tree = tree
        self.problems: list[Problem] = []

    def add(self, path: Iterable[Any], message: str) -> None:
        self.problems.append(Problem(self.file, line_of(self.tree, path), message))


def _where(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "top level"


def _pydantic_loc(tree: Any, loc: tuple[Any, ...]) -> list[Any]:
    """Pydantic puts a union's tag (the step type) into ``loc``; drop parts the YAML doesn't have."""
    path, node = [], tree
    for part in loc:
        if isinstance(node, dict) and part in node:
            path.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            path.append(part)
            node = node[part]
        elif isinstance(part, str) and part in STEP_TYPES:
            continue
        else:
            path.append(part)
            break
    return path


def schema_problems(check: Checker, error: ValidationError) -> None:
    for err in error.errors():
        loc = tuple(err["loc"])
        path = _pydantic_loc(check.tree, loc)
        clean = tuple(p for p in path)
        kind = err["type"]
        if kind == "extra_forbidden":
            parent = _where(clean[:-1])
            check.add(path, f"unknown key '{clean[-1]}' in {parent}")
        elif kind == "missing":
            parent, key = clean[:-1], clean[-1]
            if len(parent) == 2 and parent[0] == "steps" and key == "next":
                check.add(parent, f"step '{parent[1]}' has no 'next': callers would hit a dead end")
            else:
                check.add(parent, f"{_where(parent)} is missing '{key}'")
        elif kind == "union_tag_invalid":
            got = err.get("input", {}).get("type") if isinstance(err.get("input"), dict) else None
            check.add(list(path) + ["type"], f"{_where(clean)}: unknown step type '{got}'; use one of "
                      + ", ".join(STEP_TYPES))
        elif kind == "union_tag_not_found":
            check.add(path, f"{_where(clean)} has no 'type' (one of {', '.join(STEP_TYPES)})")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            check.add(path, f"{_where(clean)}: {msg}")


def placeholders(text: str | None) -> set[str]:
    if not text:
        return set()
    try:
        return {name.split(".")[0].split("[")[0] for _, name, _, _ in string.Formatter().parse(text) if name}
    except ValueError:
        return {"<unbalanced braces>"}


def _texts(step: Any) -> dict[str, str]:
    return {k: getattr(step, k) for k in ("say", "keypad", "reprompt", "confirm", "thanks") if getattr(step, k, None)}


def graph_problems(check: Checker, spec: FlowSpec, transfer_words: list[str] | None) -> None:
    steps = spec.steps
    if spec.start not in steps:
        check.add(["start"], f"start step '{spec.start}' does not exist")

    # Transitions to steps that do not exist, and branch keys that cannot occur.
    for sid, step in steps.items():
        for where, target in targets(step).items():
            if target not in steps:
                check.add(["steps", sid, *where.split(".", 1)], f"step '{sid}': {where} goes to missing step '{target}'")
        if step.type == "route":
            for intent in step.routes:
                if intent not in spec.intents:
                    check.add(["steps", sid, "routes", intent], f"step '{sid}' routes unknown intent '{intent}'")
        if isinstance(step, AskStep):
            _ask_problems(check, sid, step)

    # Prompts: present, and named prompts defined.
    for sid, step in steps.items():
        if step.type == "hours":
            continue
        if step.say and step.prompt:
            check.add(["steps", sid, "prompt"], f"step '{sid}' has both 'say' and 'prompt'; keep one")
        if step.prompt and step.prompt not in spec.prompts:
            check.add(["steps", sid, "prompt"], f"step '{sid}': prompt '{step.prompt}' is not defined under 'prompts'")
        elif step.type in _NEEDS_PROMPT and not step.say and not step.prompt:
            check.add(["steps", sid], f"step '{sid}' ({step.type}) has no prompt: add 'say' or 'prompt'")

    _placeholder_problems(check, spec)

    # Reachability from the start, and a way out from every step.
    if spec.start in steps:
        reach = _reachable(spec, [spec.start])
        for sid in steps:
            if sid not in reach:
                check.add(["steps", sid], f"step '{sid}' is unreachable from start step '{spec.start}'")
    can_end = {sid for sid, s in steps.items() if s.type in TERMINAL_TYPES}
    changed = True
    while changed:
        changed = False
        for sid, step in steps.items():
            if sid not in can_end and any(t in can_end for t in targets(step).values()):
                can_end.add(sid)
                changed = True
    for sid, step in steps.items():
        if sid not in can_end and any(t in steps for t in targets(step).values()):
            check.add(["steps", sid], f"step '{sid}' has no way out: no path from it reaches a transfer, "
                      "feedback or hangup step (callers would loop forever)")

    _disclosure_problem(check, spec)

    # Messages the engine needs, in this flow's language.
    for key in spec.messages:
        if key not in MESSAGE_KEYS:
            check.add(["messages", key], f"unknown message '{key}'")
    if spec.language not in MESSAGES:
        missing = sorted(MESSAGE_KEYS - set(spec.messages))
        if missing:
            check.add(["language"], f"language '{spec.language}' has no built-in messages; "
                      f"define these under 'messages': {', '.join(missing)}")
    if not (spec.transfer_words or transfer_words):
        check.add(["language"], f"no words to ask for an agent in language '{spec.language}': "
                  "add 'transfer_words' to the flow or dialog.transfer_words in config.yaml")


def _ask_problems(check: Checker, sid: str, step: AskStep) -> None:
    base = ["steps", sid]
    if step.slot_type == "choice":
        if not step.choices:
            check.add(base, f"step '{sid}': slot_type choice needs 'choices'")
    elif step.choices:
        check.add(base + ["choices"], f"step '{sid}': 'choices' only applies to slot_type choice")
    if step.length is not None and step.slot_type != "digits":
        check.add(base + ["length"], f"step '{sid}': 'length' only applies to slot_type digits")
    rng = step.length_range
    if rng and (rng[0] < 1 or rng[0] > rng[1]):
        check.add(base + ["length"], f"step '{sid}': length must be a positive number or [min, max]")
    values: set[str] | None = None
    if step.slot_type == "yes_no":
        values = {"yes", "no"}
    elif step.slot_type == "choice" and step.choices:
        values = set(step.choices)
    if step.branches and values is None:
        check.add(base + ["branches"], f"step '{sid}': 'branches' only applies to yes_no and choice slots")
    for key in step.branches:
        if values is not None and key not in values:
            check.add(base + ["branches", key], f"step '{sid}': branch '{key}' can never be chosen "
                      f"(answers are: {', '.join(sorted(values))})")
    covered = values is not None and values <= set(step.branches)
    if not step.next and not covered:
        check.add(base, f"step '{sid}' has no 'next' (and its branches do not cover every answer): "
                  "callers would hit a dead end")
    if step.secret and step.confirm and "{value}" in step.confirm:
        check.add(base + ["confirm"], f"step '{sid}': a secret slot must never be said back; remove {{value}}")


def _reachable(spec: FlowSpec, start: list[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(start)
    while todo:
        sid = todo.pop()
        if sid in seen or sid not in spec.steps:
            continue
        seen.add(sid)
        todo.extend(targets(spec.steps[sid]).values())
    return seen


def _placeholder_problems(check: Checker, spec: FlowSpec) -> None:
    """A {slot} in a prompt must be filled on every path to that step, and never be a secret."""
    steps = spec.steps
    secret = {s.slot for s in steps.values() if isinstance(s, AskStep) and s.secret}
    known = {s.slot for s in steps.values() if isinstance(s, AskStep)}
    preds: dict[str, list[str]] = {sid: [] for sid in steps}
    for sid, step in steps.items():
        for target in targets(step).values():
            if target in preds:
                preds[target].append(sid)
    sets: dict[str, set[str]] = {sid: set(known) for sid in steps}
    sets_out = dict(sets)
    changed = True
    while changed:
        changed = False
        for sid, step in steps.items():
            if sid == spec.start:
                before: set[str] = set()
            else:
                ins = [sets_out[p] for p in preds[sid]]
                before = set.intersection(*ins) if ins else set()
            after = before | ({step.slot} if isinstance(step, AskStep) else set())
            if before != sets[sid] or after != sets_out[sid]:
                sets[sid], sets_out[sid] = before, after
                changed = True
    for sid, step in steps.items():
        for key, text in _texts(step).items():
            allowed = sets[sid] | (_BUILTIN_PLACEHOLDERS | {step.slot} if key == "confirm" and isinstance(step, AskStep) else set())
            for name in placeholders(text):
                if name == "<unbalanced braces>":
                    check.add(["steps", sid, key], f"step '{sid}': {key} has unbalanced braces")
                elif name in secret:
                    check.add(["steps", sid, key], f"step '{sid}': {key} would say secret slot '{name}' aloud")
                elif name not in known and name not in allowed:
                    check.add(["steps", sid, key], f"step '{sid}': {key} uses unknown placeholder '{{{name}}}'")
                elif name not in allowed:
                    check.add(["steps", sid, key], f"step '{sid}': {key} uses '{{{name}}}', which is not asked "
                              "on every path to this step")
    for pid, text in spec.prompts.items():
        for name in placeholders(text):
            if name in secret:
                check.add(["prompts", pid], f"prompt '{pid}' would say secret slot '{name}' aloud")


def _disclosure_problem(check: Checker, spec: FlowSpec) -> None:
    """The caller must hear that this is a machine before they are asked anything."""
    phrases = [p.lower() for p in (spec.disclosure or DISCLOSURE.get(spec.language, ()))]
    if not phrases:
        check.add(["language"], f"no disclosure phrases known for language '{spec.language}': add 'disclosure'")
        return
    opening: list[str] = []
    texts: list[str] = []
    keyed: list[str] = []        # the opening as a keypad-only call hears it
    todo, seen = [spec.start], set()
    while todo:
        sid = todo.pop(0)
        if sid in seen or sid not in spec.steps:
            continue
        seen.add(sid)
        step = spec.steps[sid]
        opening.append(sid)
        text = step.say if getattr(step, "say", None) else spec.prompts.get(getattr(step, "prompt", None) or "", "")
        texts.append((text or "").lower())
        keyed.append((getattr(step, "keypad", None) or text or "").lower())
        if step.type in LISTENING_TYPES or step.type in TERMINAL_TYPES:
            continue
        todo.extend(targets(step).values())
    if not any(p in t for t in texts for p in phrases):
        check.add(["steps", spec.start], "the opening (" + ", ".join(opening) + ") never tells callers they are "
                  f"talking to a digital assistant; say so, e.g. with one of: {', '.join(phrases[:3])}")
    elif not any(p in t for t in keyed for p in phrases):
        check.add(["steps", spec.start], "the opening's keypad texts never tell callers they are talking to a "
                  f"digital assistant; say so, e.g. with one of: {', '.join(phrases[:3])}")


