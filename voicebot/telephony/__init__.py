"""The phone side: Twilio webhooks and Media Streams (the local Twilio emulator is voicebot.emulator)."""
