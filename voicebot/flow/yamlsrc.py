"""YAML reading that remembers line numbers.

Operators fix flows from error messages, so every error must say on which line the problem sits.
PyYAML forgets positions once it builds Python objects; this loader keeps them in ``.lines``
(key or index -> 1-based line) on the dicts and lists it returns, and refuses duplicate keys,
which plain YAML loading would silently merge.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

import yaml


class LineDict(dict):
    """A dict that knows the line of each key (``lines[key]``) and of itself (``line``)."""

    line: int = 0
    lines: dict[Any, int]


class LineList(list):
    """A list that knows the line of each item."""

    line: int = 0
    lines: dict[int, int]


class DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, line: int, first: int):
        self.key, self.line, self.first = key, line, first
        super().__init__(f"key '{key}' appears twice (first on line {first})")


class _Loader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> LineDict:  # type: ignore[override]
        self.flatten_mapping(node)
        out = LineDict()
        out.line = node.start_mark.line + 1
        out.lines = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in out.lines:
                raise DuplicateKey(key, line, out.lines[key])
            out[key] = self.construct_object(value_node, deep=True)
            out.lines[key] = line
        return out

    def construct_sequence(self, node: yaml.SequenceNode, deep: bool = False) -> LineList:  # type: ignore[override]
        out = LineList(self.construct_object(child, deep=True) for child in node.value)
        out.line = node.start_mark.line + 1
        out.lines = {i: child.start_mark.line + 1 for i, child in enumerate(node.value)}
        return out


# YAML 1.1 reads yes/no/on/off as booleans, which turns `branches: {yes: a, no: b}` and a choice
# phrase "no" into True/False. Flows follow YAML 1.2 here: only true/false are booleans.
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_constructor("tag:yaml.org,2002:map", _Loader.construct_mapping)
_Loader.add_constructor("tag:yaml.org,2002:seq", _Loader.construct_sequence)


def load_yaml(text: str) -> Any:
    """Parse YAML text into LineDict/LineList trees. Raises yaml.YAMLError (with marks) on bad syntax."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader


def line_of(tree: Any, path: Iterable[Any]) -> int | None:
    """The line of the deepest element of ``path`` that exists in ``tree``."""
    line = getattr(tree, "line", None) or None
    node = tree
    for part in path:
        lines = getattr(node, "lines", None)
        if lines is None or part not in lines:
            break
        line = lines[part]
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            break
    return line


def yaml_problem(exc: yaml.YAMLError) -> tuple[int | None, str]:
    """The line to fix and what is wrong, for a YAML syntax error.

    PyYAML reports where it gave up (``problem_mark``), which is often the line after the mistake:
    a key without ':' is noticed on the next line, an unclosed quote or bracket at the end of the
    file. Its ``context_mark`` points at where the broken key, quote or bracket starts: that line is
    the one to fix.
    """
    problem = getattr(exc, "problem_mark", None)
    context = getattr(exc, "context_mark", None)
    what = getattr(exc, "problem", None) or str(exc)
    about = getattr(exc, "context", None) or ""
    at = problem.line + 1 if problem else None
    if what.startswith("expected <block end>"):
        return at, "this line is indented differently from the lines above it"
    if what.startswith("mapping values are not allowed"):
        return at, "a second ':' on this line; put a text containing ':' in quotes"
    if context is None or problem is None or context.line >= problem.line:
        return at, what
    start = context.line + 1
    if "simple key" in about:
        return start, f"this line has no ':' after its key (or is indented wrongly; noticed on line {at})"
    if "quoted scalar" in about:
        return start, f"a quote opened on this line is never closed ({what} on line {at})"
    if "flow mapping" in about or "flow sequence" in about:
        bracket = "{" if "mapping" in about else "["
        return start, f"the '{bracket}' opened on this line is not closed properly ({what} on line {at})"
    return at, f"{what} ({about} started on line {start})"
