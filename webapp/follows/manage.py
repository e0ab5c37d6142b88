"""Validated changes to followed queries, as the sources page makes them.

Every check happens here, before a row changes, so that a hostile or mistyped form gets one
precise sentence back (:class:`FollowProblem`) and the runner never meets a follow it cannot run.
Follows declared in the configuration file (origin ``file`` or ``demo``) are synced from it; here
they may only be paused, resumed and run now.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta

import sqlalchemy as sa
from flask import Flask

from webapp.db.models import Follow
from webapp.db.models import db
from webapp.db.models import utcnow
from webapp.providers import Provider
from webapp.providers import provider_class
from webapp.refresher.background import wake_background
from webapp.sources.registry import registry

DEFAULT_INTERVAL = 60.0
MIN_INTERVAL = 5.0
MAX_INTERVAL = 86400.0
DEFAULT_BACKFILL = 200
MIN_BACKFILL = 1
MAX_BACKFILL = 10000
#: Longer than any search a person types; the column is unbounded, the form is not.
MAX_QUERY_LENGTH = 4000
#: Origins whose follow the configuration declares (the file wins over the UI).
CONFIGURED_ORIGINS = frozenset({"file", "demo"})
CONFIGURED_NOTE = "set in the configuration file"


class FollowProblem(ValueError):
    """A change that cannot be made; the message says why, in words for the form."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: The form field at fault (``query``, ``interval``, ``backfill``), if one is.
        self.field = field


@dataclass(frozen=True)
class FollowSettings:
    """What a person sets on a follow."""

    #: ``None``: every task of the source.
    query: str | None
    interval_seconds: float
    backfill_limit: int


def read_settings(
    source_name: str, query: str | None, interval: str | None, backfill: str | None
) -> FollowSettings:
    """The form's text as checked settings for source ``source_name``; raises
    :class:`FollowProblem`. Empty numbers take the defaults."""
    text = (query or "").strip() or None
    if text is not None and len(text) > MAX_QUERY_LENGTH:
        raise FollowProblem(
            f"The query is {len(text):,} characters long; at most {MAX_QUERY_LENGTH:,}.", "query"
        )
    provider = searching_provider(source_name)
    try:
        provider.parse_query(text)
    except ValueError as exc:
        # Providers word these for the CLI's --query option.
        said = str(exc).removeprefix("--query").lstrip(": ")
        raise FollowProblem(f"The query cannot be read: {said}", "query") from None
    seconds = _number(interval, "interval", DEFAULT_INTERVAL, MIN_INTERVAL, MAX_INTERVAL)
    limit = _number(backfill, "backfill", DEFAULT_BACKFILL, MIN_BACKFILL, MAX_BACKFILL)
    if limit != int(limit):
        raise FollowProblem("The first-run limit must be a whole number of tasks.", "backfill")
    return FollowSettings(text, seconds, int(limit))


def searching_provider(source_name: str) -> type[Provider]:
    """The provider class of a usable source that can search; raises :class:`FollowProblem`."""
    known = registry()
    source = known.get(source_name)
    if source is None:
        problem = known.problems().get(source_name)
        if problem is not None:
            raise FollowProblem(f"The source {source_name} cannot be used: {problem}")
        raise FollowProblem(f"There is no source called “{source_name}”.")
    provider = provider_class(source.provider)
    if not provider.can_search:
        raise FollowProblem(
            f"{provider.label} has no task search, so the source {source_name} cannot follow "
            "a query."
        )
    return provider


_NUMBER_NAMES = {"interval": "The interval", "backfill": "The first-run limit"}
_UNITS = {"interval": " seconds", "backfill": " tasks"}


