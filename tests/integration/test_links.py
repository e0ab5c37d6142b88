"""Linked tasks across simulators over real HTTP: discovered from payloads and from upstream
lists, resolved once, tracked when the source says ``track_related``, shown on the page."""

from __future__ import annotations

import random
import threading
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from tests.helpers import soup
from tests.helpers import wait_for
from tests.integration.conftest import Upstreams
from webapp import actions
from webapp.config import build_source
from webapp.db import store
from webapp.db.models import Task
from webapp.db.models import TaskLink
from webapp.db.models import db
from webapp.db.models import utcnow
from webapp.links import linking
from webapp.links.linking import REQUESTS_PER_PASS
from webapp.links.linking import LinkPass
from webapp.refresher.engine import Refresher
from webapp.simulators import SIMULATORS


def make_app(
    app_factory: Any, upstreams: Upstreams, **sources: tuple[str, dict[str, Any]]
) -> Flask:
    built = []
    for name, (provider, fields) in sources.items():
        entry, environ = upstreams.source_entry(provider, name, **fields)
        built.append(build_source(entry, environ))
    return app_factory(built)


def conductor_task(
    upstreams: Upstreams,
    task_id: str,
    *,
    output: dict[str, Any] | None = None,
    workflow: str = "wf-1",
    status: str = "COMPLETED",
    **fields: Any,
) -> None:
    upstreams.state("conductor").add(
        task_id,
        [("SCHEDULED", 1.0), (status, None)],
        fields={
            "taskType": "HTTP",
            "taskDefName": "start_training",
            "workflowInstanceId": workflow,
            "workflowType": "train_model",
            "outputData": output or {},
            **fields,
        },
    )


def http_answer(body: Any) -> dict[str, Any]:
    """An HTTP task's output: the answer it got (Conductor's HttpTask)."""
    return {"response": {"statusCode": 200, "reasonPhrase": "OK", "headers": {}, "body": body}}


def track(app: Flask, source: str, *task_ids: str) -> None:
    with app.app_context():
        for task_id in task_ids:
            store.track(source, task_id)
        db.session.commit()


def settle(app: Flask, rounds: int = 3) -> None:
    """Fetch, look for links, fetch what they tracked: a few rounds of each."""
    refresher = Refresher(app)
    try:
        for _ in range(rounds):
            refresher.run_once()
            LinkPass(app, refresher.clock, refresher.claims.writing).run()
        refresher.run_once()
    finally:
        refresher.close()


def links_of(app: Flask, source: str, task_id: str) -> dict[str, TaskLink]:
    with app.app_context():
        task = store.get_task(source, task_id)
        assert task is not None
        rows = db.session.scalars(sa.select(TaskLink).where(TaskLink.task_pk == task.id))
        found = {link.target_task_id: link for link in rows}
        db.session.expunge_all()
        return found


def tracked(app: Flask) -> dict[tuple[str, str], str | None]:
    with app.app_context():
        return {(t.source, t.task_id): t.tracked_via for t in db.session.scalars(sa.select(Task))}


def finished_task(upstreams: Upstreams, provider: str, seed: int = 3) -> str:
    task = SIMULATORS[provider].add_demo_task(
        upstreams.state(provider),
        random.Random(seed),
        final="succeeded",
        queued_seconds=1,
        running_seconds=1,
    )
    return str(task.task_id)


