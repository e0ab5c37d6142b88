"""Followed queries against the simulators over loopback, on a real database: new upstream
tasks are tracked run after run, each once, a run reads only what is new, the first run is
capped and says so, and upstream trouble is recorded on the follow and retried."""

from __future__ import annotations

import random
import threading
import time
from datetime import datetime
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from tests.conftest import track
from tests.conftest import wait_for
from tests.integration.conftest import worker_env
from tests.integration.conftest import write_sources
from webapp.config import build_source
from webapp.db import store
from webapp.db.models import Delivery
from webapp.db.models import Follow
from webapp.db.models import Task
from webapp.db.models import db
from webapp.db.models import utcnow
from webapp.follows.runner import FollowRunner
from webapp.refresher.engine import Refresher
from webapp.simulators import SIMULATORS
from webapp.simulators.core import Fault

#: The simulator call kind of each provider's search/list request.
LISTING = {"opensearch-ml": "search", "conductor": "search", "mixpeek": "list", "nclue": "list"}
PROVIDERS = list(LISTING)


class Clock:
    """The runner's clock, moved by the test (the follow's interval, its backoff)."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def follow_app(app_factory, upstreams, provider: str, config=None, **fields: Any) -> Flask:  # type: ignore[no-untyped-def]
    """An app with one source, ``followed``, following every task of ``provider``."""
    settings = {"follow": "*", "follow_interval": 30, **fields}
    entry, environ = upstreams.source_entry(provider, "followed", **settings)
    return app_factory([build_source(entry, environ)], **(config or {}))


def start_tasks(upstreams, provider: str, rng: random.Random, count: int) -> list[str]:  # type: ignore[no-untyped-def]
    """``count`` upstream tasks, one a minute on the simulators' clock (newest last)."""
    ids = []
    for _ in range(count):
        task = SIMULATORS[provider].add_demo_task(
            upstreams.state(provider), rng, queued_seconds=5000, running_seconds=5000
        )
        ids.append(task.task_id)
        upstreams.clock.advance(60)
    return ids


def tracked(app: Flask, via: str | None = "follow") -> list[str]:
    with app.app_context():
        query = sa.select(Task.task_id).where(Task.source == "followed")
        if via is not None:
            query = query.where(Task.tracked_via == via)
        return list(db.session.scalars(query))


def follow_row(app: Flask) -> Follow:
    with app.app_context():
        row = db.session.get(Follow, "followed")
        assert row is not None
        db.session.expunge(row)
        return row


def listings(upstreams, provider: str) -> int:  # type: ignore[no-untyped-def]
    return upstreams.state(provider).calls[LISTING[provider]]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_new_upstream_tasks_are_tracked_each_once_and_a_quiet_run_reads_one_page(
    provider, upstreams, app_factory
):
    rng = random.Random(3)
    app = follow_app(app_factory, upstreams, provider)
    clock = Clock()
    runner = FollowRunner(app, owner="one", clock=clock, page_size=10)
    before = start_tasks(upstreams, provider, rng, 25)

    first = runner.run("followed")
    assert first is not None and first.error is None
    assert sorted(tracked(app)) == sorted(before)  # three pages of ten
    assert first.pages >= 3

    # Not due again before its interval.
    assert runner.run("followed") is None
    clock.advance(30)
    during = start_tasks(upstreams, provider, rng, 23)  # more than two pages' worth
    second = runner.run("followed")
    assert second is not None and second.error is None and second.found == 23
    assert sorted(tracked(app)) == sorted(before + during)

    clock.advance(30)
    upstreams.clock.advance(600)
    calls = listings(upstreams, provider)
    quiet = runner.run("followed")
    assert quiet is not None and quiet.error is None and quiet.found == 0
    assert listings(upstreams, provider) - calls == 1, "a run with nothing new reads one page"
    assert len(tracked(app)) == 48  # no duplicates

    row = follow_row(app)
    assert (row.runs, row.total_found, row.last_found, row.last_error) == (3, 48, 0, None)
    assert row.last_note is None and row.lease_owner is None
    assert row.next_run_at == clock.now + timedelta(seconds=30)
    with app.app_context():
        stored = db.session.scalars(sa.select(Task).where(Task.source == "followed")).all()
        # What the search showed is stored: no fetch is needed to show the task.
        assert all(task.first_seen_at is not None and task.state != "unknown" for task in stored)


