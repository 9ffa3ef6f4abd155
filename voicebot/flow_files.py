"""A flow file's top-level keys, and which file in a folder is the flow with a given id, read
without validating the flow or training its classifier (commands and the worker only need its id,
language or time zone). Kept outside ``voicebot.flow`` so that reading one costs no import of the
flow machinery (pydantic models, the classifier)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from voicebot.yaml12 import load_yaml


def flow_header(path: Path) -> dict[str, Any]:
    """A flow file's top-level keys (``flow``, ``language``, ``hours`` ...); {} when it cannot be read."""
    try:
        tree = load_yaml(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return tree if isinstance(tree, dict) else {}


def flow_file(flows_dir: Path, flow_id: str) -> Path | None:
    """The file in ``flows_dir`` whose ``flow:`` id is ``flow_id`` (``<id>.yaml`` looked at first)."""
    usual = flows_dir / f"{flow_id}.yaml"
    candidates = [usual, *(p for p in sorted(flows_dir.glob("*.yaml")) if p != usual)]
    return next((p for p in candidates if p.is_file() and flow_header(p).get("flow") == flow_id), None)
