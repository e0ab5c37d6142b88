""" "Notify me": one person asks to be told when one task finishes; one delivery, then the
subscription ends (:func:`webapp.notify.triggers.tasks_changed` writes it)."""

from __future__ import annotations

import sqlalchemy as sa

from webapp.db.models import Subscription
from webapp.db.models import Task
from webapp.db.models import User
from webapp.db.models import db


def channel(user: User) -> str | None:
    """How ``user`` is told: their own webhook when they set one, else e-mail, else no way."""
    if user.notify_webhook:
        return "webhook"
    if user.email:
        return "email"
    return None


def subscription(user_id: int, task: Task) -> Subscription | None:
    return db.session.scalar(
        sa.select(Subscription).where(
            Subscription.user_id == user_id, Subscription.task_pk == task.id
        )
    )


def subscribe(user: User, task: Task) -> Subscription:
    """Ask to be told when ``task`` finishes (idempotent). ``ValueError`` when the person has
    no way to be told or the task has already finished."""
    kind = channel(user)
    if kind is None:
        raise ValueError("set an e-mail address or a webhook in your settings first")
    if task.terminal:
        raise ValueError(f"this task has already finished ({task.state})")
    existing = subscription(user.id, task)
    if existing is not None:
        existing.target_kind = kind
        return existing
    created = Subscription(user_id=user.id, task_pk=task.id, target_kind=kind)
    db.session.add(created)
    return created


def unsubscribe(user_id: int, task: Task) -> bool:
    existing = subscription(user_id, task)
    if existing is None:
        return False
    db.session.delete(existing)
    return True