@pytest.mark.parametrize(("backfill", "requests"), [(12, 3), (10, 2)])
def test_the_first_run_tracks_the_newest_only_and_says_so(
    backfill, requests, upstreams, app_factory
):
    rng = random.Random(5)
    app = follow_app(app_factory, upstreams, "opensearch-ml", follow_backfill=backfill)
    ids = start_tasks(upstreams, "opensearch-ml", rng, 30)
    calls = listings(upstreams, "opensearch-ml")
    run = FollowRunner(app, owner="one", page_size=5).run("followed")
    assert run is not None and run.found == backfill
    # Pages of five up to the cap; the total says more are left without another request.
    assert listings(upstreams, "opensearch-ml") - calls == requests
    assert sorted(tracked(app)) == sorted(ids[-backfill:])
    assert follow_row(app).last_note == (
        f"tracked the newest {backfill} of 30 matches; import older ones from the list"
    )


def test_tasks_tracked_by_hand_are_left_as_they_are(upstreams, app_factory):
    rng = random.Random(6)
    app = follow_app(app_factory, upstreams, "mixpeek")
    ids = start_tasks(upstreams, "mixpeek", rng, 6)
    with app.app_context():
        store.track("followed", ids[2])
        db.session.commit()
    run = FollowRunner(app, owner="one").run("followed")
    assert run is not None and (run.found, run.skipped) == (5, 1)
    assert tracked(app, via="hand") == [ids[2]]


