"""Everything that can be wrong with a flow, found at load time and reported with file and line.

A flow is checked as a whole and every problem is reported at once, so an operator fixes a file
in one pass instead of one error per run.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, replace
import string
from typing import Any, Iterable

from pydantic import ValidationError

from voicebot.errors import Problem
from voicebot.flow.messages import COMMENT_KEYS, IDENTITY_KEYS, MESSAGE_KEYS, MESSAGES
from voicebot.flow.schema import (
    KEYS_ONLY_SLOT_TYPES, LISTENING_TYPES, STEP_TYPES, TERMINAL_TYPES, VERIFY_METHODS, AnswerStep, AskStep, Defaults,
    FeedbackStep, FlowSpec, HangupStep, Hours, HoursStep, IdentitySettings, RouteStep, SayStep, SmsStep,
    TransferSettings, TransferStep, VerifyStep, targets,
)
from voicebot.flow.yamlsrc import line_of
from voicebot.nlu.lexicon import DISCLOSURE
from voicebot.nlu.slots import PIN_LENGTH

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


def did_you_mean(name: Any, options: Iterable[Any]) -> str:
    """ "; did you mean 'x'?" for the nearest of ``options``, or "" when nothing is near."""
    close = difflib.get_close_matches(str(name), [str(o) for o in options], n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


_STEP_MODELS = {name: model for name, model in zip(STEP_TYPES, (
    SayStep, AnswerStep, RouteStep, AskStep, HoursStep, TransferStep, SmsStep, FeedbackStep, HangupStep,
    VerifyStep))}
_STEP_SETTINGS = {f for model in _STEP_MODELS.values() for f in model.model_fields}
_SECTIONS = {"defaults": Defaults, "transfer": TransferSettings, "hours": Hours, "identity": IdentitySettings}
_KINDS = {
    "int_type": "a whole number", "int_parsing": "a whole number", "int_from_float": "a whole number",
    "float_type": "a number", "float_parsing": "a number", "bool_type": "true or false",
    "bool_parsing": "true or false", "string_type": "text", "list_type": "a list", "dict_type": "a mapping",
    "model_type": "a mapping (indented 'key: value' lines)",
    "model_attributes_type": "a mapping (indented 'key: value' lines)", "date_type": "a date (YYYY-MM-DD)",
    "date_from_datetime_parsing": "a date (YYYY-MM-DD)", "tuple_type": "a list",
}

_BOUNDS = {"less_than_equal": ("at most", "le"), "greater_than_equal": ("at least", "ge"),
           "less_than": ("below", "lt"), "greater_than": ("above", "gt")}


def _pydantic_loc(tree: Any, loc: tuple[Any, ...]) -> list[Any]:
    """Pydantic puts a union's tag (the step type) into ``loc``; drop parts the YAML doesn't have."""
    if len(loc) >= 3 and loc[0] == "steps" and loc[2] in STEP_TYPES:
        loc = loc[:2] + loc[3:]      # the tag, which can also be a key ("say")
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


def _owner(path: tuple[Any, ...]) -> str:
    """Who a setting belongs to, in the operator's words: "step 'menu'", "'defaults'", "the flow"."""
    if len(path) >= 2 and path[0] == "steps":
        return f"step '{path[1]}'"
    return f"'{_where(path)}'" if path else "the flow"


def _step_type(tree: Any, sid: Any) -> str | None:
    step = tree.get("steps", {}).get(sid) if isinstance(tree, dict) and isinstance(tree.get("steps"), dict) else None
    kind = step.get("type") if isinstance(step, dict) else None
    return kind if kind in _STEP_MODELS else None


