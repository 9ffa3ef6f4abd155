"""voicebot: an offline-first telephony voice assistant.

The package is split so that the dialog core (`voicebot.dialog`, `voicebot.flow`, `voicebot.nlu`)
never imports web, Redis or speech code; adapters around it live in their own modules.
"""

__version__ = "0.1.0"
