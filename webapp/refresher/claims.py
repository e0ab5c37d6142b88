"""Leases: how any number of workers share one database without fetching a task twice.

A worker claims due tasks by writing its name and a lease expiry on them (``lease_owner``,
``lease_until``); a task whose worker died is due again once its lease runs out. Results are
written only while the lease is still the worker's: one that took a task over after our lease
ran out wins, its result being the newer one.

The SQL differs per database, so each has its own :class:`Claims`: PostgreSQL has row locks
(concurrent claims skip each other's rows), SQLite has one writer at a time (a process queues
its own writers on a lock rather than in SQLite's busy handler, whose sleeps leave the database
idle).
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from contextlib import nullcontext
from datetime import datetime
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from webapp.config import SourceConfig
from webapp.db.models import Task
from webapp.db.models import db


def unleased(now: datetime) -> sa.ColumnElement[bool]:
    return sa.or_(Task.lease_until.is_(None), Task.lease_until < now)


class Claims:
    """One worker's leases (``owner``), on a database of the subclass's kind."""

    def __init__(self, owner: str, lease_seconds: float | None) -> None:
        self.owner = owner
        #: Fixed lease length (configuration, tests); ``None``: from each source's timeout.
        self.lease_seconds = lease_seconds

    def writing(self) -> AbstractContextManager[object]:
        """Hold this around a write transaction (a claim, a result, a purge)."""
        return nullcontext()

    def _lock_due(self, due: sa.Select[Any]) -> sa.Select[Any]:
        """The subquery that picks due rows, with whatever locking the database offers."""
        return due

    def own_tasks(self, ids: list[int]) -> list[Task]:
        """The tasks among ``ids`` whose lease is still ours, locked until the commit."""
        raise NotImplementedError

    def lease_for(self, source: SourceConfig, count: int) -> timedelta:
        seconds = float(self.lease_seconds or max(60.0, source.timeout * 4))
        rate = source.effective_rate_limit
        if rate:
            # Worst case one request per task, each waiting for its slot in the budget.
            seconds += count / rate
        return timedelta(seconds=seconds)

    def anything_due(self, source: SourceConfig, now: datetime, cutoff: datetime) -> bool:
        """A read before the claim, which is a write: most passes find nothing due for most
        sources, and SQLite has one writer at a time."""
        due = (
            sa.select(Task.id)
            .where(Task.source == source.name, Task.next_poll_at <= cutoff, unleased(now))
            .limit(1)
        )
        return db.session.scalar(due) is not None

    def claim(
        self,
        source: SourceConfig,
        now: datetime,
        cutoff: datetime,
        limit: int,
        only: list[int] | None = None,
    ) -> list[tuple[int, str]]:
        """Lease up to ``limit`` of the source's tasks due by ``cutoff`` (most overdue first),
        among ``only`` if given; ``(tasks.id, upstream task id)`` of each. Commits."""
        due = (
            sa.select(Task.id)
            .where(
                Task.source == source.name,
                Task.next_poll_at.is_not(None),
                Task.next_poll_at <= cutoff,
                unleased(now),
            )
            .order_by(Task.next_poll_at)
            .limit(limit)
        )
        if only is not None:
            due = due.where(Task.id.in_(only))
        statement = (
            sa.update(Task)
            .where(Task.id.in_(self._lock_due(due).scalar_subquery()))
            .values(lease_owner=self.owner, lease_until=now + self.lease_for(source, limit))
            .returning(Task.id, Task.task_id)
            .execution_options(synchronize_session=False)
        )
        claimed = [(pk, task_id) for pk, task_id in db.session.execute(statement)]
        db.session.commit()
        return claimed

    def release(self, pks: list[int] | None = None) -> None:
        """Give leased tasks back unfetched (all of ours when ``pks`` is None); they stay due.
        Commits."""
        mine = Task.lease_owner == self.owner
        db.session.execute(
            sa.update(Task)
            .where(mine if pks is None else sa.and_(Task.id.in_(pks), mine))
            .values(lease_owner=None, lease_until=None)
            .execution_options(synchronize_session=False)
        )
        db.session.commit()


class PostgresClaims(Claims):
    def _lock_due(self, due: sa.Select[Any]) -> sa.Select[Any]:
        # Concurrent claims skip each other's rows instead of waiting for them.
        return due.with_for_update(skip_locked=True, key_share=True)

    def own_tasks(self, ids: list[int]) -> list[Task]:
        # Row locks; the lease is re-read once the lock is ours.
        return list(
            db.session.scalars(
                sa.select(Task)
                .where(Task.id.in_(ids), Task.lease_owner == self.owner)
                .with_for_update(key_share=True)
            )
        )


class SqliteClaims(Claims):
    def __init__(self, owner: str, lease_seconds: float | None) -> None:
        super().__init__(owner, lease_seconds)
        self._writer = threading.Lock()

    def writing(self) -> AbstractContextManager[object]:
        return self._writer

    def own_tasks(self, ids: list[int]) -> list[Task]:
        # SQLite has no row locks: an UPDATE first takes the database's write lock, so the
        # leases it matched cannot change before we commit. Its RETURNING hands back the rows
        # themselves: one statement, not an UPDATE and then a SELECT.
        return list(
            db.session.scalars(
                sa.update(Task)
                .where(Task.id.in_(ids), Task.lease_owner == self.owner)
                .values(lease_owner=None, lease_until=None)
                .returning(Task)
                .execution_options(synchronize_session=False, populate_existing=True)
            )
        )


CLAIMS: dict[str, type[Claims]] = {"sqlite": SqliteClaims, "postgresql": PostgresClaims}


def claims_for(engine: sa.Engine, owner: str, lease_seconds: float | None) -> Claims:
    """The :class:`Claims` for ``engine``'s database."""
    try:
        kind = CLAIMS[engine.dialect.name]
    except KeyError:
        raise RuntimeError(f"the refresher does not support {engine.dialect.name!r}") from None
    return kind(owner, lease_seconds)