def test_conductor_outputs_link_and_track_ml_and_mixpeek_tasks(app_factory, upstreams):
    ml_id = finished_task(upstreams, "opensearch-ml")
    mixpeek_id = finished_task(upstreams, "mixpeek")
    conductor_task(upstreams, "cd-ml", output=http_answer({"task_id": ml_id, "status": "CREATED"}))
    conductor_task(upstreams, "cd-mx", output={"task_id": mixpeek_id}, workflow="wf-2")
    upstreams.clock.advance(30)
    app = make_app(
        app_factory,
        upstreams,
        cd=("conductor", {"track_related": True}),
        ml=("opensearch-ml", {}),
        mx=("mixpeek", {}),
    )
    track(app, "cd", "cd-ml", "cd-mx")
    settle(app)

    to_ml = links_of(app, "cd", "cd-ml")[ml_id]
    assert (to_ml.status, to_ml.target_source, to_ml.relation) == ("found", "ml", "launched")
    assert to_ml.found_in == "outputData.response.body.task_id"
    to_mixpeek = links_of(app, "cd", "cd-mx")[mixpeek_id]
    assert (to_mixpeek.status, to_mixpeek.target_source) == ("found", "mx")
    everything = tracked(app)
    assert everything[("ml", ml_id)] == "link" and everything[("mx", mixpeek_id)] == "link"
    with app.app_context():
        ml_task = store.get_task("ml", ml_id)
        assert ml_task is not None and ml_task.state == "succeeded"  # fetched since

    client = app.test_client()
    page = soup(client.get("/tasks/cd/cd-ml"))
    row = page.select_one("#task-family tr.task-link")
    assert ml_id in row.get_text() and "launched" in row.get_text()
    assert row.select_one("a")["href"] == f"/tasks/ml/{ml_id}"
    assert row.select_one(".badge-state").get_text(strip=True).endswith("succeeded")
    # The family timeline: both tasks, as bars and as text.
    gantt = page.select("#task-family table.family-gantt tbody tr")
    assert len(gantt) == 2
    assert all(r.select_one("svg.gantt-bar rect.seg") for r in gantt)
    sources = sorted(r.select_one("th .muted").get_text().split(",")[0] for r in gantt)
    assert sources == ["cd", "ml"]
    assert "this task" in page.select_one("table.family-gantt tr.current th").get_text()
    # The ML task's own page shows where it came from.
    back = soup(client.get(f"/tasks/ml/{ml_id}")).select_one("#task-family tr.task-link")
    assert "launched by" in back.get_text() and "cd-ml" in back.get_text()


def test_track_related_off_lists_links_without_tracking(app_factory, upstreams):
    ml_id = finished_task(upstreams, "opensearch-ml")
    conductor_task(upstreams, "cd-1", output={"task_id": ml_id})
    upstreams.clock.advance(30)
    app = make_app(app_factory, upstreams, cd=("conductor", {}), ml=("opensearch-ml", {}))
    track(app, "cd", "cd-1")
    settle(app)

    assert links_of(app, "cd", "cd-1")[ml_id].status == "found"
    assert ("ml", ml_id) not in tracked(app)
    client = app.test_client()
    page = soup(client.get("/tasks/cd/cd-1"))
    button = page.select_one(f"button[data-track-link='{ml_id}']")
    assert button is not None
    form = button.find_parent("form")
    token = page.select_one("#task-family input[name=csrf_token]")["value"]
    answer = client.post(form["action"], data={"csrf_token": token})
    assert answer.status_code == 303
    assert tracked(app)[("ml", ml_id)] == "link"
    again = soup(client.get("/tasks/cd/cd-1"))
    assert again.select_one(f"button[data-track-link='{ml_id}']") is None


