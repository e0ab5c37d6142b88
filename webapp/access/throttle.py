"""Sign-in throttling, shared by every process through the ``login_throttle`` table.

Two counters of failed sign-ins, each over a window of :data:`WINDOW`:

- per client address: :data:`ADDRESS_LIMIT` failures (whatever names were tried) block that
  address for :data:`BLOCK`; other addresses go on as before;
- per user name: :data:`NAME_LIMIT` failures (from any addresses) block that name everywhere
  for :data:`BLOCK`. The limit is higher than the address's, so one client guessing cannot lock
  a person out (its own address is blocked first), while guesses spread over many addresses
  still stop.

While blocked, a sign-in is refused before its password is checked, right or wrong. A
successful sign-in clears its name's counter (not its address's, which would let a guesser
with an account of their own reset it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from webapp.db.models import LoginThrottle
from webapp.db.models import UTCDateTime
from webapp.db.models import db
from webapp.db.models import utcnow

WINDOW = timedelta(minutes=15)
BLOCK = timedelta(minutes=15)
ADDRESS_LIMIT = 5
NAME_LIMIT = 20
#: The ``key`` column's width.
MAX_KEY = 200


@dataclass(frozen=True)
class Counter:
    key: str
    limit: int


def counters(username: str, address: str | None) -> tuple[Counter, Counter]:
    # Names are folded so that "Ana" and "ana" share one counter.
    return (
        Counter(f"name:{username.strip().casefold()}"[:MAX_KEY], NAME_LIMIT),
        Counter(f"addr:{address or 'unknown'}"[:MAX_KEY], ADDRESS_LIMIT),
    )


def blocked_until(username: str, address: str | None) -> datetime | None:
    """When sign-ins for this name from this address may be tried again, or ``None`` now."""
    now = utcnow()
    keys = [counter.key for counter in counters(username, address)]
    until = db.session.scalar(
        sa.select(sa.func.max(LoginThrottle.blocked_until)).where(
            LoginThrottle.key.in_(keys), LoginThrottle.blocked_until > _at(now)
        )
    )
    return until


def record_failure(username: str, address: str | None) -> datetime | None:
    """Count a failed sign-in; returns when the block it caused ends, if it caused one."""
    now = utcnow()
    # Counters whose window and block are over count nothing: drop them, so that guesses at
    # ever new names do not grow the table.
    db.session.execute(
        sa.delete(LoginThrottle).where(
            LoginThrottle.window_started_at < _at(now - WINDOW),
            sa.or_(LoginThrottle.blocked_until.is_(None), LoginThrottle.blocked_until <= _at(now)),
        )
    )
    for counter in counters(username, address):
        _count(counter, now)
    db.session.commit()
    return blocked_until(username, address)


def record_success(username: str) -> None:
    name, _ = counters(username, None)
    db.session.execute(sa.delete(LoginThrottle).where(LoginThrottle.key == name.key))


def _at(moment: datetime) -> sa.BindParameter[datetime]:
    # Typed, so SQLite gets the same text form the column stores and compares in.
    return sa.bindparam(None, moment, type_=UTCDateTime())


def _insert_if_missing(key: str, now: datetime) -> sa.Executable:
    """A zero counter for ``key`` unless it has one, without failing when another process adds
    it at the same moment (the databases Taskdeck runs on both have ``ON CONFLICT``)."""
    dialect = db.session.get_bind().dialect.name
    insert = sqlite_insert if dialect == "sqlite" else postgresql_insert
    return (
        insert(LoginThrottle)
        .values(key=key, failures=0, window_started_at=now)
        .on_conflict_do_nothing(index_elements=["key"])
    )


def _count(counter: Counter, now: datetime) -> None:
    """One more failure, in single statements so that processes counting at once add up."""
    stale = LoginThrottle.window_started_at < _at(now - WINDOW)
    increment = (
        sa.update(LoginThrottle)
        .where(LoginThrottle.key == counter.key)
        .values(
            failures=sa.case((stale, 1), else_=LoginThrottle.failures + 1),
            window_started_at=sa.case((stale, _at(now)), else_=LoginThrottle.window_started_at),
        )
    )
    db.session.execute(_insert_if_missing(counter.key, now))
    db.session.execute(increment)
    db.session.execute(
        sa.update(LoginThrottle)
        .where(
            LoginThrottle.key == counter.key,
            LoginThrottle.failures >= counter.limit,
            sa.or_(LoginThrottle.blocked_until.is_(None), LoginThrottle.blocked_until <= _at(now)),
        )
        .values(blocked_until=now + BLOCK)
    )
