"""Upstream actions end to end: each provider's action against its simulator over loopback HTTP,
in states the upstream allows and refuses, from the task page, the list's bulk form and the API,
with the history entry, the audit line and the forced refresh."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import RefreshDriver
from tests.conftest import SourceFactory
from tests.helpers import csrf
from tests.helpers import soup
from tests.helpers import track
from webapp.access.roles import Role
from webapp.access.tokens import create_token
from webapp.db import store
from webapp.db.models import AuditEvent
from webapp.db.models import TaskAction
from webapp.db.models import db
from webapp.simulators import SimulatorSuite
from webapp.simulators import conductor as conductor_sim
from webapp.simulators.core import Fault
from webapp.simulators.core import ManualClock
from webapp.simulators.core import SimulatorState
from webapp.simulators.opensearch_ml import add_remote_batch_task
from webapp.simulators.server import ServerThread
from webapp.sources.registry import registry

ML, MIX, COND, NCLUE = "ml-t", "mix-t", "cond-t", "nclue-t"
HTMX = {"HX-Request": "true"}


class Recorder:
    """WSGI middleware: (method, path, monotonic time) of every request to the simulators."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.hits: list[tuple[str, str, float]] = []
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        with self.lock:
            self.hits.append((environ["REQUEST_METHOD"], environ["PATH_INFO"], time.monotonic()))
        return self.app(environ, start_response)

    def times(self, provider: str) -> list[tuple[str, float]]:
        with self.lock:
            return [(m, t) for m, p, t in self.hits if p.startswith(f"/{provider}/")]


@pytest.fixture
def recorder(suite: SimulatorSuite) -> Recorder:
    return Recorder(suite.wsgi_app())


@pytest.fixture
def sim_server(recorder: Recorder) -> Iterator[ServerThread]:
    with ServerThread(recorder) as server:
        yield server


@pytest.fixture
def sources(make_source: SourceFactory) -> list[Any]:
    return [
        make_source("opensearch-ml", name=ML),
        make_source("mixpeek", name=MIX),
        make_source("conductor", name=COND),
        make_source("nclue", name=NCLUE),
    ]


@pytest.fixture
def make_app(app_factory: Callable[..., Flask], sources: list[Any]) -> Callable[..., Flask]:
    return lambda **config: app_factory(sources, **config)


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def driver(app: Flask) -> Iterator[RefreshDriver]:
    refresh = RefreshDriver(app)
    yield refresh
    refresh.close()


def states(suite: SimulatorSuite, provider: str) -> SimulatorState:
    state: SimulatorState = suite.states[provider]
    return state


def seen(app: Flask, driver: RefreshDriver, source: str, *task_ids: str) -> None:
    """Track the tasks and fetch them once."""
    track(app, source, *task_ids)
    driver.pass_()


def task_json(client: FlaskClient, source: str, task_id: str) -> dict[str, Any]:
    answer = client.get(f"/api/v1/tasks/{source}/{task_id}")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json
    return body


def recorded(app: Flask, source: str, task_id: str) -> list[tuple[str, str, str]]:
    with app.app_context():
        task = store.get_task(source, task_id)
        assert task is not None
        rows = db.session.scalars(sa.select(TaskAction).where(TaskAction.task_pk == task.id))
        return [(r.action, r.actor, r.outcome) for r in rows]


def audited(app: Flask) -> list[tuple[str, str | None, dict[str, Any]]]:
    with app.app_context():
        rows = db.session.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == "task.action").order_by(AuditEvent.id)
        )
        return [(r.actor, r.target, dict(r.details)) for r in rows]


def post_action(
    client: FlaskClient, source: str, task_id: str, action: str, *, htmx: bool = True
) -> Any:
    return client.post(
        f"/tasks/{source}/{task_id}/actions/{action}",
        data={"csrf_token": csrf(client)},
        headers=HTMX if htmx else {},
    )