def test_unknown_and_ambiguous_ids_are_remembered(app_factory, upstreams):
    ml_id = finished_task(upstreams, "opensearch-ml")
    conductor_task(upstreams, "cd-1", output={"task_id": "no-such-task-42"})
    conductor_task(upstreams, "cd-2", output={"task_id": ml_id}, workflow="wf-2")
    upstreams.clock.advance(30)
    # Two sources on one cluster: the id is on both.
    app = make_app(
        app_factory,
        upstreams,
        cd=("conductor", {"track_related": True}),
        ml=("opensearch-ml", {}),
        ml2=("opensearch-ml", {}),
        mx=("mixpeek", {}),
    )
    track(app, "cd", "cd-1", "cd-2")
    settle(app)

    assert links_of(app, "cd", "cd-1")["no-such-task-42"].status == "not_found"
    ambiguous = links_of(app, "cd", "cd-2")[ml_id]
    assert ambiguous.status == "ambiguous" and ambiguous.target_source is None
    assert ("ml", ml_id) not in tracked(app) and ("ml2", ml_id) not in tracked(app)

    before = {p: dict(upstreams.state(p).calls) for p in ("opensearch-ml", "mixpeek")}
    # The Conductor tasks change state again: their payloads are read again, but the answers
    # are kept, so nothing is asked twice.
    with app.app_context():
        db.session.execute(sa.update(Task).values(links_checked_at=None))
        db.session.commit()
    settle(app, rounds=2)
    after = {p: dict(upstreams.state(p).calls) for p in ("opensearch-ml", "mixpeek")}
    assert after == before
    page = soup(app.test_client().get("/tasks/cd/cd-1"))
    assert "not found on any source" in page.select_one("#task-family").get_text()


def test_ml_model_siblings_come_from_the_ml_search(app_factory, upstreams):
    state = upstreams.state("opensearch-ml")
    for task_id in ("train-1", "deploy-1", "other-1"):
        state.add(
            task_id,
            [("RUNNING", 1.0), ("COMPLETED", None)],
            fields={
                "task_type": "TRAINING" if task_id.startswith("train") else "DEPLOY_MODEL",
                "function_name": "KMEANS",
                "model_id": "model-other" if task_id == "other-1" else "model-quokka",
                "worker_node": ["node-1"],
            },
        )
    upstreams.clock.advance(10)
    app = make_app(app_factory, upstreams, ml=("opensearch-ml", {"track_related": True}))
    track(app, "ml", "train-1")
    settle(app)

    found = links_of(app, "ml", "train-1")
    assert set(found) == {"deploy-1"}
    assert (found["deploy-1"].relation, found["deploy-1"].status) == ("same model", "found")
    assert tracked(app)[("ml", "deploy-1")] == "link"
    assert ("ml", "other-1") not in tracked(app)


def test_workflow_siblings_and_the_retry_are_linked(app_factory, upstreams):
    conductor_task(upstreams, "prepare", workflow="wf-9", seq=1)
    conductor_task(
        upstreams,
        "train",
        workflow="wf-9",
        status="FAILED",
        seq=2,
        reasonForIncompletion="worker lost",
    )
    upstreams.clock.advance(30)
    app = make_app(app_factory, upstreams, cd=("conductor", {}))
    track(app, "cd", "train")
    settle(app)
    assert {k: v.relation for k, v in links_of(app, "cd", "train").items()} == {
        "prepare": "same workflow"
    }

    with app.app_context():
        task = store.get_task("cd", "train")
        assert task is not None
        assert actions.perform(task, "retry", "test").outcome == "done"
        db.session.commit()
    settle(app, rounds=1)
    links = links_of(app, "cd", "train")
    retries = [k for k, v in links.items() if v.relation == "retry"]
    assert len(retries) == 1 and retries[0] not in ("prepare", "train")
    page = soup(app.test_client().get("/tasks/cd/train"))
    assert retries[0] in page.select_one("#task-family").get_text()


@pytest.mark.parametrize(
    "output",
    [
        {"task_id": 12345},
        {"task_id": {"nested": "x"}},
        {"task_id": "has spaces and ; semicolons"},
        {"items": [{"x": i} for i in range(50_000)], "task_id": "ok-after-huge"},
        "not an object at all",
    ],
    ids=["number", "object", "not-an-id", "huge", "string"],
)
def test_hostile_payloads_break_neither_the_pass_nor_the_page(app_factory, upstreams, output):
    deep: dict[str, Any] = {"task_id": "too-deep-id"}
    for _ in range(300):
        deep = {"next": deep}
    conductor_task(upstreams, "cd-1", output={"out": output, "deep": deep})
    upstreams.clock.advance(30)
    app = make_app(
        app_factory,
        upstreams,
        cd=("conductor", {"track_related": True}),
        ml=("opensearch-ml", {}),
    )
    track(app, "cd", "cd-1")
    settle(app, rounds=1)

    found = links_of(app, "cd", "cd-1")
    assert "too-deep-id" not in found
    assert set(found) <= {"ok-after-huge"}
    response = app.test_client().get("/tasks/cd/cd-1")
    assert response.status_code == 200
    assert soup(response).select_one("#task-family") is not None


