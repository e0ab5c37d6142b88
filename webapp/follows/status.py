"""A follow as the sources page shows it: its state in words, and whether its status part keeps
refreshing itself."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import current_app

from webapp.db.models import Follow
from webapp.db.models import utcnow
from webapp.follows import manage
from webapp.providers import provider_class
from webapp.sources.registry import registry

#: A run due for longer than this has no process to run it (no refresher here, no worker):
#: the page then checks back slowly instead of every few seconds.
STALLED_AFTER_SECONDS = 60
STALLED_POLL_SECONDS = 30
#: Between runs the status part wakes once, when the next run is due, if that is this soon;
#: a longer wait is left to a reload (the page says when).
WAKE_WITHIN_SECONDS = 600


@dataclass(frozen=True)
class FollowFormError:
    """A refused follow form: which source's, why, and what was typed (shown again)."""

    source: str
    message: str
    field: str | None = None
    values: dict[str, str] = dataclasses.field(default_factory=dict)


def context(source_name: str, error: FollowFormError | None = None) -> dict[str, Any]:
    """What ``sources/_follow.html`` needs for one source."""
    now = utcnow()
    follow = manage.follow_for(source_name)
    source = registry().get(source_name)
    can_search = source is not None and provider_class(source.provider).can_search
    poll, trigger, stage = polling(follow, now)
    return {
        "name": source_name,
        "follow": follow,
        "can_search": can_search,
        "configured": follow is not None and manage.is_configured(follow),
        "configured_note": manage.configured_note(follow) if follow is not None else "",
        "stage": stage,
        "poll": poll,
        "trigger": trigger,
        "error": error,
        "defaults": {
            "interval": manage.DEFAULT_INTERVAL,
            "backfill": manage.DEFAULT_BACKFILL,
            "min_interval": manage.MIN_INTERVAL,
            "max_interval": manage.MAX_INTERVAL,
            "max_backfill": manage.MAX_BACKFILL,
            "max_query": manage.MAX_QUERY_LENGTH,
        },
    }


def polling(follow: Follow | None, now: datetime) -> tuple[bool, str | None, str]:
    """``(keeps polling, its hx-trigger, the stage in words)``: every few seconds while a run
    is due or under way; once, when the next run falls due, between runs; never when paused.
    """
    if follow is None:
        return False, None, "none"
    fast = f"every {current_app.config['UI_POLL_SECONDS']}s"
    if follow.lease_until is not None and follow.lease_until > now:
        return True, fast, "running"
    if follow.paused:
        return False, None, "paused"
    if follow.next_run_at is None or follow.next_run_at <= now:
        due_since = follow.next_run_at or follow.last_finished_at or follow.created_at
        if due_since is not None and (now - due_since).total_seconds() > STALLED_AFTER_SECONDS:
            return True, f"every {STALLED_POLL_SECONDS}s", "stalled"
        return True, fast, "due"
    wait = (follow.next_run_at - now).total_seconds()
    if wait <= WAKE_WITHIN_SECONDS:
        return True, f"load delay:{int(wait) + 1}s", "waiting"
    return False, None, "waiting"
