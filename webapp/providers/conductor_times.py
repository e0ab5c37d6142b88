"""Conductor's times (``Task``: epoch ms, 0 unset; ``TaskSummary``: ISO, 1970 unset), and the
overdue signal they give: a task SCHEDULED for long that no worker has polled."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from webapp.overdue.words import span
from webapp.providers.payload import epoch_ms
from webapp.providers.payload import parse_iso
from webapp.providers.spec import SignalFacts

#: A task SCHEDULED this long that no worker has polled is overdue: nobody is polling its queue.
NO_WORKER_AFTER_SECONDS = 300.0


def no_worker_polling(facts: SignalFacts, now: datetime) -> str | None:
    """SCHEDULED for long and never polled: no worker serves its task type (or domain).

    A worker's poll moves a task to IN_PROGRESS, sets ``startTime`` and counts ``pollCount``
    (``ExecutionService.poll``). A ``Task`` says ``pollCount``; a search summary has no poll
    count, but its ``startTime`` is unset (1970) until the first poll, which says the same.
    A SCHEDULED task that was polled before (a retry after a response timeout) is not this.
    """
    raw = facts.raw if isinstance(facts.raw, dict) else {}
    if facts.upstream_status != "SCHEDULED" or facts.created_at is None:
        return None
    polls = raw.get("pollCount")
    if polls is not None:
        if not isinstance(polls, int | float) or isinstance(polls, bool) or polls != 0:
            return None
    elif "startTime" not in raw or conductor_time(raw["startTime"]) is not None:
        return None
    waited = (now - facts.created_at).total_seconds()
    if waited < NO_WORKER_AFTER_SECONDS:
        return None
    return f"scheduled {span(waited)}, no worker polling"


def conductor_time(value: Any) -> datetime | None:
    """A Conductor time: epoch ms (0 = unset) in a ``Task``, an ISO string (1970 = unset, with
    or without millis) in a ``TaskSummary``."""
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return epoch_ms(int(text), zero_is_unset=True)
        return parse_iso(text, epoch_is_unset=True)
    return epoch_ms(value, zero_is_unset=True)