def _unknown_key(tree: Any, path: tuple[Any, ...]) -> str:
    parent, key = path[:-1], path[-1]
    if len(parent) == 2 and parent[0] == "steps":
        kind = _step_type(tree, parent[1])
        options = _STEP_MODELS[kind].model_fields if kind else _STEP_SETTINGS
        what = f"a setting of {'an' if (kind or 'x')[0] in 'aeiou' else 'a'} {kind} step" if kind else "a step setting"
        return f"step '{parent[1]}': '{key}' is not {what}{did_you_mean(key, options)}"
    if not parent:
        return f"'{key}' is not a flow setting{did_you_mean(key, FlowSpec.model_fields)}"
    if len(parent) == 1 and parent[0] in _SECTIONS:
        return f"'{key}' is not a setting of '{parent[0]}'{did_you_mean(key, _SECTIONS[parent[0]].model_fields)}"
    if parent[-1] == "confidence":
        return f"{_owner(parent)}: '{key}' is not a confidence setting{did_you_mean(key, ('accept', 'confirm'))}"
    return f"unknown key '{key}' in {_where(parent)}"


def _misplaced_setting(check: "Checker", key: str) -> Problem | None:
    """A step setting written at step level (dedented): pydantic sees a step named ``key``."""
    steps = check.tree.get("steps")
    if key not in _STEP_SETTINGS or not isinstance(steps, dict) or isinstance(steps.get(key), dict):
        return None
    names = list(steps)
    before = [n for n in names[:names.index(key)] if isinstance(steps[n], dict)]
    owner = f" of step '{before[-1]}' above it" if before else ""
    return Problem(check.file, line_of(check.tree, ["steps", key]),
                   f"'{key}' is at the wrong indentation: it is read as a step of its own, but it is a "
                   f"setting{owner}; indent it like the other settings of that step")


