"""What writes deliveries: tasks entering a rule's match, and finished tasks someone watches.

:func:`tasks_changed` runs inside the transaction of whoever changed the tasks (the refresher's
writer, the overdue pass), so the deliveries commit with the change that caused them or not at
all: a worker killed after the commit leaves them pending for the next sender, one killed
before leaves neither. Rules are edge-triggered: a ``RuleMatch`` row records that a task is
inside a rule's match and in which state; a delivery is written when the row appears or its
state changes, the row is removed when the task leaves the match, and ``dedup_key``
(``rule:<id>:task:<pk>:<state>``) makes a rule fire at most once per task and state.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from contextlib import nullcontext
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask import current_app
from flask import has_request_context
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite

from webapp.db.models import Delivery
from webapp.db.models import NotificationRule
from webapp.db.models import RuleMatch
from webapp.db.models import Subscription
from webapp.db.models import Task
from webapp.db.models import User
from webapp.db.models import db
from webapp.db.models import utcnow
from webapp.listing.query import QueryError
from webapp.notify.rules import rule_query
from webapp.notify.rules import target_label
from webapp.web.serialize import iso
from webapp.web.serialize import task_json

log = logging.getLogger(__name__)


def tasks_changed(
    task_pks: Iterable[int], now: datetime | None = None, *, quiet: bool = False
) -> int:
    """Evaluate every enabled rule and every subscription against ``task_pks`` after a change
    (call it after writing the tasks, before the commit). Returns the deliveries written.

    ``quiet`` records which tasks are inside each rule's match as they stand and writes no
    delivery: for a backfill (an import, a follow's first run) of tasks that were there before
    anyone watched, where nothing entered anything; their next change is judged as usual.
    """
    pks = sorted(set(task_pks))
    if not pks:
        return 0
    now = now or utcnow()
    db.session.flush()
    rules = list(
        db.session.scalars(sa.select(NotificationRule).where(NotificationRule.enabled.is_(True)))
    )
    subscribed = set(
        db.session.scalars(sa.select(Subscription.task_pk).where(Subscription.task_pk.in_(pks)))
    )
    if not rules and not subscribed:
        return 0
    tasks = {t.id: t for t in db.session.scalars(sa.select(Task).where(Task.id.in_(pks)))}
    batch = _Batch(now)
    # One flush for the match rows and one INSERT for the deliveries, not one each.
    with db.session.no_autoflush:
        for rule in rules:
            _evaluate(rule, tasks, batch)
        if quiet:
            batch.rows.clear()
        finished = [pk for pk in subscribed if pk in tasks and tasks[pk].terminal]
        if finished:
            _finish_subscriptions([tasks[pk] for pk in finished], batch)
    db.session.flush()
    return len(insert_deliveries(batch.rows))


class _Batch:
    """The deliveries one call writes, and each task's object computed once for them all."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.rows: list[dict[str, Any]] = []
        self._objects: dict[int, dict[str, Any]] = {}

    def add(self, task: Task, **fields: Any) -> None:
        data = self._objects.get(task.id)
        if data is None:
            data = self._objects[task.id] = task_object(task)
        self.rows.append(delivery_values(task=task, now=self.now, sample=data, **fields))


def _evaluate(rule: NotificationRule, tasks: dict[int, Task], batch: _Batch) -> None:
    now = batch.now
    try:
        query = rule_query(rule.when, now)
    except QueryError:
        log.warning("notification rule %r: its `when` no longer parses; skipped", rule.name)
        return
    pks = list(tasks)
    matching: dict[int, str] = {
        pk: state
        for pk, state in db.session.execute(
            sa.select(Task.id, Task.state).where(Task.id.in_(pks), *query.where())
        )
    }
    current = {
        match.task_pk: match
        for match in db.session.scalars(
            sa.select(RuleMatch).where(RuleMatch.rule_id == rule.id, RuleMatch.task_pk.in_(pks))
        )
    }
    for pk, left in current.items():
        if pk not in matching:
            db.session.delete(left)  # left the match: entering it again may fire
    for pk, state in matching.items():
        match = current.get(pk)
        if match is not None and match.state == state:
            continue
        if match is None:
            db.session.add(RuleMatch(rule_id=rule.id, task_pk=pk, state=state, matched_at=now))
        else:
            match.state, match.matched_at = state, now
        task = tasks[pk]
        event = f"entered {state}" + (" (overdue)" if task.overdue else "")
        batch.add(task, dedup_key=f"rule:{rule.id}:task:{pk}:{state}", event=event, rule=rule)


def _finish_subscriptions(tasks: list[Task], batch: _Batch) -> None:
    for task in tasks:
        subscriptions = db.session.scalars(
            sa.select(Subscription).where(Subscription.task_pk == task.id)
        )
        for subscription in subscriptions.all():
            if _end(subscription):
                _tell(subscription, task, batch)


def _end(subscription: Subscription) -> bool:
    """Delete the subscription's row; whether this call removed it (another process may have
    ended it first: then it is not told twice, and no stale ``DELETE`` aborts the caller)."""
    ended = db.session.execute(
        sa.delete(Subscription)
        .where(Subscription.id == subscription.id)
        .execution_options(synchronize_session=False)
    )
    db.session.expunge(subscription)
    return bool(ended.rowcount)  # type: ignore[attr-defined]


def _tell(subscription: Subscription, task: Task, batch: _Batch) -> None:
    """Add the one delivery of a subscription whose task has finished."""
    user = db.session.get(User, subscription.user_id)
    if user is None:
        return
    label = (user.email if subscription.target_kind == "email" else user.notify_webhook) or "?"
    batch.add(
        task,
        dedup_key=(
            f"subscription:{subscription.id}:user:{user.id}:task:{task.id}:"
            f"{subscription.created_at.timestamp():.6f}"
        ),
        event=f"finished {task.state}",
        user=user,
        target_kind=subscription.target_kind,
        label=label,
    )


def finish_left_subscriptions(now: datetime | None = None) -> int:
    """End the subscriptions whose task has already finished, one delivery each (not committed;
    the deliveries written).

    A subscription committed just as its task's final state was written is not seen by that
    write (it read the subscriptions before the new one was committed), and a finished task
    changes no more: the refresher's periodic pass calls this, so the person is told anyway.
    Only the process whose ``DELETE`` removed a subscription writes its delivery (and
    ``dedup_key`` would drop a second one anyway).
    """
    # From the few subscriptions to their tasks, by id alone: a test of ``terminal`` in SQL may
    # be read through the tasks' ``terminal`` index (SQLite without statistics), nearly every task.
    watched = db.session.scalars(sa.select(Subscription.task_pk).distinct()).all()
    if not watched:
        return 0
    finished = [
        pk
        for pk, terminal in db.session.execute(
            sa.select(Task.id, Task.terminal).where(Task.id.in_(watched))
        )
        if terminal
    ]
    if not finished:
        return 0
    tasks = {
        task.id: task for task in db.session.scalars(sa.select(Task).where(Task.id.in_(finished)))
    }
    left = db.session.scalars(
        sa.select(Subscription).where(Subscription.task_pk.in_(tasks)).order_by(Subscription.id)
    ).all()
    batch = _Batch(now or utcnow())
    for subscription in left:
        if _end(subscription):
            _tell(subscription, tasks[subscription.task_pk], batch)
    return len(insert_deliveries(batch.rows))


def write_delivery(
    *,
    dedup_key: str,
    event: str,
    task: Task | None,
    now: datetime,
    rule: NotificationRule | None = None,
    user: User | None = None,
    target_kind: str | None = None,
    label: str | None = None,
    sample: dict[str, Any] | None = None,
) -> int | None:
    """Add one pending delivery unless its ``dedup_key`` exists: its id, or ``None``."""
    values = delivery_values(
        dedup_key=dedup_key,
        event=event,
        task=task,
        now=now,
        rule=rule,
        user=user,
        target_kind=target_kind,
        label=label,
        sample=sample,
    )
    found = insert_deliveries([values])
    return found[0] if found else None


def delivery_values(
    *,
    dedup_key: str,
    event: str,
    task: Task | None,
    now: datetime,
    rule: NotificationRule | None = None,
    user: User | None = None,
    target_kind: str | None = None,
    label: str | None = None,
    sample: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The row of one pending delivery (``sample``: the task object, when already made)."""
    kind = target_kind or (rule.target_kind if rule is not None else "webhook")
    payload = message_payload(event=event, task=task, rule=rule, now=now, sample=sample)
    return {
        "dedup_key": dedup_key[:300],
        "rule_id": rule.id if rule is not None else None,
        "subscription_user_id": user.id if user is not None else None,
        "task_pk": task.id if task is not None else None,
        "event": event[:120],
        "target_kind": kind,
        "target_label": (label or (target_label(rule) if rule is not None else "?"))[:300],
        "payload": payload,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


#: Rows per INSERT (SQLite allows 32,766 bound values in one statement).
INSERT_CHUNK = 500


def insert_deliveries(rows: list[dict[str, Any]]) -> list[int]:
    """Insert deliveries, skipping any whose ``dedup_key`` exists; the ids written.

    ``INSERT … ON CONFLICT DO NOTHING``, so a duplicate never aborts the caller's transaction.
    """
    if not rows:
        return []
    dialect = db.session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    written: list[int] = []
    for start in range(0, len(rows), INSERT_CHUNK):
        statement = (
            insert(Delivery)
            .values(rows[start : start + INSERT_CHUNK])
            .on_conflict_do_nothing(index_elements=["dedup_key"])
            .returning(Delivery.id)
        )
        written.extend(db.session.scalars(statement))
    return written


def message_payload(
    *,
    event: str,
    task: Task | None,
    rule: NotificationRule | None,
    now: datetime,
    sample: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What a delivery says, fixed when it is written (a retry later sends the same message):
    the event, the rule, and the task object with its shareable URL (``links.self``)."""
    task_data = sample if sample is not None else (task_object(task) if task is not None else {})
    return {
        "event": {"description": event, "at": iso(now)},
        "rule": (
            {"id": rule.id, "name": rule.name, "when": rule.when} if rule is not None else None
        ),
        "task": task_data,
        "url": (task_data.get("links") or {}).get("self"),
    }


def task_object(task: Task) -> dict[str, Any]:
    """The normalized task object (as the API gives it, without history and raw payload),
    its links made absolute with ``TASKDECK_BASE_URL`` (or the current request's host)."""
    base = current_app.config.get("BASE_URL")
    context: Any = nullcontext()
    if base or not has_request_context():
        context = current_app.test_request_context(base_url=str(base or "http://localhost"))
    with context:
        data = task_json(task, with_history=False)
    data.pop("raw", None)
    data["overdue"] = bool(task.overdue)
    if task.overdue_reason:
        data["overdue_reason"] = task.overdue_reason
    return data
