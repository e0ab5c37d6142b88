"""The task list on PostgreSQL: search through the GIN ``tsvector`` index, the label filter
through the ``jsonb`` index, and the same filters, sorts and keyset pages as on SQLite."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.listing.test_queries import FILTERS
from tests.listing.test_queries import every_page
from tests.listing.test_queries import python_view
from tests.listing.test_queries import query
from tests.listing.test_queries import seed_random
from webapp.db.models import Task
from webapp.db.models import db
from webapp.listing import schema as list_schema
from webapp.listing import search
from webapp.listing.counts import filter_choices
from webapp.listing.counts import state_counts

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_app(app_factory, make_source, postgres_url, dispose_engines):
    sources = [
        make_source("opensearch-ml", name="ml-prod"),
        make_source("opensearch-ml", name="ml-dev"),
        make_source("mixpeek", name="mixpeek-prod"),
    ]
    return dispose_engines(app_factory(sources, DATABASE_URL=postgres_url))


def test_filters_sorts_and_pages_match_python(pg_app):
    seed_random(pg_app)
    with pg_app.app_context():
        assert db.engine.dialect.name == "postgresql"
        tasks = list(db.session.scalars(sa.select(Task)))
        for filters in FILTERS:
            for sort in ("-created", "fresh", "-updated", "type", "-state"):
                view = query(f"{filters}&sort={sort}&limit=4")
                expected = python_view(tasks, view)
                forward, backward = every_page(view)
                assert backward == forward, (filters, sort)
                if sort in ("-created", "fresh", "-updated"):
                    assert forward == expected, (filters, sort)
                else:  # text order follows the database's collation, not Python's
                    assert sorted(forward) == sorted(expected), (filters, sort)
                counts = state_counts(view)
                assert counts.total == len(expected) and counts.exact


def test_a_search_of_nothing_but_punctuation_narrows_nothing(pg_app):
    seed_random(pg_app, count=12)
    with pg_app.app_context():
        view = query("q=!!! --&sort=-created&limit=5")
        assert every_page(view)[0] == every_page(query("sort=-created&limit=5"))[0]
        assert state_counts(view).total == 12


def plan_of(statement: sa.Select) -> str:
    """EXPLAIN of the statement as sent (bound parameters processed by their types)."""
    sent: list[tuple[str, object]] = []

    def capture(conn, cursor, sql, parameters, context, executemany):  # type: ignore[no-untyped-def]
        sent.append((sql, parameters))

    sa.event.listen(db.engine, "before_cursor_execute", capture)
    try:
        db.session.execute(statement).all()
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", capture)
    sql, parameters = sent[-1]
    cursor = db.session.connection().connection.cursor()
    cursor.execute("SET enable_seqscan = off")  # a few rows: make it show the index
    cursor.execute("EXPLAIN " + sql, parameters)
    return "\n".join(row[0] for row in cursor.fetchall())


def test_search_and_labels_read_their_indexes(pg_app):
    seed_random(pg_app, count=10)
    with pg_app.app_context():
        list_schema.install(db.engine)  # a second start changes nothing
        searched = sa.select(Task.id).where(*query(q="bravo model").where())
        assert search.PG_SEARCH_INDEX in plan_of(searched)
        labelled = sa.select(Task.id).where(*query(label="urgent").where())
        assert search.PG_LABELS_INDEX in plan_of(labelled)


def test_charts_and_choices(pg_app):
    seed_random(pg_app, count=20)
    from webapp.listing import charts

    with pg_app.app_context():
        drawn = charts.for_view(query("state=finished"))
        assert drawn.timeline is not None and drawn.timeline.total > 0
        assert str(drawn.timeline_svg).startswith("<svg")
        assert filter_choices()["types"] == ["DEPLOY_MODEL", "TRAINING"]
