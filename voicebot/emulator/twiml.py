"""What Twilio does with TwiML once the media stream has ended: the verbs after ``<Connect>``.

``<Connect>`` blocks until the *server* closes the socket; only then is the ``action`` URL requested
and its TwiML run (``<Say>``/``<Play>`` noted, ``<Dial>`` with a whisper URL on the agent leg,
``<Enqueue>``, ``<Hangup>``, ``<Redirect>``). When the caller hangs up first, Twilio sends ``stop``
and never requests the action: the call decides that, not this module.
"""

from __future__ import annotations

import time
import urllib.parse
import xml.etree.ElementTree as ET

from voicebot.emulator.errors import EmulatorError
from voicebot.emulator.report import CallLog
from voicebot.emulator.signing import SignedClient, new_sid

MAX_REDIRECTS = 5


def parse_twiml(text: str, what: str) -> ET.Element:
    """The ``<Response>`` of a TwiML answer; ``what`` names the answer in the error."""
    try:
        root = ET.fromstring(text.strip())
    except ET.ParseError as exc:
        raise EmulatorError(f"{what} is not TwiML ({exc}): {text.strip()[:200]!r}") from None
    if root.tag != "Response":
        raise EmulatorError(f"{what}: TwiML must have <Response> at the top, not <{root.tag}>")
    return root


class TwimlFollower:
    """Runs TwiML as Twilio would after the stream, up to a transfer or the end of the call.

    ``params`` are the call's webhook parameters (CallSid, From, To...); the follower writes the
    transfer, the whisper and who hung up on the log's report.
    """

    def __init__(self, http: SignedClient, log: CallLog, params: dict[str, str]):
        self.http, self.log, self.params = http, log, params
        self.report = log.report

    def after_stream(self, root: ET.Element, connect: ET.Element, voice_url: str) -> None:
        """Twilio requests ``<Connect action>``, or runs the verbs after ``<Connect>`` when there is none."""
        action = connect.get("action")
        if not action:
            rest = list(root)[list(root).index(connect) + 1:]
            after = ET.Element("Response")
            after.extend(rest)
            self.report.after_twiml = ET.tostring(after, encoding="unicode")
            self.follow(after, voice_url, depth=0)
            return
        url = urllib.parse.urljoin(voice_url, action)
        twiml = self.http.request(url, {**self.params, "CallStatus": "in-progress"}, connect.get("method", "POST"))
        self.report.after_twiml = twiml
        self.log.twiml(twiml, time.monotonic())
        self.follow(parse_twiml(twiml, f"the answer to {url}"), url, depth=0)

    def follow(self, root: ET.Element, base_url: str, depth: int) -> None:
        """Run the verbs Twilio would run after the stream, up to a transfer or the end of the call."""
        note = self.log.note
        for verb in root:
            now = time.monotonic()
            if verb.tag == "Say":
                note("bot", f"<Say> {(verb.text or '').strip()}", now)
            elif verb.tag == "Play":
                note("bot", f"<Play> {(verb.text or '').strip()}", now)
            elif verb.tag == "Pause":
                continue
            elif verb.tag == "Dial":
                return self._dial(verb, base_url)
            elif verb.tag == "Enqueue":
                self.report.transfer = {"kind": "queue", "target": (verb.text or "").strip(), "whisper_url": None,
                                        "answer_on_bridge": False}
                note("transfer", f"enqueue {(verb.text or '').strip()} (waitUrl: {verb.get('waitUrl')})", now)
                return
            elif verb.tag == "Hangup":
                self.report.hung_up_by = "bot"
                note("hangup", "bot hangs up (<Hangup/>)", now)
                return
            elif verb.tag == "Redirect" and depth < MAX_REDIRECTS:
                url = urllib.parse.urljoin(base_url, (verb.text or "").strip())
                twiml = self.http.request(url, {**self.params, "CallStatus": "in-progress"}, verb.get("method", "POST"))
                self.log.twiml(twiml, now)
                return self.follow(parse_twiml(twiml, f"the answer to {url}"), url, depth + 1)
            else:
                note("error", f"<{verb.tag}> after the stream is not emulated; the call ends here", now)
                return
        self.report.hung_up_by = "bot"
        note("hangup", "bot hangs up (no TwiML left)", time.monotonic())

    def _dial(self, dial: ET.Element, base_url: str) -> None:
        """Record the transfer, then fetch the whisper the agent hears before the caller is put through."""
        nouns = [n for n in dial if n.tag in ("Number", "Sip", "Queue", "Client", "Conference")]
        noun = nouns[0] if nouns else None
        kind = "number" if noun is None else noun.tag.lower()
        target = ((noun.text if noun is not None else dial.text) or "").strip()
        whisper = noun.get("url") if noun is not None else None
        whisper_url = urllib.parse.urljoin(base_url, whisper) if whisper else None
        self.report.transfer = {"kind": kind, "target": target, "whisper_url": whisper_url,
                                "answer_on_bridge": dial.get("answerOnBridge", "false").lower() == "true"}
        if whisper_url:
            leg = {"CallSid": new_sid("CA"), "ParentCallSid": self.report.call_sid,
                   "AccountSid": self.params["AccountSid"], "From": self.params["From"], "To": target,
                   "CallStatus": "in-progress", "Direction": "outbound-dial", "ApiVersion": "2010-04-01"}
            twiml = self.http.request(whisper_url, leg, noun.get("method", "POST") if noun is not None else "POST")
            root = parse_twiml(twiml, f"the whisper at {whisper_url}")
            said = " ".join((s.text or "").strip() for s in root.iter("Say") if (s.text or "").strip())
            self.report.whisper_text = said or None
            self.log.note("whisper", said or "(no <Say>)", time.monotonic(), show=False)
        extra = f' (whisper: "{self.report.whisper_text}")' if self.report.whisper_text else \
            (" (whisper without <Say>)" if whisper_url else " (no whisper)")
        self.log.note("transfer", f"dial {kind} {target}{extra}", time.monotonic())