def test_two_processes_never_run_one_follow_at_once(
    upstreams, app_factory, database_url, dispose_engines
):
    """Two runners (two refresher processes' worth) against one database: one takes the
    follow, the other finds it held, and no task is tracked twice."""
    rng = random.Random(7)
    app = dispose_engines(
        follow_app(app_factory, upstreams, "conductor", {"DATABASE_URL": database_url})
    )
    start_tasks(upstreams, "conductor", rng, 40)
    upstreams.state("conductor").set_fault(Fault.SLOW, seconds=0.05)
    runners = [FollowRunner(app, owner=name, page_size=10) for name in ("one", "two")]

    results: list[Any] = []
    threads = [
        threading.Thread(target=lambda r=r: results.append(r.run("followed"))) for r in runners
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    ran = [result for result in results if result is not None]
    assert len(ran) == 1 and ran[0].found == 40
    assert len(tracked(app)) == 40
    assert follow_row(app).runs == 1


@pytest.mark.parametrize(
    ("fault", "words"),
    [(Fault.SERVER_ERROR, "500"), (Fault.MALFORMED, "not"), (Fault.UNAUTHORIZED, "401")],
)
def test_upstream_errors_are_recorded_and_retried_after_a_backoff(
    fault, words, upstreams, app_factory
):
    rng = random.Random(8)
    app = follow_app(app_factory, upstreams, "opensearch-ml")
    clock = Clock()
    runner = FollowRunner(app, owner="one", clock=clock, page_size=5)
    start_tasks(upstreams, "opensearch-ml", rng, 12)
    # The second page fails: what the first page tracked stays tracked.
    state = upstreams.state("opensearch-ml")
    assert runner.run("followed") is not None
    clock.advance(30)
    start_tasks(upstreams, "opensearch-ml", rng, 12)
    calls = state.calls["search"]
    state.set_fault(fault, times=2)
    failed = runner.run("followed")
    assert failed is not None and failed.error and failed.found == 0
    row = follow_row(app)
    assert row.consecutive_failures == 1 and row.last_error
    assert words in row.last_error or words in row.last_error.lower()
    assert row.next_run_at == clock.now + timedelta(seconds=30)
    clock.advance(30)
    again = runner.run("followed")
    assert again is not None and again.error and follow_row(app).consecutive_failures == 2
    assert follow_row(app).next_run_at == clock.now + timedelta(seconds=60)  # backed off
    assert state.calls["search"] - calls == 2
    clock.advance(60)
    healed = runner.run("followed")
    assert healed is not None and healed.error is None and healed.found == 12
    row = follow_row(app)
    assert (row.consecutive_failures, row.last_error, row.total_found) == (0, None, 24)


def test_a_timeout_is_recorded_and_the_loop_carries_on(upstreams, app_factory):
    rng = random.Random(9)
    app = follow_app(app_factory, upstreams, "mixpeek", timeout=0.3)
    start_tasks(upstreams, "mixpeek", rng, 3)
    upstreams.state("mixpeek").set_fault(Fault.SLOW, seconds=1.0, times=1)
    run = FollowRunner(app, owner="one").run("followed")
    assert run is not None and "did not answer in time" in (run.error or "")
    assert tracked(app) == []


def test_a_paused_follow_does_not_run(upstreams, app_factory):
    app = follow_app(app_factory, upstreams, "nclue")
    with app.app_context():
        db.session.execute(sa.update(Follow).values(paused=True))
        db.session.commit()
    runner = FollowRunner(app, owner="one")
    assert runner.due() == [] and runner.run("followed") is None


def test_a_follow_keeps_to_the_sources_rate_budget_beside_the_refresher(upstreams, app_factory):
    """The follow's searches and the refresher's fetches share the source's budget: no two
    requests reach the simulator closer together than ``1 / rate_limit``."""
    rng = random.Random(10)
    app = follow_app(app_factory, upstreams, "opensearch-ml", rate_limit=8)
    ids = start_tasks(upstreams, "opensearch-ml", rng, 30)
    for task_id in ids[:6]:
        track(app, "followed", task_id)
    refresher = Refresher(app, owner="fetcher")
    follow = FollowRunner(app, owner="follower", page_size=4)
    threads = [
        threading.Thread(target=lambda: follow.run("followed")),
        threading.Thread(target=refresher.run_once),
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        refresher.close()
    times = sorted(hit.at for hit in upstreams.recorder.hits if hit.provider == "opensearch-ml")
    assert len(times) >= 8
    # Each request leaves at its slot or later (a busy machine delays a thread, never hastens
    # one): any three arrivals span at least one interval even when the first was held up by
    # almost a whole one; without the budget they would come milliseconds apart.
    spans = [later - earlier for earlier, later in zip(times, times[2:], strict=False)]
    assert min(spans) >= 1 / 8, spans
    assert (len(times) - 1) / (times[-1] - times[0]) <= 8.5
    assert len(tracked(app)) == 24


def test_two_refreshers_share_the_follows_without_overlap_or_duplicates(
    upstreams, app_factory, database_url, dispose_engines, monkeypatch
):
    """Two refresher loops with owners of their own on one database, tasks starting upstream
    meanwhile: every task is tracked once, and no two runs of the follow ever overlap."""
    rng = random.Random(11)
    app = dispose_engines(
        follow_app(app_factory, upstreams, "mixpeek", {"DATABASE_URL": database_url})
    )
    with app.app_context():
        # Faster than the configuration allows, so the loops race for many runs.
        db.session.execute(sa.update(Follow).values(interval_seconds=0.05))
        db.session.commit()
    spans: list[tuple[float, float]] = []
    real_run = FollowRunner.run

    def timed_run(self: FollowRunner, source: str) -> Any:
        began = time.monotonic()
        result = real_run(self, source)
        if result is not None:
            spans.append((began, time.monotonic()))
        return result

    monkeypatch.setattr(FollowRunner, "run", timed_run)
    upstreams.state("mixpeek").set_fault(Fault.SLOW, seconds=0.01)
    stop = threading.Event()
    refreshers = [Refresher(app, owner=name) for name in ("one", "two")]
    loops = [
        threading.Thread(target=r.run_forever, args=(stop,), kwargs={"tick": 0.05})
        for r in refreshers
    ]
    for loop in loops:
        loop.start()
    try:
        started: list[str] = []
        for _ in range(5):
            started += start_tasks(upstreams, "mixpeek", rng, 4)
            wanted = len(started)
            wait_for(lambda wanted=wanted: len(tracked(app)) == wanted, timeout=20)
    finally:
        stop.set()
        for refresher in refreshers:
            refresher.wake()
        for loop in loops:
            loop.join(timeout=30)
    assert sorted(tracked(app)) == sorted(started)
    row = follow_row(app)
    assert row.total_found == 20 and row.last_error is None
    ordered = sorted(spans)
    assert len(ordered) >= 5
    assert all(later[0] >= earlier[1] for earlier, later in zip(ordered, ordered[1:], strict=False))


def test_a_stopping_process_gives_its_follow_back_part_way(upstreams, app_factory):
    rng = random.Random(12)
    app = follow_app(app_factory, upstreams, "nclue", rate_limit=1000)
    ids = start_tasks(upstreams, "nclue", rng, 12)
    runner = FollowRunner(app, owner="one", page_size=5)
    runner.stopping.set()  # as close() does while a run is in flight
    stopped = runner.run("followed")
    assert stopped is not None and stopped.found == 5 and not stopped.complete
    row = follow_row(app)
    assert (row.next_run_at, row.watermark, row.lease_owner, row.last_error) == (
        None,
        None,
        None,
        None,
    )
    carried_on = FollowRunner(app, owner="two", page_size=5).run("followed")
    assert carried_on is not None and carried_on.found == 7
    assert sorted(tracked(app)) == sorted(ids)


def test_a_follow_filtered_here_stops_on_what_it_read_not_on_what_matched(upstreams, app_factory):
    """NCLUE has no search: its follow filters the list here, and a page whose tasks match
    nothing still tells how far back the walk has read."""
    rng = random.Random(13)
    app = follow_app(app_factory, upstreams, "nclue", follow="name:rare", rate_limit=1000)
    state = upstreams.state("nclue")

    def start_named(count: int, rare: set[int]) -> list[str]:
        ids = start_tasks(upstreams, "nclue", rng, count)
        for n in rare:
            state.tasks[ids[n]].fields["task_name"] = f"rare-{n}"
        return [ids[n] for n in sorted(rare)]

    clock = Clock()
    runner = FollowRunner(app, owner="one", clock=clock, page_size=5)
    rare = start_named(30, {0, 25})
    assert runner.run("followed").found == 2  # type: ignore[union-attr]
    clock.advance(30)
    rare += start_named(11, {10})
    calls = listings(upstreams, "nclue")
    assert runner.run("followed").found == 1  # type: ignore[union-attr]
    # Back past the last run's newest match (the 16th newest task), not the whole list of 41.
    assert listings(upstreams, "nclue") - calls == 4
    clock.advance(30)
    upstreams.clock.advance(600)
    calls = listings(upstreams, "nclue")
    assert runner.run("followed").found == 0  # type: ignore[union-attr]
    assert listings(upstreams, "nclue") - calls == 1
    assert sorted(tracked(app)) == sorted(rare)


def test_two_worker_processes_track_each_new_task_once(
    upstreams, tmp_path, database_url, app_factory, dispose_engines, start_worker
):
    """Real ``taskdeck worker`` processes on one database, the follow in the sources file."""
    rng = random.Random(14)
    entry, environ = upstreams.source_entry(
        "opensearch-ml", "followed", follow="*", follow_interval=5
    )
    config = write_sources(tmp_path / "sources.toml", [entry])
    env = worker_env(database_url, config, tmp_path, environ)
    app = dispose_engines(app_factory([build_source(entry, environ)], DATABASE_URL=database_url))
    started = start_tasks(upstreams, "opensearch-ml", rng, 30)
    workers = [start_worker(env), start_worker(env)]
    wait_for(lambda: len(tracked(app)) == 30, timeout=30, what="the first run")
    started += start_tasks(upstreams, "opensearch-ml", rng, 15)
    wait_for(lambda: len(tracked(app)) == 45, timeout=30, what="the next run")
    for worker in workers:
        worker.stop()
        assert "Traceback" not in worker.output(), worker.output()
    assert sorted(tracked(app)) == sorted(started)
    row = follow_row(app)
    assert row.total_found == 45 and row.last_error is None and row.lease_owner is None


def test_a_new_task_a_follow_finds_alerts_but_its_first_run_backfills_quietly(
    upstreams, app_factory
):
    rule = {"name": "failures", "when": "state:failed", "url": "https://hooks.example/td"}
    app = follow_app(app_factory, upstreams, "conductor", {"NOTIFICATIONS": [rule]})
    state = upstreams.state("conductor")
    module = SIMULATORS["conductor"]
    rng = random.Random(15)

    def alerted() -> list[str]:
        with app.app_context():
            return list(
                db.session.scalars(
                    sa.select(Task.task_id).join(Delivery, Delivery.task_pk == Task.id)
                )
            )

    # Failed before anyone followed the query: tracked and inside the rule's match, but
    # nothing entered anything while we watched.
    module.add_demo_task(state, rng, final="failed", queued_seconds=1, running_seconds=1)
    upstreams.clock.advance(10)
    first = FollowRunner(app, owner="one").run("followed")
    assert first is not None and first.found == 1
    assert alerted() == []
    # Started after: news, alerted as any write of a failure is.
    failed = module.add_demo_task(state, rng, final="failed", queued_seconds=1, running_seconds=1)
    module.add_demo_task(state, rng, queued_seconds=500, running_seconds=500)
    upstreams.clock.advance(10)
    with app.app_context():
        db.session.execute(sa.update(Follow).values(next_run_at=None))
        db.session.commit()
    later = FollowRunner(app, owner="one").run("followed")
    assert later is not None and later.found == 2
    assert alerted() == [failed.task_id]
