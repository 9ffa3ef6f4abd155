"""The pure dialog core: events in, actions out.

Nothing in this package does I/O or imports Flask, sockets, Redis, Vosk or TTS code; telephony,
speech, queues and the simulator are adapters that feed it events and carry out its actions.
"""
