"""Everything the engine knows about one call, as plain JSON-friendly data.

The state is stored between turns (in Redis, keyed by call id) so any server process can continue
a call; ``to_dict``/``from_dict`` are the only serialisation. Secret slot values (PINs, dates of
birth) are never kept in the clear: only an HMAC of them, under ``secrets``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class CallState:
    call_id: str
    flow: str
    language: str
    caller: str = ""
    called: str = ""
    started_at: str = ""
    step: str | None = None
    slots: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    intent: str | None = None
    intent_confidence: float | None = None
    pending: dict[str, Any] | None = None
    misses: int = 0
    total_misses: int = 0
    no_inputs: int = 0
    turns: int = 0
    transcript: list[dict[str, Any]] = field(default_factory=list)
    visited: list[str] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    feedback: int | None = None
    ended: bool = False
    outcome: str | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CallState":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
