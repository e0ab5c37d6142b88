"""The configured follows become ``follows`` rows at start-up: the file wins over the UI,
keeps pausing, starts over on a new query, and removes what it no longer declares."""

from __future__ import annotations

from datetime import UTC
from datetime import datetime

import sqlalchemy as sa

from webapp.db.models import Follow
from webapp.db.models import db


def rows(app) -> dict[str, Follow]:  # type: ignore[no-untyped-def]
    with app.app_context():
        found = {row.source: row for row in db.session.scalars(sa.select(Follow))}
        db.session.expunge_all()
        return found


def test_the_files_follows_are_stored_and_kept_in_step(app_factory, make_source):
    first = make_source("opensearch-ml", name="ml", follow="state:FAILED", follow_interval=30)
    other = make_source("nclue", name="nc")
    app = app_factory([first, other])
    row = rows(app)["ml"]
    assert (row.query, row.interval_seconds, row.backfill_limit) == ("state:FAILED", 30, 200)
    assert (row.origin, row.paused, row.runs, row.watermark, row.next_run_at) == (
        "file",
        False,
        0,
        None,
        None,
    )
    assert "nc" not in rows(app)

    # A run got somewhere; someone paused it in the UI; a follow was added there for "nc".
    seen = datetime(2026, 1, 1, tzinfo=UTC)
    with app.app_context():
        db.session.execute(
            sa.update(Follow).values(watermark=seen, frontier=["a"], runs=3, paused=True)
        )
        db.session.add(
            Follow(source="nc", query="*", interval_seconds=60, backfill_limit=5, origin="database")
        )
        db.session.commit()

    # The same query again: nothing starts over.
    app = app_factory([first, other])
    row = rows(app)["ml"]
    assert (row.watermark, row.runs, row.paused) == (seen, 3, True)
    assert rows(app)["nc"].origin == "database"

    # A new query starts over (still paused); the file's follow for "nc" replaces the UI's.
    changed = make_source("opensearch-ml", name="ml", follow="state:COMPLETED")
    declared = make_source("nclue", name="nc", follow="status:failed", follow_backfill=7)
    app = app_factory([changed, declared])
    row, nc = rows(app)["ml"], rows(app)["nc"]
    assert (row.query, row.watermark, row.frontier, row.runs, row.paused) == (
        "state:COMPLETED",
        None,
        [],
        0,
        True,
    )
    assert (nc.origin, nc.query, nc.backfill_limit) == ("file", "status:failed", 7)

    # No longer declared: gone.
    app = app_factory([make_source("opensearch-ml", name="ml"), declared])
    assert set(rows(app)) == {"nc"}


def test_a_follow_added_in_the_ui_stays_while_its_source_is_there(app_factory, make_source):
    source = make_source("conductor", name="flows")
    app = app_factory([source])
    with app.app_context():
        db.session.add(Follow(source="flows", query="*", interval_seconds=60, backfill_limit=5))
        db.session.commit()
    app = app_factory([source])
    assert rows(app)["flows"].origin == "database"