def editor_token(app: Flask, role: Role = Role.EDITOR, name: str = "ana") -> dict[str, str]:
    with app.app_context():
        _, token = create_token(name, role)
        db.session.commit()
    return {"Authorization": f"Bearer {token}"}


# -- Mixpeek: cancel (kill) ------------------------------------------------------------------

MIX_PHASES: list[tuple[str, float | None]] = [
    ("QUEUED", 10.0),
    ("PROCESSING", 10.0),
    ("COMPLETED", None),
]


def test_cancel_from_the_page_kills_the_mixpeek_task_and_is_recorded(
    app: Flask, driver: RefreshDriver, suite: SimulatorSuite, clock: ManualClock
) -> None:
    state = states(suite, "mixpeek")
    state.add("mx-1", MIX_PHASES)
    clock.advance(12)
    seen(app, driver, MIX, "mx-1")
    client = app.test_client()
    assert task_json(client, MIX, "mx-1")["actions"] == ["cancel"]
    page = soup(client.get(f"/tasks/{MIX}/mx-1"))
    form = page.select_one("#task-upstream-actions form")
    assert form is not None and form["action"] == f"/tasks/{MIX}/mx-1/actions/cancel"
    # The confirmation names the task and says what happens.
    assert "mx-1" in form["hx-confirm"] and "kills the task" in form["hx-confirm"]

    answer = post_action(client, MIX, "mx-1", "cancel")

    assert answer.status_code == 200
    fragment = soup(answer)
    assert "accepted upstream" in fragment.select_one(".action-result").get_text()
    history = fragment.select_one("#task-history[hx-swap-oob]")
    assert "cancel requested by anonymous" in history.get_text()
    assert state.get("mx-1").status(clock.now()) == "CANCELED"
    assert recorded(app, MIX, "mx-1") == [("cancel", "anonymous", "done")]
    [(actor, target, details)] = audited(app)
    assert (actor, target) == ("anonymous", f"{MIX}/mx-1")
    assert (details["action"], details["outcome"]) == ("cancel", "done")
    # The forced refresh: due now, and the next pass brings the new state.
    with app.app_context():
        task = store.get_task(MIX, "mx-1")
        assert task is not None and task.next_poll_at is not None
    driver.pass_(all_due=False)
    body = task_json(client, MIX, "mx-1")
    assert (body["upstream_status"], body["actions"]) == ("CANCELED", [])


def test_without_htmx_the_page_redirects_with_a_flash(
    app: Flask, driver: RefreshDriver, suite: SimulatorSuite
) -> None:
    states(suite, "mixpeek").add("mx-2", MIX_PHASES)
    seen(app, driver, MIX, "mx-2")
    client = app.test_client()
    answer = post_action(client, MIX, "mx-2", "cancel", htmx=False)
    assert answer.status_code == 303
    assert answer.headers["Location"].endswith(f"/tasks/{MIX}/mx-2")
    messages = soup(client.get(answer.headers["Location"])).select_one(".messages").get_text()
    assert "Cancel of mx-2: accepted upstream" in messages


def test_a_finished_task_offers_no_cancel_and_a_forced_one_is_409_without_a_request(
    app: Flask, driver: RefreshDriver, suite: SimulatorSuite, clock: ManualClock
) -> None:
    state = states(suite, "mixpeek")
    state.add("mx-3", MIX_PHASES)
    clock.advance(30)
    seen(app, driver, MIX, "mx-3")
    client = app.test_client()
    assert task_json(client, MIX, "mx-3")["actions"] == []
    assert soup(client.get(f"/tasks/{MIX}/mx-3")).select("#task-upstream-actions form") == []
    answer = client.post(f"/api/v1/tasks/{MIX}/mx-3/actions/cancel", headers=editor_token(app))
    assert answer.status_code == 409
    assert answer.json["outcome"] == "unavailable"
    assert state.calls["delete"] == 0
    # A page left open since it ran: the button's answer says why, in place.
    stale = post_action(client, MIX, "mx-3", "cancel")
    assert stale.status_code == 200
    said = soup(stale).select_one(".action-result").get_text()
    assert "not available" in said and "mx-3 is COMPLETED" in said
    assert state.calls["delete"] == 0
    # Not sent, so not in the task's history; audited all the same.
    assert recorded(app, MIX, "mx-3") == []
    assert [d["outcome"] for _, _, d in audited(app)] == ["unavailable", "unavailable"]


