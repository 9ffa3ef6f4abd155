"""What happened on one emulated call: the conversation as timed events, latencies, and the checks.

``CallLog`` is the pen every part of the call writes with (the stream, the TwiML follower and the
call itself): it records an event on the ``CallReport`` and prints it as a line of the
conversation. ``check_expectations`` compares the report with a scenario's ``expect`` block.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, TextIO


@dataclass
class CallReport:
    """What happened on one emulated call; times are seconds from the incoming-call webhook.

    ``failures`` holds protocol faults Twilio would reject (malformed stream messages, an
    after-stream answer that fails) and, when expectations were given, the unmet ones.
    """

    call_sid: str
    stream_sid: str = ""
    events: list[tuple[float, str, str]] = field(default_factory=list)
    clears: int = 0
    marks: list[str] = field(default_factory=list)
    """The names of the marks the server sent, in order: numbers, never what a prompt said."""
    bot_prompts: list[str] | None = None
    """What the bot said, in order, from the server's record of the call (``place_call(redis_url=...)``);
    None when that record could not be read, and ``said_unknown`` says why."""
    said_unknown: str = ""
    bot_audio: bytes = b""
    voice_twiml: str = ""
    after_twiml: str | None = None
    transfer: dict[str, Any] | None = None
    whisper_text: str | None = None
    hung_up_by: str | None = None
    timed_out: bool = False
    latencies: list[float | None] = field(default_factory=list)
    recording: str | None = None
    """The WAV file the bot's audio was written to (None when not asked for or not writable)."""
    passed: bool = True
    failures: list[str] = field(default_factory=list)
    duration: float = 0.0

    def kinds(self, kind: str) -> list[tuple[float, str, str]]:
        """The events of one kind, in order."""
        return [e for e in self.events if e[1] == kind]


class CallLog:
    """The conversation as it happens: events on ``report``, lines on ``out`` (None: silent).

    Times are ``time.monotonic()`` values, shown as seconds since ``t0`` (the incoming-call webhook).
    """

    def __init__(self, report: CallReport, out: TextIO | None = None):
        self.report = report
        self.out = out
        self.t0 = time.monotonic()

    def note(self, kind: str, detail: str, at: float, *, show: bool = True, label: str | None = None,
             fatal: bool = False) -> None:
        """Record (and print) an event; a ``fatal`` one fails the call whatever the expectations."""
        if fatal:
            self.report.failures.append(detail)
        seconds = max(0.0, at - self.t0)
        self.report.events.append((round(seconds, 3), kind, detail))
        if show:
            self.say(f"{seconds:6.2f}s  {label or kind:<6} {detail}")

    def twiml(self, twiml: str, at: float) -> None:
        """Print a TwiML answer on one line (not an event: the verbs in it become events)."""
        self.say(f"{max(0.0, at - self.t0):6.2f}s  twiml  {one_line(twiml)}")

    def say(self, line: str) -> None:
        if self.out is not None:
            self.out.write(line + "\n")
            self.out.flush()


def one_line(twiml: str) -> str:
    """TwiML on one printed line, without the XML declaration."""
    text = twiml.strip()
    if text.startswith("<?xml"):
        text = text[text.find("?>") + 2:]
    return " ".join(line.strip() for line in text.strip().splitlines())


def check_expectations(report: CallReport, expect: dict[str, Any]) -> list[str]:
    """The scenario's ``expect`` block against the report; an empty list means it passed."""
    failures: list[str] = []
    transfer = report.transfer or {}
    if report.timed_out:
        failures.append("the call did not end by itself (timed out)")
    for key, want in expect.items():
        if key == "transfer":
            if want and not report.transfer:
                failures.append("expected a transfer, but there was none")
            elif not want and report.transfer:
                failures.append(f"unexpected transfer to {transfer.get('target')}")
            elif isinstance(want, str) and transfer.get("kind") != want:
                failures.append(f"transfer is a {transfer.get('kind')}, expected {want}")
        elif key == "target" and transfer.get("target") != str(want):
            failures.append(f"transfer target is {transfer.get('target')!r}, expected {want!r}")
        elif key == "hangup" and (report.hung_up_by == "bot") != bool(want):
            failures.append("expected the bot to hang up" if want else "the bot hung up")
        elif key == "clears" and report.clears < int(want):
            failures.append(f"{report.clears} clear message(s), expected at least {want}")
        elif key == "prompt_contains":
            if report.bot_prompts is None:
                failures.append(f"prompt_contains cannot be checked: what the bot said is read from the server's "
                                f"record of the call, and {report.said_unknown or 'it was not read'}")
                continue
            for text in [want] if isinstance(want, str) else want:
                if not any(str(text).lower() in said.lower() for said in report.bot_prompts):
                    failures.append(f"no bot prompt contains {text!r}")
        elif key == "whisper_contains" and str(want).lower() not in (report.whisper_text or "").lower():
            failures.append(f"whisper {report.whisper_text!r} does not contain {want!r}")
    return failures
