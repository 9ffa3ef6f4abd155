"""Understanding caller text: normalisation, slot parsing and intent classification.

Pure functions over ASR-style text (lowercase, numbers as words, hesitations); no audio here.
"""
