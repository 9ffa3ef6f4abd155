"""The figures as HTML (the operations page, a self-contained report file) and as terminal text."""

from __future__ import annotations

from typing import Any


def page_body(report: Any) -> str:
    """The figures and charts as an HTML fragment (inline SVG, no outside references)."""
    raise NotImplementedError


def standalone_page(report: Any, title: str) -> str:
    """One self-contained HTML file: ``page_body`` with its styles, nothing fetched from anywhere."""
    raise NotImplementedError


def text_report(report: Any) -> str:
    """The same figures as plain text tables for the terminal."""
    raise NotImplementedError
