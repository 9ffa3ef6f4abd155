"""The YAML 1.2 loader flows are read with; it lives in ``voicebot.yaml12`` so config and commands share it."""

from voicebot.yaml12 import DuplicateKey, LineDict, LineList, line_of, load_yaml

__all__ = ["DuplicateKey", "LineDict", "LineList", "line_of", "load_yaml"]
