"""The TwiML documents voicebot answers with, built with the twilio package's own builders.

- The incoming call connects a bidirectional stream. Its address carries no query string (Twilio
  drops it, error 31920): the call's data travels as ``<Parameter>``s, the call's token among them
  (see stream_auth.py).
- After the stream: a transfer dials the agent with ``answerOnBridge`` (the caller keeps hearing
  ringing, not silence) and a whisper URL that briefs the agent before the caller is connected;
  or the caller is put in a Twilio queue; or the call is hung up. The ``<Dial action>`` asks
  ``/twilio/dial-status`` what to do when the agent's leg ends: nobody answering is never a dead end.
- When no agent takes the call: an offer read out inside a one-key ``<Gather>`` (see
  telephony/unreachable.py), and the caller's choice answered with a few words and ``<Hangup>``.
- A queue pick-up: what the dequeued caller hears before being connected (``<Dial><Queue url>``
  runs its document on the caller's side, see docs/telephony.md).
"""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit, urlunsplit

from twilio.twiml.voice_response import Dial, VoiceResponse

# Twilio <Say> language codes for the flows' languages (used when Twilio's voice must speak for us).
SAY_LANGUAGES = {"nl": "nl-NL", "en": "en-GB", "ko": "ko-KR", "de": "de-DE", "fr": "fr-FR"}


def stream_url(public_url: str) -> str:
    """https://host -> wss://host/twilio/media (http -> ws for local testing)."""
    parts = urlsplit(public_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/twilio/media", "", ""))


def connect_stream(public_url: str, parameters: dict[str, str]) -> str:
    response = VoiceResponse()
    connect = response.connect(action=f"{public_url}/twilio/after-stream", method="POST")
    stream = connect.stream(url=stream_url(public_url), status_callback=f"{public_url}/twilio/stream-status",
                            status_callback_method="POST")
    for name, value in parameters.items():
        stream.parameter(name=name, value=value[:400])
    return str(response)


def transfer(public_url: str, call_sid: str, *, number: str = "", sip: str = "", queue: str = "",
             announce: str = "", language: str = "", token: str = "") -> str:
    """Dial the agent (with the whisper, whose URL carries the call's token) or enqueue the caller,
    who leaves the queue after ``telephony.queue_max_wait_seconds`` (``/twilio/queue-wait``) and is
    then offered a call back or a text message (``/twilio/queue-left``), never left on hold for good."""
    response = VoiceResponse()
    if announce:
        response.say(announce, language=SAY_LANGUAGES.get(language, language or "en-GB"))
    whisper = f"{public_url}/twilio/whisper?{urlencode({'call': call_sid, 'token': token})}"
    if number or sip:
        dial = Dial(answer_on_bridge=True, action=f"{public_url}/twilio/dial-status", method="POST")
        if sip:
            dial.sip(sip, url=whisper, method="POST")
        else:
            dial.number(number, url=whisper, method="POST")
        response.append(dial)
    else:
        response.enqueue(queue or "agents", action=f"{public_url}/twilio/queue-left", method="POST",
                         wait_url=f"{public_url}/twilio/queue-wait", wait_url_method="POST")
    return str(response)


def queue_wait(waited: int, max_wait: int, hold: str, language: str, *, pause: int = 15) -> str:
    """What a caller in a Twilio queue hears (Twilio asks again when it ends): the hold words at
    first, then pauses; ``<Leave>`` once ``max_wait`` has passed."""
    response = VoiceResponse()
    if waited >= max_wait:
        response.leave()
        return str(response)
    if waited < pause and hold:
        response.say(hold, language=SAY_LANGUAGES.get(language, language or "en-GB"))
    response.pause(length=pause)
    return str(response)


def offer(action_url: str, text: str, language: str, *, seconds: int = 8) -> str:
    """``text`` read out while one key is awaited; the key (or, after ``seconds``, none) goes to
    ``action_url`` (``actionOnEmptyResult``: no key is an answer too, so the caller is never left hanging)."""
    response = VoiceResponse()
    gather = response.gather(input="dtmf", num_digits=1, timeout=seconds, action=action_url, method="POST",
                             action_on_empty_result=True)
    gather.say(text, language=SAY_LANGUAGES.get(language, language or "en-GB"))
    return str(response)


def say(text: str, language: str) -> str:
    """Words said to a caller, then the TwiML that started the request carries on (a queue pick-up)."""
    response = VoiceResponse()
    if text:
        response.say(text, language=SAY_LANGUAGES.get(language, language or "en-GB"))
    return str(response)


def whisper(text: str, language: str) -> str:
    response = VoiceResponse()
    response.say(text, language=SAY_LANGUAGES.get(language, language or "en-GB"))
    return str(response)


def hangup(say: str = "", language: str = "") -> str:
    response = VoiceResponse()
    if say:
        response.say(say, language=SAY_LANGUAGES.get(language, language or "en-GB"))
    response.hangup()
    return str(response)


def empty() -> str:
    return str(VoiceResponse())