# -- OpenSearch ML: delete, and cancel of a remote batch job -------------------------------


def local_task(state: SimulatorState, task_id: str) -> None:
    phases: list[tuple[str, float | None]] = [("CREATED", 2), ("RUNNING", 10), ("COMPLETED", None)]
    state.add(task_id, phases, fields={"task_type": "DEPLOY_MODEL", "model_id": "m-1"})


def test_opensearch_delete_is_not_offered_while_running_and_the_upstream_refuses_it(
    app: Flask, driver: RefreshDriver, suite: SimulatorSuite, clock: ManualClock
) -> None:
    state = states(suite, "opensearch-ml")
    local_task(state, "dep-1")
    seen(app, driver, ML, "dep-1")
    client = app.test_client()
    headers = editor_token(app)
    assert task_json(client, ML, "dep-1")["actions"] == ["delete"]
    # The cache still says CREATED; upstream it now runs: ML Commons refuses (a plain 500).
    clock.advance(5)
    answer = client.post(f"/api/v1/tasks/{ML}/dep-1/actions/delete", headers=headers)
    assert answer.status_code == 409
    assert answer.json["outcome"] == "refused"
    assert "cannot be deleted in running state" in answer.json["message"]
    assert recorded(app, ML, "dep-1") == [("delete", "ana", "refused")]
    # Once the refresh has seen RUNNING, delete is not offered, nor sent.
    driver.pass_(all_due=False)
    assert task_json(client, ML, "dep-1")["actions"] == []
    before = state.calls["delete"]
    forced = client.post(f"/api/v1/tasks/{ML}/dep-1/actions/delete", headers=headers)
    assert (forced.status_code, forced.json["outcome"]) == (409, "unavailable")
    assert state.calls["delete"] == before
    # Finished: delete again, and the task is gone upstream after the refresh.
    clock.advance(20)
    driver.pass_()
    done = client.post(f"/api/v1/tasks/{ML}/dep-1/actions/delete", headers=headers)
    assert (done.status_code, done.json["outcome"]) == (200, "done")
    assert done.json["task"]["source"] == ML
    driver.pass_(all_due=False)
    assert task_json(client, ML, "dep-1")["gone_upstream"] is True
    assert task_json(client, ML, "dep-1")["actions"] == []


def test_opensearch_cancel_stops_a_remote_batch_job(
    app: Flask, driver: RefreshDriver, suite: SimulatorSuite, clock: ManualClock
) -> None:
    state = states(suite, "opensearch-ml")
    add_remote_batch_task(
        state, random.Random(3), task_id="batch-1", queued_seconds=2, running_seconds=300
    )
    local_task(state, "dep-2")
    # Running when fetched; its job is over at the service by the time of the cancel.
    add_remote_batch_task(
        state, random.Random(5), task_id="batch-2", queued_seconds=2, running_seconds=20
    )
    clock.advance(5)
    seen(app, driver, ML, "batch-1", "dep-2", "batch-2")
    client = app.test_client()
    # RUNNING: no delete; a batch prediction may be cancelled, a deploy task may not.
    assert task_json(client, ML, "batch-1")["actions"] == ["cancel"]
    assert task_json(client, ML, "dep-2")["actions"] == []
    answer = post_action(client, ML, "batch-1", "cancel")
    assert answer.status_code == 200
    assert recorded(app, ML, "batch-1") == [("cancel", "anonymous", "done")]
    clock.advance(120)
    assert task_json(client, ML, "batch-2")["actions"] == ["cancel"]
    headers = editor_token(app)
    late = client.post(f"/api/v1/tasks/{ML}/batch-2/actions/cancel", headers=headers)
    assert (late.status_code, late.json["outcome"]) == (409, "refused")
    assert "Error from remote service" in late.json["message"]
    driver.pass_()
    body = task_json(client, ML, "batch-1")
    assert body["upstream_status"] in ("CANCELLING", "CANCELLED")
    # A cancel on a task without a batch job is refused as no action of its type.
    forced = client.post(f"/api/v1/tasks/{ML}/dep-2/actions/cancel", headers=headers)
    assert forced.status_code == 409


