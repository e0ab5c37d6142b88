"""How the refresher spends upstream calls: batching and counting real calls, a slow source
beside a fast one, many viewers, a forced refresh, odd words, and retention."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from urllib.parse import quote

import httpx
import pytest
import sqlalchemy as sa
from bs4 import BeautifulSoup
from flask import Flask

from tests.conftest import RefreshDriver
from tests.conftest import track
from tests.conftest import wait_for
from tests.integration.conftest import Upstreams
from webapp.config import build_source
from webapp.db import store
from webapp.db.models import Task
from webapp.db.models import TaskEvent
from webapp.db.models import db
from webapp.db.models import utcnow
from webapp.refresher.engine import Refresher
from webapp.refresher.lanes import BATCHING_MISSES
from webapp.simulators import SIMULATORS
from webapp.simulators.core import Fault
from webapp.simulators.core import SimulatorState


@pytest.fixture
def make_app(app_factory, upstreams: Upstreams) -> Callable[..., Flask]:  # type: ignore[no-untyped-def]
    def make(specs: dict[str, tuple[str, dict]], **config) -> Flask:  # type: ignore[no-untyped-def]
        sources = [
            build_source(*upstreams.source_entry(provider, name, **fields))
            for name, (provider, fields) in specs.items()
        ]
        return app_factory(sources, **config)

    return make


def add(
    upstreams: Upstreams, app: Flask, source: str, provider: str, count: int, **kw
) -> list[str]:  # type: ignore[no-untyped-def]
    module = SIMULATORS[provider]
    rng = random.Random(count)
    ids = [module.add_demo_task(upstreams.state(provider), rng, **kw).task_id for _ in range(count)]
    track(app, source, *ids)
    return ids


def test_batches_where_the_upstream_can_and_counts_every_real_call(make_app, upstreams):
    app = make_app(
        {
            "ml": ("opensearch-ml", {}),
            "cd": ("conductor", {}),
            "nc": ("nclue", {"rate_limit": 1000.0}),
            "mx": ("mixpeek", {}),
        }
    )
    for source, provider, count in [
        ("ml", "opensearch-ml", 150),
        ("cd", "conductor", 150),
        ("nc", "nclue", 150),
        ("mx", "mixpeek", 10),
    ]:
        add(upstreams, app, source, provider, count)
    refresher = Refresher(app)
    report = refresher.run_once()
    refresher.close()

    assert report.fetched == 460 and report.failed == 0
    calls = {p: upstreams.state(p).calls for p in SIMULATORS}
    # Two ids searches of at most 100; batch-prediction tasks are re-read with a GET, the only
    # way to make the cluster ask the remote job (PROVIDERS.md trap 22).
    rereads = sum(
        task.fields["task_type"] == "BATCH_PREDICTION"
        for task in upstreams.state("opensearch-ml").tasks.values()
    )
    assert calls["opensearch-ml"] == {"search": 2, "get": rereads}
    assert calls["conductor"] == {"token": 1, "search": 2}
    assert calls["nclue"]["list"] <= 4 and "get" not in calls["nclue"]  # list pages
    assert calls["mixpeek"] == {"list": 1}  # the list selects them by task_id
    # The report counts real HTTP requests, token exchange included.
    assert report.upstream_calls == upstreams.recorder.count()


def test_nclue_due_tasks_are_refreshed_in_one_walk_of_its_list(make_app, upstreams):
    # The list cannot pick ids, so jobs of 100 ids each walked it from the first page again:
    # 15 calls for 500 due tasks on a 1 request/s budget. One job walks it once.
    app = make_app({"nc": ("nclue", {"rate_limit": 1000.0})})
    add(upstreams, app, "nc", "nclue", 500)
    refresher = Refresher(app)
    report = refresher.run_once()
    refresher.close()

    assert report.fetched == 500 and report.failed == 0
    assert upstreams.state("nclue").calls == {"list": 5}


def test_mixpeek_tasks_that_age_out_are_gone_upstream_after_one_get_each(
    make_app, upstreams, clock
):
    """Redis keeps a Mixpeek task about a day: the batch's list leaves an aged-out task out,
    one GET confirms the 404, and the task keeps its last state as "gone upstream"."""
    app = make_app({"mx": ("mixpeek", {})})
    state = upstreams.state("mixpeek")
    module = SIMULATORS["mixpeek"]
    module.add_demo_task(state, random.Random(1), task_id="old", final="succeeded")
    clock.advance(86_000)
    for name in ("new-1", "new-2"):
        module.add_demo_task(state, random.Random(2), task_id=name, queued_seconds=1000)
    track(app, "mx", "old", "new-1", "new-2")
    driver = RefreshDriver(app)
    driver.pass_()
    assert state.calls == {"list": 1}
    clock.advance(400)
    state.calls.clear()
    report = driver.pass_()
    driver.close()
    assert state.calls == {"list": 1, "get": 1}
    assert report.upstream_calls == 2
    with app.app_context():
        old = store.get_task("mx", "old")
        assert old.gone_upstream and old.fetch_error_kind == "not_found"
        assert old.state == "succeeded"
        assert not store.get_task("mx", "new-1").gone_upstream


def test_batching_stops_where_it_does_not_pay(app_factory, make_source):
    """A Conductor without a search index finds nothing by search: each batch costs a search
    plus a GET per task, so after a few such batches the source is fetched per task."""
    from webapp.simulators import conductor as sim

    state = SimulatorState()
    tasks = {f"t{i}": sim.add_demo_task(state, random.Random(i), task_id=f"t{i}") for i in range(5)}
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        sent.append(path.rsplit("/", 1)[-1])
        if path.endswith("/api/token"):
            return httpx.Response(200, json={"token": "t"})
        if path.endswith("/api/tasks/search"):
            return httpx.Response(200, json={"totalHits": 0, "results": []})
        task = tasks[path.rsplit("/", 1)[-1]]
        return httpx.Response(200, json=sim.document(task, state.clock.now()))

    source = make_source("conductor", name="cd")
    app = app_factory([source], TRANSPORT_FACTORY=lambda s: httpx.MockTransport(handler))
    track(app, "cd", *tasks)
    driver = RefreshDriver(app)
    for _ in range(BATCHING_MISSES):
        assert driver.pass_().upstream_calls >= 6  # a search and five GETs
    sent.clear()
    report = driver.pass_()
    driver.close()
    assert report.fetched == 5 and report.upstream_calls == 5
    assert "search" not in sent


def test_a_slow_source_does_not_slow_another_sources_refreshes(make_app, upstreams, clock):
    app = make_app(
        {
            "slow": ("opensearch-ml", {"poll_interval": 0.2}),
            "fast": ("conductor", {"poll_interval": 0.2}),
        }
    )
    add(upstreams, app, "slow", "opensearch-ml", 5, queued_seconds=50)
    fast = add(upstreams, app, "fast", "conductor", 5, queued_seconds=10, running_seconds=50)
    upstreams.state("opensearch-ml").set_fault(Fault.SLOW, seconds=2.5)
    stop = threading.Event()
    refresher = Refresher(app)
    thread = threading.Thread(target=refresher.run_forever, args=(stop, 0.05))
    thread.start()
    try:

        def fast_words() -> set[str | None]:
            with app.app_context():
                return {store.get_task("fast", task_id).upstream_status for task_id in fast}

        wait_for(lambda: fast_words() == {"SCHEDULED"}, timeout=1.0, what="the fast source")
        clock.advance(11)
        wait_for(lambda: fast_words() == {"IN_PROGRESS"}, timeout=1.0, what="its next change")
        # All the while the slow source's first answer has not even arrived.
        with app.app_context():
            slow = db.session.scalars(sa.select(Task).where(Task.source == "slow")).all()
            assert all(task.last_fetched_at is None for task in slow)
    finally:
        upstreams.state("opensearch-ml").clear_faults()
        stop.set()
        refresher.wake()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_upstream_calls_do_not_depend_on_how_many_people_watch(make_app, upstreams):
    app = make_app({"ml": ("opensearch-ml", {}), "mx": ("mixpeek", {})})
    ml = add(upstreams, app, "ml", "opensearch-ml", 20)
    mx = add(upstreams, app, "mx", "mixpeek", 5)
    refresher = Refresher(app)
    refresher.run_once()
    refresher.close()
    before = upstreams.recorder.count()
    urls = ["/", "/?state=active", "/sources", "/api/v1/tasks", "/healthz"]
    for source, task_id in [("ml", ml[0]), ("mx", mx[0])]:
        path = f"/tasks/{source}/{quote(task_id, safe='')}"
        urls += [path, path + "/status", "/api/v1" + path]

    def watch(url: str) -> int:
        return app.test_client().get(url, headers={"HX-Request": "true"}).status_code

    with ThreadPoolExecutor(max_workers=8) as viewers:
        statuses = list(viewers.map(watch, urls * 25))
    assert all(status < 400 for status in statuses), sorted(set(statuses))
    assert upstreams.recorder.count() == before


def test_refresh_now_fetches_a_finished_task_once_more(make_app, upstreams, clock):
    app = make_app({"ml": ("opensearch-ml", {})})
    (task_id,) = add(upstreams, app, "ml", "opensearch-ml", 1, queued_seconds=1, running_seconds=1)
    clock.advance(5)
    driver = RefreshDriver(app)
    driver.pass_()
    driver.pass_()  # the confirming fetch; nothing is due after it
    with app.app_context():
        task = store.get_task("ml", task_id)
        assert task.terminal and task.next_poll_at is None
        task.next_poll_at = utcnow()  # what the detail page's button does
        db.session.commit()
    calls = upstreams.recorder.count()
    assert driver.refresher.run_once().fetched == 1
    assert upstreams.recorder.count() == calls + 1
    assert driver.pass_(all_due=False).fetched == 0
    driver.close()


def test_an_unknown_word_is_polled_rarely(make_app, upstreams):
    app = make_app({"mx": ("mixpeek", {"poll_interval": 5.0})})
    state = upstreams.state("mixpeek")
    state.add("odd", [("SUSPENDED", None)], fields={"task_type": "thumbnail"})
    track(app, "mx", "odd")
    refresher = Refresher(app)
    refresher.run_once()
    refresher.close()
    with app.app_context():
        task = store.get_task("mx", "odd")
        assert task.state == "unknown" and not task.terminal
        assert task.next_poll_at - task.last_fetched_at >= timedelta(seconds=60)


def test_the_worker_purges_finished_tasks_after_the_retention_period(make_app, upstreams):
    app = make_app({"ml": ("opensearch-ml", {})}, RETENTION_DAYS=30)
    now = utcnow()
    with app.app_context():
        rows = {}
        for name, finished_days_ago, terminal in [
            ("old-done", 40, True),
            ("recent-done", 5, True),
            ("old-active", None, False),
        ]:
            task, _ = store.track("ml", name, now=now - timedelta(days=60))
            task.terminal = terminal
            task.state = "succeeded" if terminal else "running"
            task.next_poll_at = None if terminal else now + timedelta(days=1)
            if finished_days_ago is not None:
                task.finished_at = now - timedelta(days=finished_days_ago)
            db.session.add(TaskEvent(task=task, at=now - timedelta(days=50), state=task.state))
            rows[name] = task
        db.session.commit()
        old_pk = rows["old-done"].id

    stop = threading.Event()
    refresher = Refresher(app)
    thread = threading.Thread(target=refresher.run_forever, args=(stop, 0.05))
    thread.start()
    try:

        def purged() -> bool:
            with app.app_context():
                return store.get_task("ml", "old-done") is None

        wait_for(purged, timeout=5, what="the retention purge")
    finally:
        stop.set()
        refresher.wake()
        thread.join(timeout=10)
    with app.app_context():
        left = set(db.session.scalars(sa.select(Task.task_id)))
        assert left == {"recent-done", "old-active"}
        orphans = db.session.scalar(
            sa.select(sa.func.count()).select_from(TaskEvent).where(TaskEvent.task_pk == old_pk)
        )
        assert orphans == 0
    page = BeautifulSoup(app.test_client().get("/sources").text, "html.parser")
    assert "deleted 30 days after they finish" in page.get_text()
