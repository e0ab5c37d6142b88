"""Real ``taskdeck worker`` processes sharing one database (a SQLite file, PostgreSQL): leases
keep them from fetching a task twice in an interval, and a worker killed with SIGKILL at any
moment loses no task and no event: its leases run out and the next worker carries on."""

from __future__ import annotations

import random
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

from tests.conftest import track
from tests.conftest import wait_for
from tests.integration.conftest import worker_env
from tests.integration.conftest import write_sources
from webapp.config import build_source
from webapp.db.models import Task
from webapp.db.models import db
from webapp.db.models import utcnow
from webapp.simulators import SIMULATORS
from webapp.simulators.core import Fault


def setup(upstreams, tmp_path: Path, database_url: str, interval: float, **settings: str):  # type: ignore[no-untyped-def]
    """Sources for Mixpeek and OpenSearch (both batched), a sources file and the
    environment for worker processes."""
    entries = [
        upstreams.source_entry("mixpeek", "mx", poll_interval=interval, max_concurrency=4),
        upstreams.source_entry("opensearch-ml", "ml", poll_interval=interval),
    ]
    config = write_sources(tmp_path / "sources.toml", [entry for entry, _ in entries])
    env = worker_env(database_url, config, tmp_path, settings)
    for _, environ in entries:
        env.update(environ)
    sources = [build_source(entry, environ) for entry, environ in entries]
    return sources, env


def add_tasks(app, upstreams, rng, count, **phases):  # type: ignore[no-untyped-def]
    """``count`` progressing tasks per source, tracked; returns (source, id) -> SimTask."""
    tasks = {}
    for source, provider in (("mx", "mixpeek"), ("ml", "opensearch-ml")):
        module = SIMULATORS[provider]
        for _ in range(count):
            task = module.add_demo_task(
                upstreams.state(provider),
                rng,
                final=rng.choice(["succeeded", "failed", "cancelled"]),
                **{key: rng.uniform(*span) for key, span in phases.items()},
            )
            if task.fields.get("task_type") == "BATCH_PREDICTION":
                # Re-read with a GET after the search (PROVIDERS.md trap 22): one fetch would
                # look like two requests for the task.
                task.fields["task_type"] = "DEPLOY_MODEL"
            tasks[(source, task.task_id)] = task
            track(app, source, task.task_id)
    return tasks


def test_two_workers_never_fetch_a_task_twice_in_an_interval(
    upstreams, tmp_path, database_url, app_factory, dispose_engines, start_worker
):
    interval = 0.5
    sources, env = setup(upstreams, tmp_path, database_url, interval)
    app = dispose_engines(app_factory(sources, DATABASE_URL=database_url))
    # The clock stands still: every task stays active and is polled again and again.
    add_tasks(app, upstreams, random.Random(8), 40, queued_seconds=(100, 200))
    for provider in ("mixpeek", "opensearch-ml"):
        # Answers take a moment, so the two workers' claims and fetches overlap.
        upstreams.state(provider).set_fault(Fault.SLOW, seconds=0.02)
    workers = [start_worker(env), start_worker(env)]

    seen: set[str] = set()

    def both_claiming() -> bool:
        with app.app_context():
            owners = db.session.scalars(
                sa.select(Task.lease_owner).where(Task.lease_owner.is_not(None)).distinct()
            ).all()
        for worker in workers:
            if any(owner.startswith(worker.owner_prefix) for owner in owners):
                seen.add(worker.owner_prefix)
        return len(seen) == 2

    wait_for(both_claiming, timeout=30, what="both workers holding leases")

    def polled_often() -> bool:
        times = upstreams.recorder.fetch_times()
        return len(times) == 80 and min(len(t) for t in times.values()) >= 4

    wait_for(polled_often, timeout=40, what="every task fetched four times")
    for worker in workers:
        worker.stop()
        assert worker.process.returncode == 0, worker.output()

    for (provider, task_id), times in upstreams.recorder.fetch_times().items():
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        # A fetch schedules the next one an interval after its answer arrived, so even a
        # request that arrives early is never within one interval of the previous one.
        assert min(gaps) >= interval - 0.01, (provider, task_id, gaps)


def test_a_worker_killed_at_any_moment_loses_no_task_and_no_event(
    upstreams, tmp_path, database_url, app_factory, dispose_engines, start_worker, clock
):
    interval, lease = 0.2, 1.0
    sources, env = setup(
        upstreams, tmp_path, database_url, interval, TASKDECK_LEASE_SECONDS=str(lease)
    )
    app = dispose_engines(app_factory(sources, DATABASE_URL=database_url))
    rng = random.Random(99)
    tasks = add_tasks(app, upstreams, rng, 25, queued_seconds=(6, 24), running_seconds=(6, 24))
    for provider in ("mixpeek", "opensearch-ml"):
        upstreams.state(provider).set_fault(Fault.SLOW, seconds=0.03)
    worker = start_worker(env)

    def cache() -> dict[tuple[str, str], str | None]:
        with app.app_context():
            rows = db.session.execute(sa.select(Task.source, Task.task_id, Task.upstream_status))
            return {(source, task_id): status for source, task_id, status in rows}

    def caught_up() -> bool:
        now = clock.now()
        return cache() == {key: task.status(now) for key, task in tasks.items()}

    def leased_by(prefix: str) -> list[int]:
        with app.app_context():
            return db.session.scalars(
                sa.select(Task.id).where(Task.lease_owner.like(prefix + "%"))
            ).all()

    def taken_over(held: list[int], killed_at: datetime) -> bool:
        with app.app_context():
            rows = db.session.scalars(sa.select(Task).where(Task.id.in_(held))).all()
            return all(row.last_fetched_at and row.last_fetched_at > killed_at for row in rows)

    kills = 0
    for step in range(9):
        clock.advance(3)
        if step % 3 == 1:
            # Kill it while it holds leases: mid-fetch or mid-write.
            prefix = worker.owner_prefix
            held = wait_for(lambda: leased_by(prefix), timeout=20, what="leases")  # noqa: B023
            killed_at = utcnow()
            worker.kill()
            kills += 1
            worker = start_worker(env)
            wait_for(
                lambda: taken_over(held, killed_at),  # noqa: B023
                timeout=lease + 20,
                what="the dead worker's tasks taken over once its leases ran out",
            )
        wait_for(caught_up, timeout=30, what=f"the cache to catch up at step {step}")
    assert kills == 3

    final = clock.advance(30)
    wait_for(caught_up, timeout=30, what="every task in its final state")
    worker.stop()
    with app.app_context():
        rows = db.session.scalars(sa.select(Task)).all()
        assert len(rows) == len(tasks) == 50
        for row in rows:
            history = [status for status, _ in tasks[(row.source, row.task_id)].history(final)]
            assert [event.upstream_status for event in row.events] == history, row.task_id
            assert row.lease_owner is None  # a stopped worker gives back what it holds