# -- Conductor: terminate the workflow, retry it, and the line on the task's log ----------


def test_conductor_cancel_terminates_the_workflow_and_logs_who_did_it(
    app: Flask, driver: RefreshDriver, suite: SimulatorSuite, clock: ManualClock
) -> None:
    state = states(suite, "conductor")
    task = conductor_sim.add_demo_task(state, random.Random(2), task_id="c-1", running_seconds=60)
    clock.advance(5)
    seen(app, driver, COND, "c-1")
    client = app.test_client()
    assert task_json(client, COND, "c-1")["actions"] == ["cancel"]

    answer = client.post(f"/api/v1/tasks/{COND}/c-1/actions/cancel", headers=editor_token(app))

    assert (answer.status_code, answer.json["outcome"]) == (200, "done")
    assert task.status(clock.now()) == "CANCELED"
    with app.app_context():
        logs = registry().provider(COND).fetch_logs("c-1")  # type: ignore[attr-defined]
    lines = [entry["log"] for entry in logs]
    assert any("ana asked to terminate the workflow (cancel): done" in line for line in lines)
    driver.pass_(all_due=False)
    assert task_json(client, COND, "c-1")["actions"] == ["retry"]


def test_conductor_retry_of_a_failed_task_and_a_refusal_while_the_workflow_runs(
    app: Flask, driver: RefreshDriver, suite: SimulatorSuite, clock: ManualClock
) -> None:
    state = states(suite, "conductor")
    conductor_sim.add_demo_task(
        state, random.Random(4), task_id="c-2", final="failed", running_seconds=5
    )
    clock.advance(20)
    seen(app, driver, COND, "c-2")
    client = app.test_client()
    headers = editor_token(app)
    assert task_json(client, COND, "c-2")["actions"] == ["retry"]
    first = client.post(f"/api/v1/tasks/{COND}/c-2/actions/retry", headers=headers)
    assert (first.status_code, first.json["outcome"]) == (200, "done")
    # A new attempt runs now: the workflow is running, so Conductor refuses a second retry.
    again = client.post(f"/api/v1/tasks/{COND}/c-2/actions/retry", headers=headers)
    assert (again.status_code, again.json["outcome"]) == (409, "refused")
    assert "still running" in again.json["message"]
    assert [o for _, _, o in recorded(app, COND, "c-2")] == ["done", "refused"]
    with app.app_context():
        logs = registry().provider(COND).fetch_logs("c-2")  # type: ignore[attr-defined]
    lines = [entry["log"] for entry in logs]
    assert sum("ana asked to retry the workflow" in line for line in lines) == 2


def test_an_upstream_failure_is_a_502_and_a_failed_entry(
    app: Flask, driver: RefreshDriver, suite: SimulatorSuite, clock: ManualClock
) -> None:
    state = states(suite, "conductor")
    conductor_sim.add_demo_task(state, random.Random(2), task_id="c-3", running_seconds=60)
    clock.advance(5)
    seen(app, driver, COND, "c-3")
    state.set_fault(Fault.SERVER_ERROR, times=1)
    answer = app.test_client().post(
        f"/api/v1/tasks/{COND}/c-3/actions/cancel", headers=editor_token(app)
    )
    assert (answer.status_code, answer.json["outcome"]) == (502, "failed")
    assert recorded(app, COND, "c-3") == [("cancel", "ana", "failed")]


# -- NCLUE: delete, within its one request a second ------------------------------------------