def test_a_mixpeek_batch_links_to_its_tracked_tasks_source_and_is_never_fetched(
    app_factory, upstreams
):
    upstreams.state("mixpeek").add(
        "task_batch_1",
        [("PROCESSING", 1.0), ("COMPLETED", None)],
        fields={
            "task_type": "api_buckets_batches_process",
            "inputs": ["batch_q1"],
            "additional_data": {"batch_id": "batch_q1", "bucket_id": "bkt_1"},
        },
    )
    conductor_task(upstreams, "cd-1", output={"batch_id": "batch_q1", "task_id": "task_batch_1"})
    upstreams.clock.advance(30)
    app = make_app(
        app_factory,
        upstreams,
        cd=("conductor", {"track_related": True}),
        mx=("mixpeek", {}),
    )
    track(app, "mx", "task_batch_1")
    track(app, "cd", "cd-1")
    settle(app)

    links = links_of(app, "cd", "cd-1")
    batch = links["batch_q1"]
    assert (batch.status, batch.target_source, batch.relation) == ("found", "mx", "launched batch")
    assert links["task_batch_1"].status == "found"
    # The batch id was never asked for as a task, nor tracked as one.
    assert not any("batch_q1" in h.task_ids for h in upstreams.recorder.hits)
    assert ("mx", "batch_q1") not in tracked(app)
    row = next(
        r
        for r in soup(app.test_client().get("/tasks/cd/cd-1")).select("#task-family tr.task-link")
        if "batch_q1" in r.get_text()
    )
    assert "a batch" in row.get_text() and row.select_one("button") is None


def test_a_pass_stays_within_its_request_budget(app_factory, upstreams):
    for index in range(30):
        conductor_task(
            upstreams, f"cd-{index}", output={"task_id": f"ml-{index}"}, workflow=f"wf-{index}"
        )
    upstreams.clock.advance(30)
    app = make_app(app_factory, upstreams, cd=("conductor", {}), ml=("opensearch-ml", {}))
    track(app, "cd", *(f"cd-{index}" for index in range(30)))
    refresher = Refresher(app)
    refresher.run_once()
    links = LinkPass(app, refresher.clock, refresher.claims.writing)
    try:
        made = []
        for _ in range(10):
            before = upstreams.recorder.count()
            report = links.run()
            made.append(upstreams.recorder.count() - before)
            assert report.requests == made[-1]
            if not report.requests:
                break
    finally:
        refresher.close()
    assert max(made) <= REQUESTS_PER_PASS and made[-1] == 0
    # 30 sibling lists and 30 lookups in all, each made once.
    assert sum(made) == 60
    assert upstreams.state("opensearch-ml").calls["get"] == 30


def test_a_running_refresher_finds_tracks_and_fetches_links(app_factory, upstreams):
    ml_id = finished_task(upstreams, "opensearch-ml")
    conductor_task(upstreams, "cd-1", output=http_answer({"task_id": ml_id}))
    upstreams.clock.advance(30)
    app = make_app(
        app_factory,
        upstreams,
        cd=("conductor", {"track_related": True}),
        ml=("opensearch-ml", {}),
    )
    track(app, "cd", "cd-1")
    refresher = Refresher(app)
    stop = threading.Event()
    runner = threading.Thread(target=refresher.run_forever, args=(stop, 0.2), daemon=True)
    runner.start()
    try:

        def fetched() -> bool:
            with app.app_context():
                task = store.get_task("ml", ml_id)
                return task is not None and task.last_fetched_at is not None

        wait_for(fetched, timeout=20, what="the linked ML task tracked and fetched")
    finally:
        stop.set()
        refresher.wake()
        runner.join(timeout=20)
    assert not runner.is_alive()
    assert tracked(app)[("ml", ml_id)] == "link"


