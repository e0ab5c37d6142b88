"""Durations in words ("20 min", "2 h 5 min"), with nothing to import, so provider modules can
word their own overdue signals; pages show durations the same way (``humanize_seconds``)."""

from __future__ import annotations


def span(seconds: float) -> str:
    """``42 s``, ``20 min``, ``2 h 5 min``, ``4 d``."""
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole} s"
    minutes = whole // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} d"


def times(ratio: float) -> str:
    """``3×``, ``1.6×``: how many times longer, as people say it."""
    if ratio >= 10:
        return f"{ratio:.0f}×"
    text = f"{ratio:.1f}".removesuffix(".0")
    return f"{text}×"
