"""Retention: finished tasks older than ``RETENTION_DAYS`` are deleted, with their events."""

from __future__ import annotations

import logging
from datetime import datetime
from datetime import timedelta

import sqlalchemy as sa

from webapp.db.models import Task
from webapp.db.models import db
from webapp.refresher.periodic import PeriodicPass

log = logging.getLogger(__name__)

#: How often a running worker applies RETENTION_DAYS.
PURGE_EVERY_SECONDS = 3600.0


def purge_finished(days: float, now: datetime) -> int:
    """Delete terminal tasks (and, by cascade, their events) that finished ``days`` ago."""
    cutoff = now - timedelta(days=days)
    ids = db.session.scalars(
        sa.select(Task.id).where(
            Task.terminal.is_(True), Task.next_poll_at.is_(None), Task.finished_at < cutoff
        )
    ).all()
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        db.session.execute(sa.delete(Task).where(Task.id.in_(chunk)))
    db.session.commit()
    return len(ids)


class Retention(PeriodicPass):
    """Applies ``RETENTION_DAYS`` from a running worker, at most once per
    :data:`PURGE_EVERY_SECONDS`."""

    every_seconds = PURGE_EVERY_SECONDS

    def purge_if_due(self) -> None:
        days = self.app.config.get("RETENTION_DAYS")
        if not days or not self.is_due():
            return
        self.started()
        with self.app.app_context(), self.writing():
            purged = purge_finished(float(days), self.clock())
        if purged:
            log.info("retention: purged %s finished tasks older than %s days", purged, days)
