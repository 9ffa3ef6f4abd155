"""One exception tree for the project, so callers can catch by kind.

    VoicebotError
     ├── ConfigError          config.yaml or the environment is wrong (stops start-up)
     ├── FlowError            a flow file is invalid; carries every problem found
     └── ScenarioError        a scenario file for the simulator is invalid
"""

from __future__ import annotations

from dataclasses import dataclass


class VoicebotError(Exception):
    """Base of every error voicebot raises on purpose."""


class ConfigError(VoicebotError):
    """Settings cannot be used; the message names every bad key."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a file, located for a human: ``file:line: message``."""

    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.message}"


class FlowError(VoicebotError):
    """A flow file failed validation. ``problems`` lists all of them, not just the first."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class ScenarioError(VoicebotError):
    """A scenario file cannot be run."""