def _number(text: str | None, field: str, default: float, low: float, high: float) -> float:
    name, unit = _NUMBER_NAMES[field], _UNITS[field]
    raw = (text or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise FollowProblem(f"{name} must be a number, not {raw[:40]!r}.", field) from None
    if not math.isfinite(value) or not low <= value <= high:
        raise FollowProblem(f"{name} must be between {low:g} and {high:g}{unit}.", field)
    return value


# -- reading ---------------------------------------------------------------------------------
def follow_for(source_name: str) -> Follow | None:
    return db.session.get(Follow, source_name)


def all_follows() -> dict[str, Follow]:
    """Every follow, by source name."""
    return {f.source: f for f in db.session.scalars(sa.select(Follow))}


def is_configured(follow: Follow) -> bool:
    """Whether the configuration file declares this follow (then the UI cannot edit it)."""
    return follow.origin in CONFIGURED_ORIGINS


def configured_note(follow: Follow) -> str:
    """Where a configured follow is set, as the sources page says it of its source."""
    return "set by the demo" if follow.origin == "demo" else CONFIGURED_NOTE


def is_pending(follow: Follow, now: datetime | None = None) -> bool:
    """Whether a run is due or under way: what the page keeps watching."""
    now = now or utcnow()
    if follow.lease_until is not None and follow.lease_until > now:
        return True
    return not follow.paused and (follow.next_run_at is None or follow.next_run_at <= now)


# -- changing --------------------------------------------------------------------------------
def add(source_name: str, settings: FollowSettings, *, actor: str | None) -> Follow:
    """A new follow from the UI, due at once; raises :class:`FollowProblem` when the source
    follows a query already."""
    searching_provider(source_name)
    if follow_for(source_name) is not None:
        raise FollowProblem(f"The source {source_name} follows a query already; edit that one.")
    follow = Follow(
        source=source_name,
        query=settings.query,
        interval_seconds=settings.interval_seconds,
        backfill_limit=settings.backfill_limit,
        origin="database",
        paused=False,
        created_by=actor,
        created_at=utcnow(),
        next_run_at=None,
        runs=0,
        last_found=0,
        total_found=0,
        consecutive_failures=0,
        frontier=[],
    )
    db.session.add(follow)
    return follow


def update(follow: Follow, settings: FollowSettings) -> list[str]:
    """Apply edited settings; returns the names of those that changed. A new query starts
    over (its first run is capped again); a shorter interval brings the next run closer."""
    _editable(follow)
    changed = []
    if settings.query != follow.query:
        follow.query = settings.query
        follow.restart()
        changed.append("query")
    if settings.interval_seconds != follow.interval_seconds:
        follow.interval_seconds = settings.interval_seconds
        sooner = utcnow() + timedelta(seconds=settings.interval_seconds)
        if follow.next_run_at is not None and follow.next_run_at > sooner:
            follow.next_run_at = sooner
        changed.append("interval")
    if settings.backfill_limit != follow.backfill_limit:
        follow.backfill_limit = settings.backfill_limit
        changed.append("backfill")
    return changed


def pause(follow: Follow) -> bool:
    """Stop running it (a run under way finishes); ``False`` when it was paused already."""
    if follow.paused:
        return False
    follow.paused = True
    return True


def resume(follow: Follow) -> bool:
    """Run it again, at once (it missed its runs while paused); ``False`` when it was not
    paused."""
    if not follow.paused:
        return False
    follow.paused = False
    follow.next_run_at = None
    return True


def remove(follow: Follow) -> None:
    """Stop following; the tasks it tracked stay tracked."""
    _editable(follow)
    db.session.delete(follow)


def run_now(follow: Follow, app: Flask) -> None:
    """Make it due at once and wake this process's refresher. Commits (the refresher reads the
    row from its own session)."""
    if follow.paused:
        raise FollowProblem(f"The follow of {follow.source} is paused; resume it to run it.")
    follow.next_run_at = None
    db.session.commit()
    wake(app)


def wake(app: Flask) -> None:
    """Start this process's refresher pass now (a due follow then runs without waiting for the
    next pass); ``taskdeck worker`` processes find it on their own next pass."""
    wake_background(app)


def _editable(follow: Follow) -> None:
    if is_configured(follow):
        raise FollowProblem(
            f"The follow of {follow.source} is {configured_note(follow)}; change it there. Here "
            "it can be paused, resumed and run now."
        )
