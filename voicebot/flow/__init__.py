"""Call flows: loading a YAML file into a checked, ready-to-run ``Flow``.

``load_flow`` raises ``FlowError`` with every problem in the file (each with its line) or returns
a ``Flow`` whose intent classifier is trained (or taken from ``nlu.cache`` when the flow's examples
have not changed) and whose texts are resolved.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import ValidationError

from voicebot.errors import FlowError, Problem
from voicebot.flow.messages import TRANSFER_WORDS, messages_for
from voicebot.flow.schema import AskStep, FlowSpec
from voicebot.flow.validate import Checker, graph_problems, salvage, schema_problems
from voicebot.flow.yamlsrc import DuplicateKey, load_yaml, yaml_problem
from voicebot.nlu.cache import trained_classifier
from voicebot.nlu.intents import IntentClassifier


@dataclass
class Flow:
    """A validated flow plus what it needs at run time (classifier, messages, words)."""

    spec: FlowSpec
    path: str
    transfer_words: list[str]
    messages: dict[str, str]
    classifier: IntentClassifier | None = field(default=None, repr=False)
    version: str = ""
    """The first 12 hex digits of the SHA-256 of the file's text: recorded with every call, so that
    calls before and after a change of the flow can be told apart."""

    @property
    def id(self) -> str:
        return self.spec.flow

    @property
    def language(self) -> str:
        return self.spec.language

    def step(self, step_id: str) -> Any:
        return self.spec.steps[step_id]

    def prompt_text(self, step_id: str) -> str:
        step = self.spec.steps[step_id]
        if getattr(step, "prompt", None):
            return self.spec.prompts[step.prompt]
        return getattr(step, "say", None) or ""

    def prompt_id(self, step_id: str) -> str:
        """Recorded audio is looked up by this id (``audio/<language>/<id>.wav``)."""
        return getattr(self.spec.steps[step_id], "prompt", None) or step_id

    def msg(self, key: str, **values: Any) -> str:
        return self.messages[key].format(**values)

    def secret_slots(self) -> set[str]:
        return {s.slot for s in self.spec.steps.values() if isinstance(s, AskStep) and s.is_secret}


def _default_words(language: str, configured: dict[str, list[str]] | None) -> list[str]:
    """The words for ``language`` from settings (``dialog.transfer_words``), else the built-in ones."""
    words = configured if configured is not None else TRANSFER_WORDS
    return list(words.get(language, []))


def parse_flow(text: str, file: str, transfer_words: dict[str, list[str]] | None = None) -> Flow:
    """Validate flow text; ``file`` is only used in messages."""
    try:
        tree = load_yaml(text)
    except DuplicateKey as exc:
        raise FlowError([Problem(file, exc.line, str(exc))]) from None
    except yaml.YAMLError as exc:
        line, what = yaml_problem(exc)
        raise FlowError([Problem(file, line, f"not valid YAML: {what}")]) from None
    if not isinstance(tree, dict):
        raise FlowError([Problem(file, 1, "a flow must be a mapping with 'flow', 'language', 'start' and 'steps'")])
    check = Checker(file, tree)
    try:
        spec = FlowSpec.model_validate(tree)
    except ValidationError as exc:
        schema_problems(check, exc)
        partial = salvage(tree, exc)
        if partial is not None:
            words = partial.spec.transfer_words or _default_words(partial.spec.language, transfer_words)
            graph_problems(check, partial.spec, words, skipped=partial.dropped_steps)
        raise FlowError(check.problems) from None
    words = spec.transfer_words or _default_words(spec.language, transfer_words)
    graph_problems(check, spec, words)
    if check.problems:
        raise FlowError(check.problems)
    classifier = None
    if spec.intents:
        classifier = trained_classifier(
            {name: intent.examples for name, intent in spec.intents.items()}, spec.out_of_scope, spec.language
        )
    return Flow(spec=spec, path=file, transfer_words=words,
                messages=messages_for(spec.language, spec.messages), classifier=classifier,
                version=flow_version(text))


def flow_version(text: str) -> str:
    """A flow's version: its content hash (``Flow.version``)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def load_flow(path: str | Path, transfer_words: dict[str, list[str]] | None = None) -> Flow:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FlowError([Problem(str(path), None, f"cannot read file: {exc.strerror or exc}")]) from None
    except UnicodeDecodeError:
        raise FlowError([Problem(str(path), None, "not UTF-8 text")]) from None
    return parse_flow(text, str(path), transfer_words)


def check_files(paths: Iterable[str | Path], transfer_words: dict[str, list[str]] | None = None
                ) -> tuple[dict[str, Flow], list[Problem]]:
    """Load every file: the valid flows by id, and every problem found. Flow ids must be unique."""
    problems: list[Problem] = []
    flows: dict[str, Flow] = {}
    for path in paths:
        try:
            flow = load_flow(path, transfer_words)
        except FlowError as exc:
            problems.extend(exc.problems)
            continue
        if flow.id in flows:
            problems.append(Problem(str(path), 1, f"flow id '{flow.id}' is also used by {flows[flow.id].path}"))
            continue
        flows[flow.id] = flow
    return flows, problems


def load_flows(directory: str | Path, transfer_words: dict[str, list[str]] | None = None) -> dict[str, Flow]:
    """All flows of a directory by id; raises FlowError listing the problems of every bad file."""
    flows, problems = check_files(sorted(Path(directory).glob("*.yaml")), transfer_words)
    if problems:
        raise FlowError(problems)
    return flows
