"""Sending deliveries: claimed with a lease, retried with exponential back-off, each attempt
logged.

Any number of refresher processes share the work as they share tasks: a sender claims due
deliveries by writing its name and a lease expiry on them in one ``UPDATE`` whose ``WHERE``
re-checks that nobody holds them (PostgreSQL re-evaluates it after waiting for a row; SQLite
has one writer at a time). A sender killed after its claim leaves the delivery ``sending``
with a lease that runs out, and the next sender takes it over. The message goes out outside
any transaction; its result is written only while the lease is still ours.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from contextlib import nullcontext
from datetime import datetime
from datetime import timedelta

import sqlalchemy as sa
from flask import Flask

from webapp.db.models import Delivery
from webapp.db.models import DeliveryAttempt
from webapp.db.models import NotificationRule
from webapp.db.models import User
from webapp.db.models import db
from webapp.db.models import utcnow
from webapp.notify.rules import TargetError
from webapp.notify.rules import resolve_target
from webapp.notify.targets import AttemptResult
from webapp.notify.targets import SmtpSettings
from webapp.notify.targets import post_json
from webapp.notify.targets import send_email
from webapp.notify.targets import slack_message
from webapp.sources.sealed import secrets_box

log = logging.getLogger(__name__)

#: Attempts before a delivery is given up (``failed``).
MAX_ATTEMPTS = 8
#: The wait after the first failure; it doubles after each one, up to :data:`MAX_BACKOFF`.
FIRST_BACKOFF = timedelta(seconds=30)
MAX_BACKOFF = timedelta(hours=1)
#: How long a claim holds: longer than any one attempt can take (webhook and SMTP timeouts).
LEASE = timedelta(seconds=120)
#: Deliveries claimed at a time.
BATCH = 20


def backoff(attempts: int) -> timedelta:
    """The wait before attempt ``attempts + 1``: 30 s, 1 min, 2 min, … at most an hour."""
    return min(FIRST_BACKOFF * (2 ** max(attempts - 1, 0)), MAX_BACKOFF)


def due_condition(now: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(
        Delivery.status.in_(("pending", "sending")),
        sa.or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now),
        sa.or_(Delivery.lease_until.is_(None), Delivery.lease_until < now),
    )


class DeliverySender:
    """One process's sender (``owner`` names its leases)."""

    def __init__(
        self,
        app: Flask,
        *,
        owner: str | None = None,
        clock: Callable[[], datetime] = utcnow,
        writing: Callable[[], AbstractContextManager[object]] = nullcontext,
    ) -> None:
        self.app = app
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"[:64]
        self.clock = clock
        #: The refresher's write lock (SQLite: one writer per process at a time).
        self.writing = writing
        #: Set when the process stops: the message in flight finishes, the rest are given back.
        self.stopping = threading.Event()

    def anything_due(self) -> bool:
        with self.app.app_context():
            found = db.session.scalar(
                sa.select(Delivery.id).where(due_condition(self.clock())).limit(1)
            )
            db.session.rollback()
        return found is not None

    def claim(self, limit: int = BATCH, only: list[int] | None = None) -> list[int]:
        """Lease up to ``limit`` due deliveries (oldest first); their ids. Commits."""
        now = self.clock()
        due = (
            sa.select(Delivery.id)
            .where(due_condition(now))
            .order_by(Delivery.next_attempt_at, Delivery.id)
            .limit(limit)
        )
        if only is not None:
            due = due.where(Delivery.id.in_(only))
        statement = (
            sa.update(Delivery)
            .where(Delivery.id.in_(due.scalar_subquery()), due_condition(now))
            .values(status="sending", lease_owner=self.owner, lease_until=now + LEASE)
            .returning(Delivery.id)
            .execution_options(synchronize_session=False)
        )
        with self.writing():
            claimed = list(db.session.scalars(statement))
            db.session.commit()
        return claimed

    def send_due(self, limit: int = BATCH, only: list[int] | None = None) -> int:
        """Claim and send what is due; how many were sent (successfully or not)."""
        with self.app.app_context():
            claimed = self.claim(limit, only)
            for index, delivery_id in enumerate(claimed):
                if self.stopping.is_set():
                    self.release(claimed[index:])
                    return index
                self.send_claimed(delivery_id)
            return len(claimed)

    def release(self, ids: list[int]) -> None:
        """Give claimed deliveries back unsent (a clean stop); they are due again at once."""
        with self.writing():
            db.session.execute(
                sa.update(Delivery)
                .where(Delivery.id.in_(ids), Delivery.lease_owner == self.owner)
                .values(status="pending", lease_owner=None, lease_until=None)
                .execution_options(synchronize_session=False)
            )
            db.session.commit()

    def send_all_due(self) -> int:
        """Batch after batch until nothing is due (``refresh --once``, tests)."""
        total = 0
        while not self.stopping.is_set():
            sent = self.send_due()
            total += sent
            if not sent:
                return total
        return total

    def send_claimed(self, delivery_id: int) -> AttemptResult | None:
        """Send one delivery this sender holds, and record the attempt (in an app context)."""
        delivery = db.session.get(Delivery, delivery_id)
        if delivery is None or delivery.lease_owner != self.owner:
            return None
        payload = dict(delivery.payload or {})
        kind = delivery.target_kind
        started = self.clock()
        try:
            destination = self._destination(delivery)
        except TargetError as exc:
            result = AttemptResult("error", None, str(exc), 0.0, permanent=True)
        else:
            db.session.rollback()  # no transaction stays open while we wait on the network
            result = self._send(kind, destination, payload)
        self._record(delivery_id, result, started)
        return result

    def _destination(self, delivery: Delivery) -> str:
        if delivery.subscription_user_id is not None:
            user = db.session.get(User, delivery.subscription_user_id)
            if user is None:
                raise TargetError("the person who asked no longer exists")
            address = user.email if delivery.target_kind == "email" else user.notify_webhook
            if not address:
                raise TargetError(f"the person who asked has no {delivery.target_kind} any more")
            return address
        rule = db.session.get(NotificationRule, delivery.rule_id) if delivery.rule_id else None
        if rule is None:
            raise TargetError("its rule was deleted")
        return resolve_target(rule, secrets_box(self.app))

    def _send(self, kind: str, destination: str, payload: dict[str, object]) -> AttemptResult:
        allow = bool(self.app.config.get("ALLOW_LINK_LOCAL"))
        if kind == "webhook":
            return post_json(destination, payload, allow_link_local=allow)
        if kind == "slack":
            return post_json(destination, slack_message(payload), allow_link_local=allow)
        if kind == "email":
            url = self.app.config.get("SMTP_URL")
            if not url:
                return AttemptResult("error", None, "TASKDECK_SMTP_URL is not set", 0.0)
            try:
                settings = SmtpSettings.parse(str(url), self.app.config.get("SMTP_FROM"))
            except ValueError as exc:
                return AttemptResult("error", None, str(exc), 0.0, permanent=True)
            return send_email(settings, destination, payload)
        return AttemptResult("error", None, f"unknown target kind {kind!r}", 0.0, permanent=True)

    def _record(self, delivery_id: int, result: AttemptResult, started: datetime) -> None:
        now = self.clock()
        with self.writing():
            delivery = db.session.get(Delivery, delivery_id, populate_existing=True)
            if delivery is None or delivery.lease_owner != self.owner:
                db.session.rollback()
                log.warning(
                    "delivery %s: lease lost while sending; result not recorded", delivery_id
                )
                return
            delivery.attempts += 1
            db.session.add(
                DeliveryAttempt(
                    delivery_id=delivery_id,
                    at=started,
                    outcome=result.outcome,
                    status_code=result.status_code,
                    answer=result.answer,
                    seconds=result.seconds,
                )
            )
            delivery.lease_owner = delivery.lease_until = None
            if result.outcome == "ok":
                delivery.status, delivery.sent_at, delivery.next_attempt_at = "sent", now, None
            elif result.permanent or delivery.attempts >= MAX_ATTEMPTS:
                delivery.status, delivery.next_attempt_at = "failed", None
            else:
                delivery.status = "pending"
                delivery.next_attempt_at = now + backoff(delivery.attempts)
            db.session.commit()
        if result.outcome != "ok":
            log.info(
                "delivery %s (%s): attempt %s %s %s",
                delivery_id,
                delivery.target_kind,
                delivery.attempts,
                result.outcome,
                result.status_code or "",
            )