NCLUE_PHASES: list[tuple[str, float | None]] = [
    ("registered", 30.0),
    ("pending", 3.0),
    ("in_progress", 10.0),
    ("completed", None),
]


def test_nclue_delete_where_allowed_and_within_the_rate_limit(
    app: Flask, driver: RefreshDriver, suite: SimulatorSuite, clock: ManualClock, recorder: Recorder
) -> None:
    state = states(suite, "nclue")
    state.add("n-1", NCLUE_PHASES)
    state.add("n-2", NCLUE_PHASES)
    clock.advance(31)  # n-1 and n-2 pending
    seen(app, driver, NCLUE, "n-1", "n-2")
    client = app.test_client()
    assert task_json(client, NCLUE, "n-1")["actions"] == []
    clock.advance(60)
    driver.pass_()
    assert task_json(client, NCLUE, "n-1")["actions"] == ["delete"]

    answer = post_action(client, NCLUE, "n-1", "delete")

    assert answer.status_code == 200
    assert state.get("n-1") is None or state.get("n-1").gone
    # Registered when fetched, being built upstream by the time of the delete: NCLUE says no.
    state.add("n-3", NCLUE_PHASES)
    seen(app, driver, NCLUE, "n-3")
    assert task_json(client, NCLUE, "n-3")["actions"] == ["delete"]
    clock.advance(31)
    refused = client.post(f"/api/v1/tasks/{NCLUE}/n-3/actions/delete", headers=editor_token(app))
    assert (refused.status_code, refused.json["outcome"]) == (409, "refused")
    assert "cannot be deleted while it is pending" in refused.json["message"]
    assert recorded(app, NCLUE, "n-3") == [("delete", "ana", "refused")]
    # Every request to NCLUE, the deletes among them, in its one request a second. A request
    # leaves at its slot or later (a busy machine delays a thread, never hastens one), so one
    # late arrival shortens only the gap after it: any three arrivals span two slots, less
    # what held the first up.
    times = recorder.times("nclue")
    assert ("DELETE", times[-1][1]) == times[-1]
    arrivals = [at for _, at in times]
    spans = [later - earlier for earlier, later in zip(arrivals, arrivals[2:], strict=False)]
    assert spans and min(spans) >= 1.9, spans


# -- who may act --------------------------------------------------------------------------------


def test_viewers_and_read_only_dashboards_may_not_act(
    make_app: Callable[..., Flask], suite: SimulatorSuite
) -> None:
    from tests.access.people import signed_in

    states(suite, "mixpeek").add("mx-9", MIX_PHASES)
    app = make_app(AUTH="local")
    refresh = RefreshDriver(app)
    try:
        seen(app, refresh, MIX, "mx-9")
    finally:
        refresh.close()
    viewer = signed_in(app, "val", "viewer")
    assert soup(viewer.get(f"/tasks/{MIX}/mx-9")).select("#task-upstream-actions form") == []
    assert post_action(viewer, MIX, "mx-9", "cancel").status_code == 403
    viewer_api = editor_token(app, Role.VIEWER, name="viewer-token")
    refused = app.test_client().post(f"/api/v1/tasks/{MIX}/mx-9/actions/cancel", headers=viewer_api)
    assert refused.status_code == 403
    editor = signed_in(app, "ed", "editor")
    # Without the form's token: refused before anything is sent.
    assert editor.post(f"/tasks/{MIX}/mx-9/actions/cancel").status_code == 400
    assert states(suite, "mixpeek").calls["delete"] == 0
    assert post_action(editor, MIX, "mx-9", "cancel").status_code == 200
    assert recorded(app, MIX, "mx-9") == [("cancel", "ed", "done")]

    read_only = make_app(AUTH="none", READ_ONLY=True)
    client = read_only.test_client()
    assert soup(client.get(f"/tasks/{MIX}/mx-9")).select("#task-upstream-actions form") == []
    assert client.post(f"/api/v1/tasks/{MIX}/mx-9/actions/cancel").status_code == 403


