"""How a search is read: the search runs once a view; a page near the top of a list sorted by
time is tested against the search's newest matches (and read again the usual way when that
could have missed a row); a search's counts stop at their own cap. Pages are checked against
the same view computed in Python, with the plan's bound small enough to take every path."""

from __future__ import annotations

from collections import Counter
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from tests.listing.test_queries import SOURCES
from tests.listing.test_queries import WORDS
from tests.listing.test_queries import add_task
from tests.listing.test_queries import every_page
from tests.listing.test_queries import python_view
from tests.listing.test_queries import query
from tests.listing.test_queries import seed_random
from webapp.db.models import Task
from webapp.db.models import db
from webapp.domain import TaskState
from webapp.listing import plan as query_plan
from webapp.listing.backends import SqliteBackend
from webapp.listing.backends import backend
from webapp.listing.counts import count_cap
from webapp.listing.counts import state_counts
from webapp.listing.pages import list_tasks


@pytest.fixture
def app(app_factory, make_source):
    return app_factory([make_source("opensearch-ml", name=name) for name in SOURCES])


def seed_in_order(app, count: int = 60) -> None:
    """Tasks tracked as they were created (ids grow with time, as on a live board), with a
    few older ones tracked late (an import) so that ids and times disagree somewhere."""
    base = datetime(2024, 5, 1, tzinfo=UTC)
    states = list(TaskState)
    with app.app_context():
        for i in range(count):
            late = i % 17 == 16
            created = base + timedelta(minutes=(i - 40 if late else i))
            add_task(
                SOURCES[i % len(SOURCES)],
                f"t{i:03d}/{WORDS[i % len(WORDS)]}",
                state=states[i % len(states)],
                name=f"{WORDS[(i * 7) % len(WORDS)]} model",
                created=created,
                error=f"{WORDS[i % 3]} went wrong" if i % 4 == 0 else None,
                raw={"payload": WORDS[(i * 3) % len(WORDS)], "n": i},
                now=created,
            )
        db.session.commit()