def schema_problems(check: Checker, error: ValidationError) -> None:
    """Pydantic's errors as sentences about the flow, each at the line to fix."""
    misplaced: dict[str, Problem] = {}
    for err in error.errors():
        path = tuple(_pydantic_loc(check.tree, tuple(err["loc"])))
        if len(path) == 2 and path[0] == "steps" and err["type"] in ("model_attributes_type", "model_type"):
            found = _misplaced_setting(check, path[1])
            if found is not None:
                misplaced[path[1]] = found
    first = len(check.problems)
    for err in error.errors():
        path = tuple(_pydantic_loc(check.tree, tuple(err["loc"])))
        kind = err["type"]
        if len(path) == 2 and path[0] == "steps" and path[1] in misplaced:
            continue
        if kind == "extra_forbidden":
            check.add(path, _unknown_key(check.tree, path))
        elif kind == "missing":
            parent, key = path[:-1], path[-1]
            if key in misplaced and len(parent) == 2:
                cause = misplaced[key]
                misplaced[key] = replace(cause, message=cause.message + f"\n    (and so {_owner(parent)} on line "
                                         f"{line_of(check.tree, parent)} has no '{key}')")
            elif len(parent) == 2 and parent[0] == "steps" and key == "next":
                check.add(parent, f"step '{parent[1]}' has no 'next': callers would hit a dead end")
            elif not parent:
                check.add(parent, f"the flow has no '{key}'")
            else:
                check.add(parent, f"{_owner(parent)} is missing '{key}'")
        elif kind == "union_tag_invalid":
            got = err["input"].get("type") if isinstance(err.get("input"), dict) else None
            check.add(list(path) + ["type"], f"{_owner(path)}: unknown step type '{got}'"
                      f"{did_you_mean(got, STEP_TYPES)} (use one of {', '.join(STEP_TYPES)})")
        elif kind == "union_tag_not_found":
            check.add(path, f"{_owner(path)} has no 'type' (one of {', '.join(STEP_TYPES)})")
        elif kind == "literal_error":
            expected = [o.strip(" '") for o in str(err.get("ctx", {}).get("expected", "")).replace(" or ", ", ").split(",")]
            check.add(path, f"{_owner(path[:-1])}: '{err['input']}' is not a valid {path[-1]}"
                      f"{did_you_mean(err['input'], expected)} (use one of {', '.join(expected)})")
        elif kind == "string_pattern_mismatch" and path and path[-1] == "language":
            check.add(path, f"language '{err['input']}' is not a language code like nl, en or nl-BE")
        elif kind == "string_pattern_mismatch":
            check.add(path, f"'{err['input']}' is not a valid name (letters, digits and _, not starting with a digit)")
        elif kind in _BOUNDS and path:
            limit = err.get("ctx", {}).get(_BOUNDS[kind][1])
            check.add(path, f"{_owner(path[:-1])}: '{path[-1]}' must be {_BOUNDS[kind][0]} {limit}, "
                      f"not {err['input']!r}")
        elif kind in _KINDS:
            check.add(path, f"{_owner(path[:-1])}: '{path[-1]}' should be {_KINDS[kind]}, not {err['input']!r}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            check.add(path, f"{_where(path)}: {msg}")
    check.problems[first:first] = misplaced.values()


@dataclass
class Salvaged:
    """What is left of a flow once the parts with schema errors are set aside."""

    spec: FlowSpec
    dropped_steps: set[str]


_REQUIRED = {"flow", "language", "start", "steps"}


def salvage(tree: Any, error: ValidationError, rounds: int = 4) -> Salvaged | None:
    """The flow without its unknown keys and broken steps, so the graph can still be checked.

    Returns None when what is broken is needed for every other check (the language, the start, the
    steps themselves).
    """
    if not isinstance(tree, dict):
        return None
    plain = _plain(tree)
    dropped: set[str] = set()
    for _ in range(rounds):
        for err in error.errors():
            loc = tuple(err["loc"])
            if len(loc) >= 3 and loc[0] == "steps" and loc[2] in STEP_TYPES:
                loc = loc[:2] + loc[3:]
            if not loc:
                return None
            if loc[0] == "steps" and len(loc) >= 2 and isinstance(plain.get("steps"), dict):
                step = plain["steps"].get(loc[1])
                if err["type"] == "extra_forbidden" and len(loc) == 3 and isinstance(step, dict):
                    value = step.pop(loc[2], None)
                    meant = difflib.get_close_matches(str(loc[2]), list(_STEP_SETTINGS), n=1, cutoff=0.6)
                    if meant and meant[0] not in step:
                        step[meant[0]] = value      # check the rest as if the suggestion were taken
                else:
                    plain["steps"].pop(loc[1], None)
                    dropped.add(str(loc[1]))
            elif loc[0] in _REQUIRED:
                return None
            elif loc[0] in ("intents", "prompts", "messages", "identity") and len(loc) >= 2 \
                    and isinstance(plain.get(loc[0]), dict):
                plain[loc[0]].pop(loc[1], None)
            else:
                plain.pop(loc[0], None)
        try:
            return Salvaged(FlowSpec.model_validate(plain), dropped)
        except ValidationError as again:
            error = again
    return None


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def placeholders(text: str | None) -> set[str]:
    if not text:
        return set()
    try:
        return {name.split(".")[0].split("[")[0] for _, name, _, _ in string.Formatter().parse(text) if name}
    except ValueError:
        return {"<unbalanced braces>"}


def _texts(step: Any) -> dict[str, str]:
    return {k: getattr(step, k) for k in ("say", "keypad", "reprompt", "confirm", "thanks") if getattr(step, k, None)}


def graph_problems(check: Checker, spec: FlowSpec, transfer_words: list[str] | None,
                   skipped: set[str] = frozenset()) -> None:
    """The checks that need the whole flow. ``skipped`` steps had schema errors and are left out:
    transitions to them are not missing, and the checks that follow every path wait for the fix."""
    if skipped:
        sub = Checker(check.file, check.tree)
        _graph_problems(sub, spec, transfer_words)
        whole_graph = ("is unreachable", "has no way out", "not asked on every path", "digital assistant",
                       "unknown placeholder")
        check.problems.extend(
            p for p in sub.problems
            if not any(f"missing step '{sid}'" in p.message or f"start step '{sid}'" in p.message for sid in skipped)
            and not any(w in p.message for w in whole_graph))
        return
    _graph_problems(check, spec, transfer_words)


def _graph_problems(check: Checker, spec: FlowSpec, transfer_words: list[str] | None) -> None:
    """Graph problems, each missing transition followed by the problems that go away once it is fixed."""
    first = len(check.problems)
    _graph_checks(check, spec, transfer_words)
    found = check.problems[first:]
    for sid, step in spec.steps.items():
        for where, target in targets(step).items():
            if target in spec.steps:
                continue
            cause = next((i for i, p in enumerate(check.problems)
                          if f"step '{sid}': {where} goes to missing step '{target}'" in p.message), None)
            if cause is None:
                continue
            trial = Checker(check.file, check.tree)
            _graph_checks(trial, _repaired(spec, sid, where, target), transfer_words)
            after = {(p.line, p.message) for p in trial.problems}
            follow = [p for p in check.problems
                      if any(p is q for q in found) and p is not check.problems[cause] and (p.line, p.message) not in after
                      and "goes to missing step" not in p.message]
            if not follow:
                continue
            lines = "".join(f"\n      line {p.line}: {p.message}" for p in follow)
            many = "more problem follows from this and goes" if len(follow) == 1 else \
                "more problems follow from this and go"
            check.problems[cause] = replace(check.problems[cause], message=check.problems[cause].message
                                            + f"\n    ({len(follow)} {many} away with it:{lines})")
            check.problems[:] = [p for p in check.problems if not any(p is f for f in follow)]


def _repaired(spec: FlowSpec, sid: str, where: str, target: str) -> FlowSpec:
    """The flow with one missing transition mended: to the nearest step name, or to a stand-in hangup."""
    steps = dict(spec.steps)
    close = difflib.get_close_matches(target, list(steps), n=1, cutoff=0.6)
    if close:
        step = steps[sid]
        if "." in where:
            field, key = where.split(".", 1)
            steps[sid] = step.model_copy(update={field: {**getattr(step, field), key: close[0]}})
        else:
            steps[sid] = step.model_copy(update={where: close[0]})
    else:
        steps[target] = HangupStep(type="hangup", say="-")
    return spec.model_copy(update={"steps": steps})


def _graph_checks(check: Checker, spec: FlowSpec, transfer_words: list[str] | None) -> None:
    steps = spec.steps
    if spec.start not in steps:
        check.add(["start"], f"start step '{spec.start}' does not exist{did_you_mean(spec.start, steps)}")

    # Transitions to steps that do not exist, and branch keys that cannot occur.
    for sid, step in steps.items():
        for where, target in targets(step).items():
            if target not in steps:
                check.add(["steps", sid, *where.split(".", 1)],
                          f"step '{sid}': {where} goes to missing step '{target}'{did_you_mean(target, steps)}")
        if step.type == "route":
            for intent in step.routes:
                if intent not in spec.intents:
                    check.add(["steps", sid, "routes", intent], f"step '{sid}' routes unknown intent '{intent}'"
                              f"{did_you_mean(intent, spec.intents)}")
        if isinstance(step, AskStep):
            _ask_problems(check, sid, step)

    _identity_problems(check, spec)

    # Prompts: present, and named prompts defined.
    for sid, step in steps.items():
        if step.type == "hours":
            continue
        if step.say and step.prompt:
            check.add(["steps", sid, "prompt"], f"step '{sid}' has both 'say' and 'prompt'; keep one")
        if step.prompt and step.prompt not in spec.prompts:
            check.add(["steps", sid, "prompt"], f"step '{sid}': prompt '{step.prompt}' is not defined under 'prompts'"
                      f"{did_you_mean(step.prompt, spec.prompts)}")
        elif step.type in _NEEDS_PROMPT and not step.say and not step.prompt:
            check.add(["steps", sid], f"step '{sid}' ({step.type}) has no prompt: add 'say' or 'prompt'")

    _placeholder_problems(check, spec)

    # Reachability from the start, and a way out from every step.
    if spec.start in steps:
        reach = _reachable(spec, [spec.start])
        for sid in steps:
            if sid not in reach:
                why = (" (no step goes to it, and no intent a route can take needs a level it guards)"
                       if isinstance(steps[sid], VerifyStep) else "")
                check.add(["steps", sid], f"step '{sid}' is unreachable from start step '{spec.start}'{why}")
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
            check.add(["messages", key], f"unknown message '{key}'{did_you_mean(key, MESSAGE_KEYS)}")
    if spec.language not in MESSAGES:
        needed = set(MESSAGE_KEYS)
        if not any(isinstance(s, VerifyStep) for s in steps.values()):
            needed -= IDENTITY_KEYS
        if not any(isinstance(s, FeedbackStep) and s.comment for s in steps.values()):
            needed -= COMMENT_KEYS
        missing = sorted(needed - set(spec.messages))
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
    if step.length is not None and step.slot_type not in ("digits", "pin"):
        check.add(base + ["length"], f"step '{sid}': 'length' only applies to slot_type digits and pin")
    rng = step.length_range
    if rng and (rng[0] < 1 or rng[0] > rng[1]):
        check.add(base + ["length"], f"step '{sid}': length must be a positive number or [min, max]")
    elif rng and step.slot_type == "pin" and not (PIN_LENGTH[0] <= rng[0] and rng[1] <= PIN_LENGTH[1]):
        check.add(base + ["length"], f"step '{sid}': a PIN has {PIN_LENGTH[0]} to {PIN_LENGTH[1]} digits, "
                  f"so its length must lie within {PIN_LENGTH[0]} to {PIN_LENGTH[1]}")
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
    if step.is_secret and step.confirm:
        # The engine never reads a secret back; a confirm question without the value would confirm nothing.
        check.add(base + ["confirm"], f"step '{sid}': a secret slot must never be said back, so it is never "
                  "confirmed: remove 'confirm'")
    if step.slot_type in KEYS_ONLY_SLOT_TYPES and step.input in ("speech", "both"):
        check.add(base + ["input"], f"step '{sid}': a PIN is keyed only, never said aloud (anyone near the "
                  "caller could hear it): remove 'input' or write 'input: dtmf'")


def _reachable(spec: FlowSpec, start: list[str]) -> set[str]:
    """Steps a call can reach: by transitions, and a route's verify step that guards an intent."""
    seen: set[str] = set()
    todo = list(start)
    while todo:
        sid = todo.pop()
        if sid in seen or sid not in spec.steps:
            continue
        seen.add(sid)
        todo.extend(targets(spec.steps[sid]).values())
        todo.extend(_gates(spec, spec.steps[sid]))
    return seen


def _gates(spec: FlowSpec, step: Any) -> list[str]:
    """The verify steps a route step enters before an intent that needs a level."""
    if not isinstance(step, RouteStep):
        return []
    weakest = spec.identity.levels[0]
    found = (spec.gate_for(spec.needed_level(intent)) for intent in step.routes
             if spec.needed_level(intent) != weakest)
    return [sid for sid in found if sid]


def _identity_problems(check: Checker, spec: FlowSpec) -> None:
    """Levels and methods that exist, intents whose level some verify step reaches, verify steps that
    can do what they say, and values verification reads from the flow's own slots of the right type."""
    ids = spec.identity
    levels = ids.levels
    seen: set[str] = set()
    for i, level in enumerate(levels):
        if level in seen:
            check.add(["identity", "levels", i], f"identity level '{level}' is listed twice")
        seen.add(level)
    for method, level in ids.methods.items():
        if method not in VERIFY_METHODS:
            check.add(["identity", "methods", method], f"identity.methods: unknown verification method '{method}'"
                      f"{did_you_mean(method, VERIFY_METHODS)} (use one of {', '.join(VERIFY_METHODS)})")
        elif level not in levels:
            check.add(["identity", "methods", method], f"identity.methods: method '{method}' gives unknown level "
                      f"'{level}'{did_you_mean(level, levels)} (the levels are {', '.join(levels)})")
        elif method == "caller_id" and level == levels[-1]:
            check.add(["identity", "methods", method], f"identity.methods: caller_id cannot give the highest level "
                      f"'{level}': a calling number can be spoofed, so it never verifies a caller alone "
                      "(give it a lower level)")
    verify = {sid: step for sid, step in spec.steps.items() if isinstance(step, VerifyStep)}
    for sid, step in verify.items():
        _verify_step_problems(check, spec, sid, step)
    for name, intent in spec.intents.items():
        if intent.identity is None:
            continue
        where = ["intents", name, "identity"]
        if intent.identity not in levels:
            check.add(where, f"intent '{name}' needs unknown identity level '{intent.identity}'"
                      f"{did_you_mean(intent.identity, levels)} (the levels are {', '.join(levels)})")
        elif intent.identity == levels[0]:
            continue
        elif not verify:
            check.add(where, f"intent '{name}' needs identity level '{intent.identity}', but the flow has no "
                      "verify step to find out who is calling: add a step with 'type: verify'")
        elif spec.gate_for(intent.identity) is None:
            best = max((spec.reach(step) for step in verify.values()), key=ids.rank)
            check.add(where, f"intent '{name}' needs identity level '{intent.identity}', which no verify step's "
                      f"methods reach (the highest they give is '{best}')")
    if verify:
        _verify_slot_problems(check, spec)
    entered = {target: (sid, where) for sid, step in spec.steps.items() for where, target in targets(step).items()}
    for sid, step in verify.items():
        if step.next:
            continue
        if spec.start == sid:
            check.add(["steps", sid], f"verify step '{sid}' is the start step and has no 'next': callers "
                      "would hit a dead end once verified")
        elif sid in entered:
            source, where = entered[sid]
            check.add(["steps", sid], f"verify step '{sid}' has no 'next', but step '{source}' goes to it "
                      f"({where}): add 'next' for where the call goes once verified")


def _verify_step_problems(check: Checker, spec: FlowSpec, sid: str, step: VerifyStep) -> None:
    ids = spec.identity
    base = ["steps", sid]
    for i, method in enumerate(step.methods):
        if method not in VERIFY_METHODS:
            check.add(base + ["methods", i], f"step '{sid}': unknown verification method '{method}'"
                      f"{did_you_mean(method, VERIFY_METHODS)} (use one of {', '.join(VERIFY_METHODS)})")
        elif step.methods.index(method) != i:
            check.add(base + ["methods", i], f"step '{sid}': method '{method}' is listed twice")
        elif ids.method_level(method) not in ids.levels:
            check.add(base + ["methods", i], f"step '{sid}': method '{method}' gives level "
                      f"'{ids.method_level(method)}', which is not one of the flow's levels "
                      f"({', '.join(ids.levels)}); name its level under identity.methods")
    if step.level is None:
        return
    if step.level not in ids.levels:
        check.add(base + ["level"], f"step '{sid}': unknown identity level '{step.level}'"
                  f"{did_you_mean(step.level, ids.levels)} (the levels are {', '.join(ids.levels)})")
    elif ids.rank(step.level) > ids.rank(spec.reach(step)):
        check.add(base + ["level"], f"step '{sid}': level '{step.level}' cannot be reached with these methods "
                  f"(the highest they give is '{spec.reach(step)}')")


VERIFY_SLOTS = {"customer_number": ("digits",), "house_number": ("house_number", "digits", "number")}
"""Slots a verify step reads when an ask step filled them earlier, and the types that fit."""


def _verify_slot_problems(check: Checker, spec: FlowSpec) -> None:
    for sid, step in spec.steps.items():
        if isinstance(step, AskStep) and step.slot in VERIFY_SLOTS:
            fitting = VERIFY_SLOTS[step.slot]
            if step.slot_type not in fitting:
                check.add(["steps", sid, "slot_type"], f"step '{sid}': slot '{step.slot}' is read by verification "
                          f"as a {step.slot.replace('_', ' ')}, so it must be slot_type {' or '.join(fitting)}")
            elif step.is_secret:
                check.add(["steps", sid, "secret"], f"step '{sid}': slot '{step.slot}' is read by verification, "
                          "which needs its value: it cannot be secret")


def _placeholder_problems(check: Checker, spec: FlowSpec) -> None:
    """A {slot} in a prompt must be filled on every path to that step, and never be a secret."""
    steps = spec.steps
    secret = {s.slot for s in steps.values() if isinstance(s, AskStep) and s.is_secret}
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


