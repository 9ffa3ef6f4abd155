"""Speech in and out on 8 kHz phone audio: codecs, offline recognition (Vosk), prompt audio.

Nothing here knows about Twilio or the dialog engine: the telephony adapter feeds frames in and
plays bytes out; the pieces are usable on their own (`voicebot transcribe`, `voicebot audio build`).
"""
