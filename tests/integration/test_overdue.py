"""Overdue tasks end to end: the simulators on loopback run on the test's manual clock, and so
does the refresher (``sim_time``), so "15 minutes later" is one ``clock.advance``."""

from __future__ import annotations

import re
from collections.abc import Callable
from collections.abc import Iterator
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from tests.helpers import soup
from tests.integration.conftest import Upstreams
from tests.integration.conftest import sim_time
from tests.integration.conftest import track_at
from webapp.config import build_source
from webapp.db.models import Delivery
from webapp.db.models import NotificationRule
from webapp.db.models import Task
from webapp.db.models import db
from webapp.overdue import marking
from webapp.overdue.history import history
from webapp.refresher.engine import Refresher

ML = "opensearch-ml"
DEPLOY = {"task_type": "DEPLOY_MODEL", "function_name": "TEXT_EMBEDDING", "model_id": "m-1"}


@pytest.fixture
def changes(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """Every call of the alert hook, in order."""
    calls: list[list[int]] = []
    monkeypatch.setattr(marking, "overdue_changed", lambda pks: calls.append(sorted(pks)))
    return calls


@pytest.fixture
def make(app_factory: Callable[..., Flask], upstreams: Upstreams) -> Iterator[Callable[..., Any]]:
    """``make(provider, name, **fields)``: an app with that one source, and a refresher on the
    simulators' clock."""
    refreshers: list[Refresher] = []

    def build(provider: str, name: str, **fields: Any) -> tuple[Flask, Refresher]:
        app = app_factory([build_source(*upstreams.source_entry(provider, name, **fields))])
        refresher = Refresher(app, clock=sim_time(upstreams.clock))
        refreshers.append(refresher)
        return app, refresher

    yield build
    for refresher in refreshers:
        refresher.close()


def task_row(app: Flask, source: str, task_id: str) -> Task:
    with app.app_context():
        task = db.session.scalar(
            sa.select(Task).where(Task.source == source, Task.task_id == task_id)
        )
        assert task is not None
        db.session.expunge(task)
        return task


def test_configured_bound_marks_shows_counts_and_clears(make, upstreams, changes):
    app, refresher = make(ML, "ml-prod", overdue_after=900)
    ml = upstreams.state(ML)
    slow = ml.add("slow-1", [("CREATED", 2), ("RUNNING", 1500), ("COMPLETED", None)], fields=DEPLOY)
    track_at(app, upstreams.clock, "ml-prod", slow.task_id)
    upstreams.clock.advance(5)
    refresher.run_once()
    assert task_row(app, "ml-prod", "slow-1").state == "running"
    assert not task_row(app, "ml-prod", "slow-1").overdue

    upstreams.clock.advance(600)
    refresher.run_once()
    assert refresher.overdue.run() == []
    # Backed off (or its source paused): no fetch comes, and the periodic pass still sees it.
    with app.app_context():
        far = sim_time(upstreams.clock)() + timedelta(hours=1)
        db.session.execute(sa.update(Task).values(next_poll_at=far))
        db.session.commit()
    upstreams.clock.advance(400)  # 1005 s since it was created upstream
    ml.add("quick-1", [("CREATED", 2), ("RUNNING", 5000), ("COMPLETED", None)], fields=DEPLOY)
    track_at(app, upstreams.clock, "ml-prod", "quick-1")
    refresher.run_once()  # fetches quick-1 only
    before = task_row(app, "ml-prod", "slow-1")
    assert refresher.overdue.run() == [before.id]
    task = task_row(app, "ml-prod", "slow-1")
    assert task.overdue and task.overdue_reason == "over the 15 min set for ml-prod"
    assert task.version == before.version + 1 and task.changed_at > before.changed_at
    assert changes == [[task.id]]
    assert refresher.overdue.run() == [] and changes == [[task.id]]  # no second alert
    assert not task_row(app, "ml-prod", "quick-1").overdue

    client = app.test_client()
    page = soup(client.get("/tasks/ml-prod/slow-1"))
    assert page.select_one("#task-status .badge.overdue") is not None
    assert page.select_one(".overdue-reason").get_text() == "over the 15 min set for ml-prod"
    listing = soup(client.get("/?view=all"))
    assert listing.select_one(f"#task-row-{task.id} .badge.overdue")["title"] == (
        "over the 15 min set for ml-prod"
    )
    assert listing.select_one(f"#task-row-{task.id + 1} .badge.overdue") is None
    assert listing.select_one("a.count-overdue").get_text(strip=True) == "1 overdue"
    one = client.get("/api/v1/tasks/ml-prod/slow-1").get_json()
    assert one["overdue"] is True and one["overdue_reason"] == "over the 15 min set for ml-prod"
    assert [t["task_id"] for t in client.get("/api/v1/tasks?q=is:overdue").get_json()["tasks"]] == [
        "slow-1"
    ]
    assert [
        t["task_id"] for t in client.get("/api/v1/tasks?overdue=false").get_json()["tasks"]
    ] == ["quick-1"]
    # The page's poller sees the new version: its status fragment comes back with the badge.
    status = client.get(f"/tasks/ml-prod/slow-1/status?v={before.version}")
    assert status.status_code == 200 and "overdue" in status.get_data(as_text=True)

    # It finishes: the write that records it clears the flag, and says so once.
    upstreams.clock.advance(600)
    with app.app_context():
        db.session.execute(sa.update(Task).values(next_poll_at=sim_time(upstreams.clock)()))
        db.session.commit()
    refresher.run_once()
    done = task_row(app, "ml-prod", "slow-1")
    assert done.state == "succeeded" and not done.overdue and done.overdue_reason is None
    assert changes == [[task.id], [task.id]]
    assert soup(client.get("/?view=all")).select_one("a.count-overdue") is None


def test_per_type_table_and_any_type(make, upstreams):
    app, refresher = make(ML, "ml-prod", overdue_after={"DEPLOY_MODEL": 60, "*": 7200})
    ml = upstreams.state(ML)
    ml.add("deploy", [("RUNNING", 9000), ("COMPLETED", None)], fields=DEPLOY)
    ml.add(
        "train",
        [("RUNNING", 9000), ("COMPLETED", None)],
        fields={**DEPLOY, "task_type": "TRAINING"},
    )
    track_at(app, upstreams.clock, "ml-prod", "deploy", "train")
    upstreams.clock.advance(120)
    refresher.run_once()
    assert task_row(app, "ml-prod", "deploy").overdue_reason == (
        "over the 1 min set for DEPLOY_MODEL on ml-prod"
    )
    assert not task_row(app, "ml-prod", "train").overdue


#: When the history tasks finished (any time before the tests' tasks).
HISTORY_END = datetime(2025, 12, 1, tzinfo=UTC)


def add_history(app: Flask, source: str, provider: str, task_type: str, seconds: list[float]):  # type: ignore[no-untyped-def]
    """Finished tasks of ``task_type`` that took ``seconds`` each, straight into the cache."""
    with app.app_context():
        end = HISTORY_END
        start = db.session.scalar(sa.select(sa.func.count()).select_from(Task)) or 0
        for n, took in enumerate(seconds, start):
            db.session.add(
                Task(
                    source=source,
                    provider=provider,
                    task_id=f"old-{task_type}-{n}",
                    state="succeeded",
                    upstream_status="COMPLETED",
                    terminal=True,
                    task_type=task_type,
                    created_at=end - timedelta(seconds=took),
                    sort_at=end - timedelta(seconds=took),
                    first_seen_at=end - timedelta(seconds=took),
                    finished_at=end,
                    changed_at=end,
                )
            )
        db.session.commit()


def test_learned_bound_from_history(make, upstreams, changes):
    app, refresher = make(ML, "ml-prod")
    ml = upstreams.state(ML)
    ml.add("deploy-now", [("RUNNING", 9000), ("COMPLETED", None)], fields=DEPLOY)
    track_at(app, upstreams.clock, "ml-prod", "deploy-now")
    # 19 earlier deploys took 100 s each: not enough history yet.
    add_history(app, "ml-prod", ML, "DEPLOY_MODEL", [100.0] * 19)
    upstreams.clock.advance(315)
    refresher.run_once()
    with app.app_context():
        history(app).refresh_if_due(sim_time(upstreams.clock)(), force=True)
        assert history(app).get("ml-prod", "DEPLOY_MODEL") is None
    assert refresher.overdue.run() == []

    # The 20th: now it is learned (p95 in [100, 110) s, times 1.5: 165 s), and 315 s is three
    # times the usual (about 105 s).
    add_history(app, "ml-prod", ML, "DEPLOY_MODEL", [100.0] * 20)
    with app.app_context():
        history(app).refresh_if_due(sim_time(upstreams.clock)(), force=True)
        learned = history(app).get("ml-prod", "DEPLOY_MODEL")
    assert learned is not None and learned.count == 39 and learned.bound == pytest.approx(165)
    assert len(refresher.overdue.run()) == 1
    task = task_row(app, "ml-prod", "deploy-now")
    assert task.overdue_reason == "running 3× longer than usual for DEPLOY_MODEL"
    # Other types and sources learn nothing from it.
    with app.app_context():
        assert history(app).get("ml-prod", "TRAINING") is None
        assert history(app).get("other", "DEPLOY_MODEL") is None


def test_learned_percentile_ignores_tasks_first_seen_finished(make, upstreams):
    app, _ = make("mixpeek", "mx")
    with app.app_context():
        end = HISTORY_END
        for n in range(30):
            # Tracked when already finished, no upstream times: no duration to learn from.
            db.session.add(
                Task(
                    source="mx",
                    provider="mixpeek",
                    task_id=f"seen-done-{n}",
                    state="succeeded",
                    terminal=True,
                    task_type="thumbnail",
                    sort_at=end,
                    tracked_at=end,
                    first_seen_at=end,
                    finished_at=end,
                    changed_at=end,
                )
            )
        db.session.commit()
        history(app).refresh_if_due(sim_time(upstreams.clock)(), force=True)
        assert history(app).get("mx", "thumbnail") is None


def test_conductor_scheduled_and_never_polled(make, upstreams, changes):
    app, refresher = make("conductor", "cd")
    cd = upstreams.state("conductor")
    cd.add(
        "waiting-1", [("SCHEDULED", 100_000), ("COMPLETED", None)], fields={"taskType": "SIMPLE"}
    )
    track_at(app, upstreams.clock, "cd", "waiting-1")
    upstreams.clock.advance(200)
    refresher.run_once()
    task = task_row(app, "cd", "waiting-1")
    assert task.raw["pollCount"] == 0 and not task.overdue  # 200 s: not yet
    upstreams.clock.advance(1000)
    assert refresher.overdue.run() == [task.id]
    assert task_row(app, "cd", "waiting-1").overdue_reason == "scheduled 20 min, no worker polling"


def test_conductor_signal_reads_search_summaries_too(make, upstreams):
    app, refresher = make("conductor", "cd")
    cd = upstreams.state("conductor")
    for name in ("w-1", "w-2"):
        cd.add(name, [("SCHEDULED", 100_000), ("COMPLETED", None)], fields={"taskType": "SIMPLE"})
    cd.add("busy", [("IN_PROGRESS", 100_000), ("COMPLETED", None)], fields={"taskType": "SIMPLE"})
    track_at(app, upstreams.clock, "cd", "w-1", "w-2", "busy")
    upstreams.clock.advance(1200)
    refresher.run_once()  # one taskId IN (...) search: summaries, without pollCount
    waiting = task_row(app, "cd", "w-1")
    assert "pollCount" not in waiting.raw and waiting.raw["startTime"].startswith("1970")
    assert waiting.overdue and re.fullmatch(
        r"scheduled 20 min, no worker polling", waiting.overdue_reason
    )
    # Running, with no bound set and no history: nothing says it is late.
    assert not task_row(app, "cd", "busy").overdue


def test_ml_created_without_update(make, upstreams):
    app, refresher = make(ML, "ml-prod")
    upstreams.state(ML).add("stuck", [("CREATED", 100_000), ("COMPLETED", None)], fields=DEPLOY)
    track_at(app, upstreams.clock, "ml-prod", "stuck")
    upstreams.clock.advance(300)
    refresher.run_once()
    assert not task_row(app, "ml-prod", "stuck").overdue
    upstreams.clock.advance(900)
    refresher.overdue.run()
    assert task_row(app, "ml-prod", "stuck").overdue_reason == "created, no update for 20 min"


def test_an_is_overdue_rule_fires_once_when_a_task_becomes_overdue(make, upstreams):
    app, refresher = make(ML, "ml-prod", overdue_after=900)
    with app.app_context():
        db.session.add(
            NotificationRule(
                name="stuck", when="is:overdue", target_kind="webhook", target="http://127.0.0.1:9/"
            )
        )
        db.session.commit()
    upstreams.state(ML).add(
        "slow-1", [("CREATED", 2), ("RUNNING", 5000), ("COMPLETED", None)], fields=DEPLOY
    )
    track_at(app, upstreams.clock, "ml-prod", "slow-1")
    upstreams.clock.advance(5)
    refresher.run_once()

    def deliveries() -> list[tuple[str | None, str]]:
        with app.app_context():
            rows = db.session.scalars(sa.select(Delivery).order_by(Delivery.id))
            return [(row.payload.get("task", {}).get("task_id"), row.event) for row in rows]

    assert deliveries() == []
    upstreams.clock.advance(1000)
    refresher.overdue.run()
    assert task_row(app, "ml-prod", "slow-1").overdue
    fired = deliveries()
    assert len(fired) == 1 and fired[0][0] == "slow-1"
    refresher.run_once()
    refresher.overdue.run()
    assert deliveries() == fired  # edge-triggered: once on the way in
