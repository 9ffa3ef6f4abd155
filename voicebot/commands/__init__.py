"""Command groups of the `voicebot` CLI that live outside cli.py, one module per area.

Each module imports its heavy dependencies (Vosk, pyttsx3) inside the command, so `voicebot --help`
and the dialog commands stay fast.
"""