def captured(app) -> list[str]:
    """Every SQL statement the app's engine runs from now on."""
    statements: list[str] = []
    with app.app_context():
        sa.event.listen(db.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    return statements


SEARCHES = ["q=model", "q=alpha", "q=went wrong", "q=t0", "q=bravo&source=ml-dev", "q=zulu"]


@pytest.mark.parametrize("seed", [seed_in_order, seed_random])
@pytest.mark.parametrize("bound", [0, 3, 12, 10**6])
def test_search_pages_match_python_whatever_the_plan(app, seed, bound, monkeypatch):
    monkeypatch.setattr(query_plan, "SPARSE_ROWS", bound)
    seed(app)
    with app.app_context():
        tasks = list(db.session.scalars(sa.select(Task)))
        for search in SEARCHES:
            for sort in ("-created", "created", "type", "-fresh"):
                view = query(f"{search}&sort={sort}&limit=4")
                expected = python_view(tasks, view)
                forward, backward = every_page(view)
                assert forward == expected, (search, sort)
                assert backward == forward, (search, sort)
                counts = state_counts(view, cap=10**6)
                assert (counts.total, counts.exact) == (len(expected), True), (search, sort)


@pytest.mark.sqlite_only
@pytest.mark.parametrize("path", ["/?q=model&limit=4", "/?q=t001", "/?q=t001&state=failed"])
def test_a_search_page_runs_the_search_once(app, path, monkeypatch):
    """Its read, its counts and its overdue count all use the one run (the bounds scaled
    down from 5,000 matches and counts to 1,000 with the test's 60 tasks)."""
    monkeypatch.setattr(query_plan, "SPARSE_ROWS", 5)
    monkeypatch.setattr(SqliteBackend, "search_count_cap", 3)
    seed_in_order(app)
    statements = captured(app)
    answer = app.test_client().get(path)
    assert answer.status_code == 200
    # Once outright, for the newest matches; the other reads test ids against those (and
    # run the search only for a row older than all of them).
    searched = [s for s in statements if "MATCH" in s and "json_each" not in s]
    assert len(searched) == 1 and "ORDER BY tasks_fts.rowid DESC" in searched[0], path


def test_a_search_is_counted_to_its_own_cap_among_its_newest_matches(app, monkeypatch):
    monkeypatch.setattr(query_plan, "SPARSE_ROWS", 5)
    seed_in_order(app)
    with app.app_context():
        assert count_cap(query("q=model")) == backend().search_count_cap
        assert count_cap(query("state=failed")) == count_cap() == backend().count_cap
        view = query("q=model")  # every task: many more matches than the plan's bound
        capped = state_counts(view, cap=3)
        assert not capped.exact and capped.total == 4
        # Counted among the newest matches the plan holds (its bound and one more).
        newest = db.session.scalars(sa.select(Task).order_by(Task.id.desc()).limit(6))
        held = Counter(t.state for t in newest)
        assert all(n <= held[state] for state, n in capped.by_state.items()), capped


def plan_of(statement: str, params: Any) -> str:
    raw = db.session.connection().connection.driver_connection
    return " | ".join(row[3] for row in raw.execute("EXPLAIN QUERY PLAN " + statement, params))


@pytest.mark.sqlite_only
def test_search_reads_never_collect_every_match_first(app, monkeypatch):
    """EXPLAIN QUERY PLAN: the page walks an index in the sort's order; counting a search is
    driven by the search index (or the list of its newest matches) one match at a time, a
    join to ``tasks`` by primary key that the count's LIMIT stops, never ``id IN (every
    match)``."""
    monkeypatch.setattr(query_plan, "SPARSE_ROWS", 5)
    seed_in_order(app)
    with app.app_context():
        statements: list[tuple[str, Any]] = []
        sa.event.listen(
            db.engine, "before_cursor_execute", lambda *a: statements.append((a[2], a[3]))
        )
        view = query("q=model&source=ml-prod")
        list_tasks(view)
        state_counts(view)
        page = plan_of(*next(s for s in statements if "ORDER BY" in s[0] and "tasks.raw" in s[0]))
        assert page.startswith("SEARCH tasks USING INDEX ix_tasks_source_sort"), page
        count = plan_of(*next(s for s in statements if "GROUP BY" in s[0]))
        assert count.index("SCAN tasks_fts") < count.index(
            "SEARCH tasks USING INTEGER PRIMARY KEY"
        ), count
        assert "LIST SUBQUERY" not in count, count
        # A search alone, with more matches than its count's cap: counted among the newest
        # matches at hand, read from their list one by one.
        monkeypatch.setattr(SqliteBackend, "search_count_cap", 3)
        statements.clear()
        assert state_counts(query("q=model")).total == 4
        count = plan_of(*next(s for s in statements if "GROUP BY" in s[0]))
        assert count.index("VIRTUAL TABLE") < count.index(
            "SEARCH tasks USING INTEGER PRIMARY KEY"
        ), count
        assert "tasks_fts" not in count and "LIST SUBQUERY" not in count, count


def test_a_search_sees_the_sessions_own_writes(app):
    """The newest matches a search keeps for its transaction are dropped on any write."""
    seed_in_order(app, count=5)
    with app.app_context():
        assert list_tasks(query("q=zebra")).tasks == []
        first = db.session.scalars(sa.select(Task).order_by(Task.id)).first()
        assert first is not None
        db.session.execute(sa.update(Task).where(Task.id == first.id).values(note="zebra"))
        assert [t.id for t in list_tasks(query("q=zebra")).tasks] == [first.id]
        db.session.execute(sa.text("UPDATE tasks SET note = NULL"))
        assert list_tasks(query("q=zebra")).tasks == []
        added = add_task("ml-prod", "zebra-2")  # flushed by the next query
        assert [t.id for t in list_tasks(query("q=zebra")).tasks] == [added.id]
