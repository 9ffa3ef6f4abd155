"""Why a call could not be placed or carried on.

    VoicebotError
     └── EmulatorError        the call could not be placed or carried on
          ├── ServerUnreachable    nothing answers at the server address
          └── WebhookRefused       the server refused our signature (403)
"""

from __future__ import annotations

from voicebot.errors import VoicebotError


class EmulatorError(VoicebotError):
    """The call could not be placed or carried on (no server, refused request, unusable TwiML)."""


class ServerUnreachable(EmulatorError):
    """Nothing answers at the server address."""


class WebhookRefused(EmulatorError):
    """The server answered a signed request with 403: it does not accept our signature."""
