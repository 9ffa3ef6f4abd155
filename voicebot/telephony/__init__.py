"""The phone side: Twilio webhooks, Media Streams and the local Twilio emulator."""
