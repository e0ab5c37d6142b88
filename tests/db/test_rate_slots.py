"""The request budget kept in the database (webapp/db/rate_slots.py): slots one interval and a
margin apart for every limiter of a source, a refused slot left untaken, a row per source."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from webapp.db.models import db
from webapp.db.rate_slots import MAX_MARGIN_SECONDS
from webapp.db.rate_slots import DatabaseLimiter
from webapp.providers.ratelimit import WaitTooLong


def test_slots_are_shared_by_every_limiter_of_a_source(database_url, app_factory):
    app = app_factory(DATABASE_URL=database_url)
    with app.app_context():
        engine = db.engine
    # A slow rate, so that the milliseconds between calls do not matter: 10 s and the margin.
    limiter = DatabaseLimiter(lambda: engine, "nc", rate=0.1)
    step = 10 + MAX_MARGIN_SECONDS
    assert limiter.interval == pytest.approx(step)

    def slot(taker: DatabaseLimiter) -> float:
        # When the slot may be used, on this process's clock: a slow machine's milliseconds
        # between calls shorten each wait but do not move the slots.
        return time.monotonic() + taker.reserve()

    start = slot(limiter)
    assert start == pytest.approx(time.monotonic(), abs=0.5)
    assert [slot(limiter) - start for _ in range(2)] == pytest.approx([step, 2 * step], abs=0.25)
    with pytest.raises(WaitTooLong) as refused:
        limiter.reserve(max_wait=step)
    assert refused.value.wait <= 3 * step
    assert refused.value.wait > 2 * step
    # The refusal took nothing; another process's limiter takes the next slot of the same row.
    other = DatabaseLimiter(lambda: engine, "nc", rate=0.1)
    assert slot(other) - start == pytest.approx(3 * step, abs=0.25)
    assert slot(limiter) - start == pytest.approx(4 * step, abs=0.25)
    # Another source has a budget of its own.
    assert DatabaseLimiter(lambda: engine, "mx", rate=0.1).reserve() == 0


def test_the_margin_is_a_tenth_of_an_interval_at_most_100_ms(app):
    with app.app_context():
        engine = db.engine
    assert DatabaseLimiter(lambda: engine, "a", rate=10).interval == pytest.approx(0.11)
    assert DatabaseLimiter(lambda: engine, "b", rate=1).interval == pytest.approx(1.1)
    assert DatabaseLimiter(lambda: engine, "c", rate=0.5).interval == pytest.approx(2.1)


@pytest.mark.sqlite_only
def test_a_slot_is_timed_from_when_the_write_lock_was_ours(app_factory, instance_path):
    # Another process holds SQLite's write lock for a while: the slot taken once it is free
    # must start then, not when we began to wait (the next caller would go too soon after us).
    path = instance_path / "locked.sqlite"
    app = app_factory(DATABASE_URL=f"sqlite:///{path}")
    with app.app_context():
        engine = db.engine
    first, second = (DatabaseLimiter(lambda: engine, "nc", rate=1.0) for _ in range(2))
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    threading.Timer(0.5, holder.execute, args=("COMMIT",)).start()
    sent = []
    for limiter in (first, second):
        wait = limiter.reserve()
        sent.append(time.monotonic() + wait)
    holder.close()
    assert sent[1] - sent[0] >= first.interval - 0.05
