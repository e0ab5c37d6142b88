"""``taskdeck db upgrade`` on a database in use: made by the last release (before migrations)
or by the first migration, filled with tasks, events, labels, notes, saved views, users,
imports and sources added in the UI, on SQLite and on PostgreSQL. Every row is still there
afterwards, and the pages show them."""

from __future__ import annotations

from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from werkzeug.security import generate_password_hash

from tests.db.conftest import MAKERS
from tests.db.conftest import reflect
from tests.helpers import soup
from webapp.db import migrate

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"
TEAM_KEY_ENV = "TEAM_MIXPEEK_KEY"
#: Taskdeck's tables in the first revision (the list's trigger-kept tables are derived).
TABLES = ["sources", "tasks", "task_events", "saved_views", "users", "import_jobs"]


def source_row(name: str, provider: str, origin: str, settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "provider": provider,
        "origin": origin,
        "settings": settings,
        "last_success_at": NOW,
        "consecutive_failures": 0,
        "requests_total": 40,
        "failures_total": 2,
        "circuit": "closed",
    }


def task_row(id_: int, source: str, provider: str, task_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": id_,
        "source": source,
        "provider": provider,
        "task_id": task_id,
        "state": "running",
        "upstream_status": "RUNNING",
        "terminal": False,
        "links": {},
        "details": {},
        "sort_at": NOW - timedelta(hours=id_),
        "tracked_at": NOW - timedelta(hours=id_),
        "created_at": NOW - timedelta(hours=id_),
        "gone_upstream": False,
        "unchanged_polls": 0,
        "failed_polls": 0,
        "version": 3,
        "changed_at": NOW,
        "labels": [],
        **fields,
    }


