"""New example sentences written into a flow file's text, leaving every other byte as it was.

Operators keep comments, order and layout in their flow files, so the file is not loaded and dumped
again: the sentences are inserted as new list items right after the last item of
``intents.<name>.examples`` (or of ``out_of_scope``, made at the end of the file when the flow has
none), in the list's own style (block items at the dash's indentation, or appended inside a
``[...]`` list), with the file's own line endings. Each sentence is written plain when YAML reads
it back as the same text, quoted otherwise. The result is read back and checked: each list must be
what it was plus the new sentences, or ``AdditionError`` says why nothing was written.

Pure: text in, text out. Validating the whole flow (``parse_flow``) is the caller's next step.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from voicebot.yaml12 import load_yaml

OUT_OF_SCOPE = "out_of_scope"


class AdditionError(ValueError):
    """The file's shape does not allow adding the sentences safely; nothing was changed."""


@dataclass
class Additions:
    """The new text, and what happened to each sentence asked for."""

    text: str
    added: list[tuple[str, str]] = field(default_factory=list)       # (intent or "out_of_scope", sentence)
    present: list[tuple[str, str]] = field(default_factory=list)     # already in that very list
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (where, sentence, why)


def same(text: str) -> str:
    """A sentence as compared with the flow's: case and spacing do not make it new."""
    return " ".join(text.split()).casefold()


def add_examples(text: str, examples: list[tuple[str, str]]) -> Additions:
    """``text`` with each ``(where, sentence)`` added: ``where`` an intent's name or ``out_of_scope``.

    A sentence already in its list is not added again (``present``); one that is an example of
    another intent, or out of scope while it is an example, or for an intent the flow does not
    have, is left out (``skipped``, with the reason): the operator's verdict and the file disagree."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    tree = load_yaml(text)
    if not isinstance(root, yaml.MappingNode) or not isinstance(tree, dict):
        raise AdditionError("the flow file is not a mapping")
    intents = tree.get("intents") or {}
    lists = {name: list((spec or {}).get("examples") or []) for name, spec in intents.items()
             if isinstance(spec, dict)}
    lists[OUT_OF_SCOPE] = list(tree.get(OUT_OF_SCOPE) or [])
    owner = {}
    for where, sentences in lists.items():
        for sentence in sentences:
            owner.setdefault(same(str(sentence)), where)
    result = Additions(text)
    wanted: dict[str, list[str]] = {}
    for where, sentence in examples:
        sentence = " ".join(str(sentence).split())
        key = same(sentence)
        if not sentence:
            result.skipped.append((where, sentence, "empty"))
        elif where not in lists:
            result.skipped.append((where, sentence, f"the flow has no intent {where}"))
        elif owner.get(key) == where:
            result.present.append((where, sentence))
        elif key in owner:
            other = owner[key]
            result.skipped.append((where, sentence, "it is out of scope in the flow" if other == OUT_OF_SCOPE
                                   else f"it is an example of {other} in the flow"))
        else:
            owner[key] = where
            wanted.setdefault(where, []).append(sentence)
            result.added.append((where, sentence))
    if not wanted:
        return result
    newline = "\r\n" if "\r\n" in text else "\n"
    inserts: list[tuple[int, str]] = []
    for where, sentences in wanted.items():
        node = _list_node(root, where)
        if node is None:
            inserts.append(_new_out_of_scope(text, sentences, newline))
        else:
            inserts.append(_append(text, node, sentences, newline, where))
    patched = text
    for index, piece in sorted(inserts, key=lambda pair: pair[0], reverse=True):
        patched = patched[:index] + piece + patched[index:]
    _check(patched, lists, wanted)
    result.text = patched
    return result


def _value(mapping: yaml.Node, key: str) -> yaml.Node | None:
    if not isinstance(mapping, yaml.MappingNode):
        return None
    return next((value for name, value in mapping.value if isinstance(name, yaml.ScalarNode) and name.value == key),
                None)


def _list_node(root: yaml.MappingNode, where: str) -> yaml.Node | None:
    """The node of the list the sentences go in; None for a flow without ``out_of_scope``."""
    if where == OUT_OF_SCOPE:
        node = _value(root, OUT_OF_SCOPE)
    else:
        node = _value(_value(_value(root, "intents"), where), "examples")
    if node is None and where == OUT_OF_SCOPE:
        return None
    if not isinstance(node, yaml.SequenceNode):
        place = "out_of_scope" if where == OUT_OF_SCOPE else f"intents.{where}.examples"
        raise AdditionError(f"{place} is not a list (write it as one, e.g. `{place.rsplit('.', 1)[-1]}: []`)")
    return node


def _plain_or_quoted(sentence: str, flow_style: bool) -> str:
    """The sentence as a YAML scalar: plain when both YAML 1.2 (ours) and 1.1 read it back unchanged."""
    if not re.search(r"[\r\n\t]", sentence):
        sample = f"[{sentence}]" if flow_style else f"- {sentence}\n"
        try:
            if load_yaml(sample) == [sentence] and yaml.safe_load(sample) == [sentence]:
                return sentence
        except yaml.YAMLError:
            pass
    return json.dumps(sentence, ensure_ascii=False)        # a JSON string is a YAML double-quoted scalar


def _line_end(text: str, index: int) -> int:
    """The index just after the line that holds ``index`` (its newline included)."""
    end = text.find("\n", index)
    return len(text) if end < 0 else end + 1


def _append(text: str, node: yaml.SequenceNode, sentences: list[str], newline: str,
            where: str) -> tuple[int, str]:
    if node.flow_style:
        close = node.end_mark.index - 1
        if text[close:close + 1] != "]":
            raise AdditionError(f"cannot find the ']' closing the list of {where}")
        before = text[:close].rstrip()
        items = ", ".join(_plain_or_quoted(s, True) for s in sentences)
        if before.endswith("["):
            return close, items
        return close, (" " if before.endswith(",") else ", ") + items
    last = node.value[-1]
    end = last.end_mark
    if end.column == 0 and end.line > last.start_mark.line:
        index = end.index                      # a block scalar: it ends where the next line starts
    else:
        index = _line_end(text, end.index)
    indent = " " * node.start_mark.column     # the dash's column
    lines = "".join(f"{indent}- {_plain_or_quoted(s, False)}{newline}" for s in sentences)
    if index == len(text) and not text.endswith("\n"):
        lines = newline + lines
    return index, lines


def _new_out_of_scope(text: str, sentences: list[str], newline: str) -> tuple[int, str]:
    lead = "" if text.endswith("\n") or not text else newline
    items = "".join(f"  - {_plain_or_quoted(s, False)}{newline}" for s in sentences)
    return len(text), f"{lead}{OUT_OF_SCOPE}:{newline}{items}"


def _check(patched: str, before: dict[str, list[Any]], wanted: dict[str, list[str]]) -> None:
    """Every list is what it was plus its new sentences, and nothing else moved."""
    try:
        tree = load_yaml(patched)
    except yaml.YAMLError as exc:
        raise AdditionError(f"the added lines would not read back as YAML ({exc})") from None
    intents = tree.get("intents") or {}
    for where, old in before.items():
        now = tree.get(OUT_OF_SCOPE) if where == OUT_OF_SCOPE else (intents.get(where) or {}).get("examples")
        if list(now or []) != old + wanted.get(where, []):
            raise AdditionError(f"the lines added to {where} would not read back as they were written")
