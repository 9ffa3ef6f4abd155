"""Job functions for the worker tests; RQ needs them importable by module path, not defined in a test."""

from __future__ import annotations


def add(a: int, b: int) -> int:
    return a + b
