"""The writer's flush: one UPDATE statement for a batch of tasks, whatever their payloads did."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from webapp.db import store
from webapp.db.models import Task
from webapp.db.models import db
from webapp.refresher.writer import same_update_shape


def test_tasks_whose_payload_moved_or_not_are_written_by_one_statement(app_factory, make_source):
    app = app_factory([make_source("mixpeek", name="mx")])
    with app.app_context():
        for task_id in ("a", "b", "c", "d"):
            store.track("mx", task_id)
        db.session.commit()
        tasks = list(db.session.scalars(sa.select(Task).order_by(Task.id)))
        for task in tasks:
            task.raw = {"progress": 1}
            task.details = {}
        db.session.commit()
        # Loaded before the loop, as the writer loads its tasks: a lazy load would autoflush.
        tasks = list(db.session.scalars(sa.select(Task).order_by(Task.id)))

        updates: list[tuple[str, Any]] = []

        def seen(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
            if statement.startswith("UPDATE tasks"):
                updates.append((statement, parameters))

        sa.event.listen(db.engine, "before_cursor_execute", seen)
        try:
            for index, task in enumerate(tasks):
                task.unchanged_polls += 1
                # Every other payload moved: alone, each task's UPDATE would differ from its
                # neighbour's and the flush would send four statements.
                task.raw = {"progress": 2 if index % 2 else 1}
                same_update_shape(task)
            db.session.commit()
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", seen)

        assert len(updates) == 1
        assert [task.raw["progress"] for task in tasks] == [1, 2, 1, 2]
        db.session.expire_all()
        stored = db.session.scalars(sa.select(Task.raw).order_by(Task.id)).all()
        assert [raw["progress"] for raw in stored] == [1, 2, 1, 2]
