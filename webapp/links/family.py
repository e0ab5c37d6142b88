"""What a task's page shows of its links: each link with the other task's state when it is
tracked, and the family (the task, its linked and related tracked tasks) as bars on one time
axis, drawn in SVG by the template (no inline styles: the geometry is in attributes)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from webapp.db.models import Task
from webapp.db.models import TaskLink
from webapp.db.models import db
from webapp.db.models import utcnow
from webapp.db.store import TaskGlance
from webapp.db.store import glance
from webapp.links.linking import LISTED_UPSTREAM
from webapp.links.linking import group_rule
from webapp.sources.registry import registry

#: Links shown on a page, and tasks in its family chart.
MAX_LINKS = 100
MAX_FAMILY = 30
#: The chart's width in SVG units; bars narrower than this many units are drawn this wide.
GANTT_WIDTH = 1000.0
MIN_BAR = 4.0
#: How a relation reads from the other task's side.
INVERSE = {"launched": "launched by", "launched batch": "launched by", "retry": "retry of"}


@dataclass(frozen=True)
class LinkRow:
    relation: str
    task_id: str
    source: str | None
    #: ``pending``, ``found``, ``not_found`` or ``ambiguous`` (``found`` for incoming links).
    status: str
    found_in: str | None
    #: The other task, when it is tracked.
    tracked: Task | None
    #: The link's id where this page's task names it (the "track" button posts it).
    link_id: int | None
    #: Found, on a configured source, a task (not a group) and not tracked yet.
    trackable: bool
    #: The id names a group of tasks (a batch), not a task.
    group: bool = False


@dataclass(frozen=True)
class Bar:
    task: TaskGlance
    start: datetime
    end: datetime
    ongoing: bool
    x: float
    width: float
    #: This page's own task.
    current: bool


#: Built once: every task page and status answer runs both.
_OWN_LINKS = (
    sa.select(TaskLink)
    .where(TaskLink.task_pk == sa.bindparam("task_pk"))
    .order_by(TaskLink.relation, TaskLink.id)
    .limit(MAX_LINKS)
)
_INCOMING_LINKS = (
    sa.select(TaskLink, Task)
    .join(Task, Task.id == TaskLink.task_pk)
    .where(
        TaskLink.target_source == sa.bindparam("source"),
        TaskLink.target_task_id == sa.bindparam("task_id"),
        TaskLink.status == "found",
    )
    .order_by(TaskLink.id)
    .limit(MAX_LINKS)
)


def link_rows(task: Task) -> list[LinkRow]:
    """The task's own links (named in its payload or listed beside it upstream), then the
    links of tracked tasks that lead to it."""
    own = list(db.session.scalars(_OWN_LINKS, {"task_pk": task.id}))
    incoming = db.session.execute(
        _INCOMING_LINKS, {"source": task.source, "task_id": task.task_id}
    ).all()
    tracked = _tracked(own)
    known = registry()
    rows = []
    for link in own:
        other = tracked.get((link.target_source or "", link.target_task_id))
        group = link.found_in != LISTED_UPSTREAM and group_rule(link, task)
        rows.append(
            LinkRow(
                relation=link.relation,
                task_id=link.target_task_id,
                source=link.target_source,
                status=link.status,
                found_in=link.found_in,
                tracked=None if group else other,
                link_id=link.id,
                trackable=link.status == "found"
                and other is None
                and not group
                and link.target_source in known,
                group=group,
            )
        )
    seen = {(row.source, row.task_id) for row in rows}
    for link, naming in incoming:
        if (naming.source, naming.task_id) in seen:
            continue  # the two list each other (siblings): shown once
        rows.append(
            LinkRow(
                relation=INVERSE.get(link.relation, link.relation),
                task_id=naming.task_id,
                source=naming.source,
                status="found",
                found_in=link.found_in,
                tracked=naming,
                link_id=None,
                trackable=False,
            )
        )
    return rows


def _tracked(links: list[TaskLink]) -> dict[tuple[str, str], Task]:
    wanted = [(link.target_source, link.target_task_id) for link in links if link.target_source]
    if not wanted:
        return {}
    statement = sa.select(Task).where(
        Task.task_id.in_({task_id for _, task_id in wanted}),
        Task.source.in_({source for source, _ in wanted}),
    )
    return {(t.source, t.task_id): t for t in db.session.scalars(statement)}


def family_bars(task: Task, rows: list[LinkRow], related: list[TaskGlance]) -> list[Bar]:
    """The task and its tracked relatives as bars from creation (or first sight) to the end
    (or now), oldest first; empty when the task has no tracked relative."""
    members: dict[int, TaskGlance] = {task.id: glance(task)}
    linked = [glance(row.tracked) for row in rows if row.tracked is not None]
    for other in [*linked, *related]:
        if len(members) >= MAX_FAMILY:
            break
        members.setdefault(other.id, other)
    if len(members) < 2:
        return []
    now = utcnow()
    spans = []
    for member in members.values():
        start = member.created_at or member.sort_at or member.tracked_at
        end = member.finished_at if member.terminal and member.finished_at else now
        spans.append((member, start, max(end, start), not member.terminal))
    spans.sort(key=lambda item: (item[1], item[0].id))
    first = min(start for _, start, _, _ in spans)
    last = max(end for _, _, end, _ in spans)
    total = max((last - first).total_seconds(), 1.0)
    bars = []
    for member, start, end, ongoing in spans:
        x = (start - first).total_seconds() / total * GANTT_WIDTH
        width = max((end - start).total_seconds() / total * GANTT_WIDTH, MIN_BAR)
        bars.append(
            Bar(
                task=member,
                start=start,
                end=end,
                ongoing=ongoing,
                x=round(min(x, GANTT_WIDTH - MIN_BAR), 2),
                width=round(min(width, GANTT_WIDTH - min(x, GANTT_WIDTH - MIN_BAR)), 2),
                current=member.id == task.id,
            )
        )
    return bars


def family_version(task: Task, rows: list[LinkRow], related: list[TaskGlance]) -> str:
    """A short digest of what the family block shows, so that the status poll re-sends the
    block only when it changed (the page polls with it, as ``f``).

    This task's own state is left out: the poll swaps its state and time so far in the chart
    on their own (the ``family_self_*`` blocks), so a change of state costs two cells, not the
    chart (whose bars are as of its last drawing). Its end is in: the chart is drawn again
    once, when the task finishes."""
    parts = [
        f"{task.name}|{task.terminal}|{task.created_at}|{task.finished_at}|{task.links_checked_at}"
    ]
    for row in rows:
        tracked = f"{row.tracked.id}:{row.tracked.version}" if row.tracked is not None else ""
        parts.append(
            f"{row.relation}|{row.source}|{row.task_id}|{row.status}|{row.found_in}"
            f"|{row.trackable}|{row.group}|{tracked}"
        )
    parts.extend(f"{other.id}:{other.version}" for other in related)
    return hashlib.blake2b("\n".join(parts).encode(), digest_size=6).hexdigest()