def test_unknown_actions_and_tasks_are_404(app: Flask, driver: RefreshDriver) -> None:
    client = app.test_client()
    headers = editor_token(app)
    assert (
        client.post(f"/api/v1/tasks/{MIX}/nope/actions/cancel", headers=headers).status_code == 404
    )
    track(app, MIX, "mx-x")
    assert (
        client.post(f"/api/v1/tasks/{MIX}/mx-x/actions/explode", headers=headers).status_code == 404
    )
    # Mixpeek has no retry.
    answer = client.post(f"/api/v1/tasks/{MIX}/mx-x/actions/retry", headers=headers)
    assert answer.status_code == 404 and "no “retry” action" in answer.json["error"]


# -- bulk ------------------------------------------------------------------------------------------


def test_bulk_cancel_confirms_the_counts_then_lists_each_result(
    app: Flask, driver: RefreshDriver, suite: SimulatorSuite, clock: ManualClock
) -> None:
    states(suite, "mixpeek").add("mx-b", MIX_PHASES)
    conductor = states(suite, "conductor")
    conductor_sim.add_demo_task(conductor, random.Random(9), task_id="c-b", running_seconds=60)
    # Running when fetched; its workflow completes before the cancel is confirmed.
    conductor_sim.add_demo_task(conductor, random.Random(7), task_id="c-r", running_seconds=8)
    local_task(states(suite, "opensearch-ml"), "dep-b")
    clock.advance(5)
    seen(app, driver, MIX, "mx-b")
    seen(app, driver, COND, "c-b", "c-r")
    seen(app, driver, ML, "dep-b")
    with app.app_context():
        ids = {
            t.task_id: str(t.id)
            for t in map(store.get_task, (MIX, COND, COND, ML), ("mx-b", "c-b", "c-r", "dep-b"))
            if t
        }
    client = app.test_client()
    listing = soup(client.get("/?view=all"))
    assert listing.select_one("select[name=action][form=bulk-untrack]") is not None
    token = csrf(client)
    form = {"csrf_token": token, "action": "cancel", "task": list(ids.values()), "next": "/"}

    confirm = client.post("/tasks/actions", data=form)

    assert confirm.status_code == 200
    page = soup(confirm)
    assert page.select_one("[data-count=ready]").get_text() == "3"
    assert page.select_one("[data-count=skipped]").get_text() == "1"
    assert "dep-b" in page.select_one(".bulk-skipped").get_text()
    assert states(suite, "mixpeek").calls["delete"] == 0  # nothing done before confirming
    clock.advance(10)  # c-r's workflow has completed upstream: Conductor refuses (409)
    # The confirmation's own form, sent as a person would (the skipped task ticked too).
    done = client.post("/tasks/actions", data={**form, "confirmed": "1"})
    results = {li["data-task"]: li["data-outcome"] for li in soup(done).select(".bulk-results li")}
    assert results == {
        f"{MIX}/mx-b": "done",
        f"{COND}/c-b": "done",
        f"{COND}/c-r": "refused",
        f"{ML}/dep-b": "unavailable",
    }
    refusal = soup(done).select_one(f".bulk-results li[data-task='{COND}/c-r']").get_text()
    assert "refused upstream" in refusal and "Cannot terminate a COMPLETED workflow" in refusal
    assert sorted(t for _, t, _ in audited(app)) == sorted(
        [f"{MIX}/mx-b", f"{COND}/c-b", f"{COND}/c-r", f"{ML}/dep-b"]
    )
    assert recorded(app, COND, "c-r") == [("cancel", "anonymous", "refused")]


def test_the_openapi_document_has_the_action_path(app: Flask) -> None:
    document = app.test_client().get("/api/v1/openapi.json").json
    path = document["paths"]["/api/v1/tasks/{source}/{task_id}/actions/{action}"]
    assert set(path["post"]["responses"]) >= {"200", "404", "409", "502"}
    task = document["components"]["schemas"]["TaskOut"]
    assert task["properties"]["actions"]["items"]["enum"] == ["cancel", "delete", "retry"]
