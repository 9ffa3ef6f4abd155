"""The YAML 1.2 loader flows are read with (it lives in ``voicebot.yaml12`` so config and commands
share it), and YAML syntax errors told as the line to fix."""

from __future__ import annotations

import yaml

from voicebot.yaml12 import DuplicateKey, LineDict, LineList, line_of, load_yaml

__all__ = ["DuplicateKey", "LineDict", "LineList", "line_of", "load_yaml", "yaml_problem"]


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
