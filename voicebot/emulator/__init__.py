"""A local Twilio: place a call on a running voicebot server the way Twilio's network would.

A bot that passes the text simulator can still fail on the phone, because what breaks there is the
telephony contract, not the dialog. This package plays Twilio's side of that contract closely
enough to catch those faults before a real number is pointed at the server. It is a tool for
development (`voicebot call`, the end-to-end tests, the load benchmarks): the running service never
imports it.

    scenario.py  the caller's script (pydantic, extending voicebot.scenario) and its turns as audio
    signing.py   requests signed over the public URL, sent to the local server (requests + twilio)
    call.py      one call: webhooks, stream handshake, status callbacks; ``place_call``
    stream.py    the Media Stream: 20 ms clock, playback with marks and clear, the caller's turns
    twiml.py     the TwiML after the stream: Dial with whisper, Enqueue, Hangup, Redirect
    report.py    the conversation as timed events, latencies, and the expectation checks
    errors.py    EmulatorError, ServerUnreachable, WebhookRefused
"""

from voicebot.emulator.call import place_call
from voicebot.emulator.errors import EmulatorError, ServerUnreachable, WebhookRefused
from voicebot.emulator.report import CallReport, check_expectations
from voicebot.emulator.scenario import DEFAULT_CALLED, DEFAULT_CALLER, check_turns, load_scenario

__all__ = ["CallReport", "DEFAULT_CALLED", "DEFAULT_CALLER", "EmulatorError", "ServerUnreachable",
           "WebhookRefused", "check_expectations", "check_turns", "load_scenario", "place_call"]
