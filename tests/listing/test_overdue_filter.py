"""``is:overdue``, ``-is:overdue`` and ``overdue=`` on the list and the API, and the overdue
count of the summary bar, on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC
from datetime import datetime
from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.helpers import soup
from tests.listing.test_queries import add_task
from tests.listing.test_queries import query
from webapp.db.models import Task
from webapp.db.models import db
from webapp.domain import TaskState
from webapp.listing import search
from webapp.listing.counts import state_counts
from webapp.listing.pages import ordered_read
from webapp.listing.query import QueryError

T0 = datetime(2024, 5, 1, tzinfo=UTC)


@pytest.fixture
def app(app_factory, make_source, database_url, dispose_engines):
    sources = [make_source("opensearch-ml", name="ml-prod"), make_source("mixpeek", name="mx")]
    app = dispose_engines(app_factory(sources, DATABASE_URL=database_url))
    with app.app_context():
        rows = [
            ("ml-prod", "late-1", TaskState.RUNNING, "over the 15 min set for ml-prod"),
            ("mx", "late-2", TaskState.QUEUED, "running 3× longer than usual for thumbnail"),
            ("ml-prod", "fine-1", TaskState.RUNNING, None),
            ("mx", "fine-2", TaskState.RUNNING, None),
            ("ml-prod", "done-1", TaskState.SUCCEEDED, None),
            ("mx", "done-2", TaskState.FAILED, None),
        ]
        for n, (source, task_id, state, reason) in enumerate(rows):
            task = add_task(source, task_id, state=state, created=T0 + timedelta(minutes=n))
            task.overdue, task.overdue_reason = reason is not None, reason
        db.session.commit()
    return app


def ids(client, qs: str) -> list[str]:
    answer = client.get(f"/api/v1/tasks?{qs}")
    assert answer.status_code == 200, answer.get_json()
    return [task["task_id"] for task in answer.get_json()["tasks"]]


def test_the_search_box_reads_is_flags():
    assert search.parse("is:overdue state:running").flags == {"overdue": True}
    assert search.parse("-IS:Overdue word").flags == {"overdue": False}
    assert search.parse("-is:overdue word").phrases == ("word",)


def test_filters_on_each_database(app):
    client = app.test_client()
    assert ids(client, "q=is:overdue") == ["late-2", "late-1"]
    assert ids(client, "q=-is:overdue") == ["done-2", "done-1", "fine-2", "fine-1"]
    assert ids(client, "overdue=true") == ["late-2", "late-1"]
    assert ids(client, "overdue=false&source=mx") == ["done-2", "fine-2"]
    assert ids(client, "q=is:overdue source:ml-prod") == ["late-1"]
    assert ids(client, "q=is:overdue&sort=state") == ["late-2", "late-1"]
    assert ids(client, "q=is:overdue&overdue=false") == []
    assert ids(client, "q=is:overdue thumbnail") == []  # phrases still apply
    assert client.get("/api/v1/tasks?q=is:late").status_code == 400
    assert "is:overdue" in client.get("/api/v1/tasks?q=is:late").get_json()["error"]
    assert client.get("/api/v1/tasks?overdue=maybe").status_code == 400
    late = client.get("/api/v1/tasks?q=is:overdue").get_json()["tasks"]
    assert [t["overdue"] for t in late] == [True, True]
    assert late[0]["overdue_reason"] == "running 3× longer than usual for thumbnail"


def test_summary_counts_the_overdue(app):
    with app.app_context():
        assert state_counts(query()).overdue == 2
        assert state_counts(query("source=mx")).overdue == 1
        assert state_counts(query("state=finished")).overdue == 0
        assert state_counts(query("q=-is:overdue")).overdue == 0
        counts = state_counts(query("q=is:overdue"))
        assert (
            counts.total == 2
            and counts.overdue == 2
            and counts.by_state
            == {
                "running": 1,
                "queued": 1,
            }
        )
    page = soup(app.test_client().get("/?view=all"))
    link = page.select_one("#summary a.count-overdue")
    assert link.get_text(strip=True) == "2 overdue"
    assert "overdue=true" in link["href"]
    filtered = soup(app.test_client().get(link["href"]))
    assert len(filtered.select("table.tasks tbody tr")) == 2
    assert len(filtered.select("table.tasks tbody .badge.overdue")) == 2


def test_a_flag_that_does_not_exist_says_which():
    with pytest.raises(QueryError, match="is: unknown flag 'late'"):
        query("q=is:late")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_reads_overdue_tasks_through_their_index(app):
    """Through the ids the overdue index holds: on a big cache SQLite's statistics see one
    value of ``overdue`` and would take ``overdue = 1`` for every row (bench/overdue.py)."""
    with app.app_context():
        db.session.execute(sa.text("ANALYZE"))
        db.session.commit()
        for text in ("q=is:overdue", "overdue=true&source=mx", "q=is:overdue&sort=state"):
            view = query(text)
            read = ordered_read(view, [Task], sort=view.sort_name, descending=view.descending)
            assert "USING COVERING INDEX ix_tasks_overdue_sort" in explain(read), text
        counted = sa.select(sa.func.count()).where(*query("q=is:overdue").plan().counting())
        assert "ix_tasks_overdue_sort" in explain(counted)


def explain(statement) -> str:  # type: ignore[no-untyped-def]
    compiled = statement.compile(db.engine, compile_kwargs={"literal_binds": True})
    rows = db.session.execute(sa.text(f"EXPLAIN QUERY PLAN {compiled}"))
    return "\n".join(str(row[-1]) for row in rows)


def test_the_filter_form_keeps_the_overdue_filter(app):
    page = soup(app.test_client().get("/?overdue=true"))
    box = page.select_one("#filters input[name=overdue]")
    assert box.has_attr("checked") and box["value"] == "true"
    assert (
        not soup(app.test_client().get("/?view=all"))
        .select_one("#filters input[name=overdue]")
        .has_attr("checked")
    )
