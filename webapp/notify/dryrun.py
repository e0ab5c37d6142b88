"""Trying a rule before it is saved: "would have fired 37 times in the last 7 days".

The cache keeps each task's state changes (``task_events``), not its other fields' past, so a
dry run replays the states: the rule's state tests (``state:…``) are checked against each
recorded state, and everything else in ``when`` against the task as it is now, with the list's
own query. A task fires once per state it enters inside the match, as a live rule does; a task
already inside the match when the window opens is not counted for that state.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
from datetime import datetime
from datetime import timedelta

import sqlalchemy as sa

from webapp.db.models import Task
from webapp.db.models import TaskEvent
from webapp.db.models import db
from webapp.listing.columns import states_in
from webapp.listing.search import SearchText
from webapp.notify.rules import rule_query

#: The window a dry run replays.
DAYS = 7
#: Examples shown (the latest).
EXAMPLES = 5
#: Events read at most; beyond, the count says "at least".
MAX_EVENTS = 100_000


@dataclass(frozen=True)
class Example:
    at: datetime
    source: str
    task_id: str
    name: str | None
    state: str


@dataclass
class DryRun:
    count: int = 0
    examples: list[Example] = field(default_factory=list)
    #: True when :data:`MAX_EVENTS` cut the replay short.
    capped: bool = False
    days: int = DAYS


def dry_run(when: str, now: datetime, days: int = DAYS) -> DryRun:
    """Replay the last ``days`` of state changes through ``when``; raises ``QueryError``."""
    query = rule_query(when, now)
    state_groups = [query.search.qualifiers["state"]] if "state" in query.search.qualifiers else []
    if query.state:
        state_groups.append((query.state,))
    allowed: set[str] | None = None
    for group in state_groups:
        states = states_in(group)
        allowed = states if allowed is None else allowed & states
    others = {k: v for k, v in query.search.qualifiers.items() if k != "state"}
    rest = replace(query, state=None, search=SearchText(others, query.search.phrases))
    since = now - timedelta(days=days)
    rows = db.session.execute(
        sa.select(TaskEvent.task_pk, TaskEvent.at, TaskEvent.state, Task.source, Task.task_id)
        .join(Task, Task.id == TaskEvent.task_pk)
        .where(TaskEvent.at >= since, TaskEvent.at <= now, *rest.where())
        .order_by(TaskEvent.task_pk, TaskEvent.at, TaskEvent.id)
        .limit(MAX_EVENTS + 1)
    ).all()
    result = DryRun(days=days, capped=len(rows) > MAX_EVENTS)
    rows = rows[:MAX_EVENTS]
    pks = sorted({row[0] for row in rows})
    before = _states_before(pks, since)
    names: dict[int, str | None] = {}
    for start in range(0, len(pks), 500):
        chunk = pks[start : start + 500]
        names.update(
            (pk, name)
            for pk, name in db.session.execute(
                sa.select(Task.id, Task.name).where(Task.id.in_(chunk))
            )
        )

    def matches(state: str | None) -> bool:
        return state is not None and (allowed is None or state in allowed)

    fired: dict[int, set[str]] = {}
    found: list[Example] = []
    for pk, at, state, source, task_id in rows:
        seen = fired.get(pk)
        if seen is None:
            opening = before.get(pk)
            seen = fired[pk] = {opening} if opening is not None and matches(opening) else set()
        if matches(state) and state not in seen:
            seen.add(state)
            found.append(Example(at, source, task_id, names.get(pk), state))
    result.count = len(found)
    result.examples = sorted(found, key=lambda e: e.at, reverse=True)[:EXAMPLES]
    return result


def _states_before(pks: list[int], since: datetime) -> dict[int, str]:
    """Each task's state when the window opened (its last event before it), if any."""
    found: dict[int, str] = {}
    for start in range(0, len(pks), 500):
        chunk = pks[start : start + 500]
        last = (
            sa.select(sa.func.max(TaskEvent.id))
            .where(TaskEvent.task_pk.in_(chunk), TaskEvent.at < since)
            .group_by(TaskEvent.task_pk)
        )
        for pk, state in db.session.execute(
            sa.select(TaskEvent.task_pk, TaskEvent.state).where(TaskEvent.id.in_(last))
        ):
            found[pk] = state
    return found