def rows_to_fill(ml_settings: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    team_settings = {
        "name": "team-mixpeek",
        "provider": "mixpeek",
        "base_url": "http://127.0.0.1:9/mixpeek",
        "api_key_env": TEAM_KEY_ENV,
    }
    return {
        "sources": [
            source_row("ml-prod", "opensearch-ml", "file", ml_settings),
            source_row("team-mixpeek", "mixpeek", "database", team_settings),
        ],
        "tasks": [
            task_row(
                1,
                "ml-prod",
                "opensearch-ml",
                "task-failed-1",
                name="Deploy model quokka-7b",
                state="failed",
                upstream_status="FAILED",
                terminal=True,
                task_type="DEPLOY_MODEL",
                error="CUDA out of memory",
                finished_at=NOW - timedelta(minutes=30),
                raw={"state": "FAILED", "model_id": "quokka-7b"},
                related_key="model-quokka",
                labels=["on-call", "gpu"],
                note="Retry after the driver update",
            ),
            task_row(2, "ml-prod", "opensearch-ml", "task-running-2", next_poll_at=NOW),
            task_row(
                3,
                "team-mixpeek",
                "mixpeek",
                "tsk_ui_3",
                name="Index bucket photos",
                state="succeeded",
                upstream_status="COMPLETED",
                terminal=True,
                labels=["photos"],
            ),
        ],
        "task_events": [
            {
                "id": 1,
                "task_pk": 1,
                "at": NOW - timedelta(hours=1),
                "state": "running",
                "upstream_status": "RUNNING",
            },
            {
                "id": 2,
                "task_pk": 1,
                "at": NOW - timedelta(minutes=30),
                "state": "failed",
                "upstream_status": "FAILED",
            },
            {
                "id": 3,
                "task_pk": 3,
                "at": NOW,
                "state": "succeeded",
                "upstream_status": "COMPLETED",
            },
        ],  # fmt: skip
        "saved_views": [
            {
                "id": 1,
                "name": "Failures this week",
                "query_string": "state=failed",
                "is_default": False,
                "created_at": NOW,
            },
        ],  # fmt: skip
        "users": [
            {
                "id": 1,
                "username": "ana",
                "password_hash": generate_password_hash(PASSWORD),
                "created_at": NOW,
            },
        ],  # fmt: skip
        "import_jobs": [
            {
                "id": 1,
                "source": "ml-prod",
                "query": "state:FAILED",
                "limit": 100,
                "status": "done",
                "total": 2,
                "processed": 2,
                "tracked": 1,
                "skipped": 1,
                "failed": 0,
                "started_at": NOW,
                "updated_at": NOW,
                "finished_at": NOW,
            },
        ],  # fmt: skip
    }


def fill(engine: sa.Engine, rows: dict[str, list[dict[str, Any]]]) -> None:
    """Insert through the tables as the database has them (reflected), not the live models."""
    tables = reflect(engine, only=list(rows))
    with engine.begin() as connection:
        for name, values in rows.items():
            for value in values:  # one by one: the rows set different columns
                connection.execute(tables.tables[name].insert().values(value))
        if engine.dialect.name == "postgresql":
            for name in ("tasks", "task_events", "saved_views", "users", "import_jobs"):
                connection.exec_driver_sql(
                    f"SELECT setval('{name}_id_seq', (SELECT max(id) FROM {name}))"
                )


def dump(engine: sa.Engine, tables: sa.MetaData) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of ``tables`` (as they were before the upgrade: the columns they had)."""
    with engine.connect() as connection:
        return {
            name: [
                tuple(row)
                for row in connection.execute(sa.select(table).order_by(*table.primary_key.columns))
            ]
            for name, table in tables.tables.items()
        }


def listed(client, query: str = "") -> list[str]:  # type: ignore[no-untyped-def]
    page = soup(client.get(f"/?view=all&{query}", auth=("ana", PASSWORD)))
    return sorted(a.get_text() for a in page.select("#task-rows a.task-link"))


@pytest.mark.parametrize("made_by", list(MAKERS))
def test_upgrade_keeps_every_row_and_the_pages_show_them(
    made_by, engine, database_url, bare_app_factory, ml_source, dispose_engines, monkeypatch
):
    monkeypatch.setenv(TEAM_KEY_ENV, "sk_team")
    MAKERS[made_by](engine)
    fill(engine, rows_to_fill(ml_source.public_settings()))
    before_tables = reflect(engine, only=TABLES)
    before = dump(engine, before_tables)

    app = dispose_engines(bare_app_factory([ml_source], DATABASE_URL=database_url, AUTH="local"))
    result = app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    was = "unversioned (made before migrations)" if made_by == "before migrations" else "0001"
    head = migrate.head()
    if was == head:
        assert result.output == f"database schema at {head} (head): nothing to upgrade\n"
    else:
        assert result.output == f"database schema upgraded from {was} to {head}\n"
    assert dump(engine, before_tables) == before

    client = app.test_client()
    assert listed(client) == ["Deploy model quokka-7b", "Index bucket photos", "task-running-2"]
    assert listed(client, "q=quokka") == ["Deploy model quokka-7b"]
    assert listed(client, "label=photos") == ["Index bucket photos"]
    front = soup(client.get("/", auth=("ana", PASSWORD)))
    views = [a.get_text() for a in front.select("nav[aria-label='Saved views'] a")]
    assert views == ["All tasks", "Failures this week"]

    detail = soup(client.get("/tasks/ml-prod/task-failed-1", auth=("ana", PASSWORD)))
    assert detail.select_one("p.note").get_text() == "Retry after the driver update"
    assert [li.get_text() for li in detail.select("ul.labels li")] == ["on-call", "gpu"]
    history = [td.get_text() for td in detail.select("table.history tbody tr td code")]
    assert history == ["RUNNING", "FAILED"]
    from_the_ui = client.get("/tasks/team-mixpeek/tsk_ui_3", auth=("ana", PASSWORD))
    assert from_the_ui.status_code == 200
    assert "Index bucket photos" in soup(from_the_ui).select_one("h1").get_text()
    sources = soup(client.get("/sources", auth=("ana", PASSWORD)))
    assert "added in the UI" in sources.select_one("#source-team-mixpeek").get_text()
    # Signing in is still required: the user came through, as an admin (users made before
    # roles could do everything).
    assert client.get("/").status_code == 302
    assert client.get("/audit", auth=("ana", PASSWORD)).status_code == 200

    again = app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert again.output == f"database schema at {head} (head): nothing to upgrade\n"