def test_links_are_looked_for_again_when_the_state_changes_not_on_every_poll(
    app_factory, upstreams
):
    ml_id = finished_task(upstreams, "opensearch-ml")
    # Conductor writes a task's output when it completes: while it runs there is nothing to find.
    upstreams.state("conductor").add(
        "cd-1",
        [("IN_PROGRESS", 60.0), ("COMPLETED", None)],
        fields={"workflowInstanceId": "wf-1", "outputData": http_answer({"task_id": ml_id})},
    )
    upstreams.clock.advance(5)
    app = make_app(
        app_factory,
        upstreams,
        cd=("conductor", {"track_related": True}),
        ml=("opensearch-ml", {}),
    )
    track(app, "cd", "cd-1")
    settle(app, rounds=1)
    assert links_of(app, "cd", "cd-1") == {}
    searches = upstreams.state("conductor").calls.get("search", 0)
    gets = upstreams.state("conductor").calls["get"]
    assert searches == 1  # the workflow's tasks, once

    # Polled again without a change: no new look (no sibling search either).
    with app.app_context():
        db.session.execute(sa.update(Task).values(next_poll_at=utcnow()))
        db.session.commit()
    settle(app, rounds=1)
    with app.app_context():
        checked = store.get_task("cd", "cd-1").links_checked_at
    # Fetched again (a GET), but no sibling search: nothing changed.
    assert upstreams.state("conductor").calls["get"] == gets + 1
    assert upstreams.state("conductor").calls.get("search", 0) == searches

    upstreams.clock.advance(120)
    with app.app_context():
        db.session.execute(sa.update(Task).values(next_poll_at=utcnow()))
        db.session.commit()
    settle(app, rounds=2)
    assert links_of(app, "cd", "cd-1")[ml_id].status == "found"
    assert tracked(app)[("ml", ml_id)] == "link"
    with app.app_context():
        assert store.get_task("cd", "cd-1").links_checked_at > checked


def test_between_full_reads_a_pass_reads_only_changed_tasks(app_factory, upstreams, monkeypatch):
    monkeypatch.setattr(linking, "FULL_LOOK_EVERY_SECONDS", 3600.0)
    monkeypatch.setattr(linking, "CHANGE_OVERLAP", timedelta(0))
    ml_id = finished_task(upstreams, "opensearch-ml")
    conductor_task(upstreams, "cd-1", output={"task_id": ml_id})
    upstreams.clock.advance(30)
    app = make_app(app_factory, upstreams, cd=("conductor", {}), ml=("opensearch-ml", {}))
    refresher = Refresher(app)
    links = LinkPass(app, refresher.clock, refresher.claims.writing)
    try:
        assert links.run().checked == 0  # the first, full read: nothing tracked yet
        track(app, "cd", "cd-1")
        refresher.run_once()  # first seen: a change
        assert links.run().checked == 1
        assert links_of(app, "cd", "cd-1")[ml_id].status == "found"
        # Due again, but unchanged: left to the next full read...
        with app.app_context():
            db.session.execute(sa.update(Task).values(links_checked_at=None))
            db.session.commit()
        assert links.run().checked == 0
        # ...unless it changes (an upstream action that succeeded marks it so).
        with app.app_context():
            db.session.execute(sa.update(Task).values(changed_at=utcnow()))
            db.session.commit()
        assert links.run().checked == 1
    finally:
        refresher.close()
