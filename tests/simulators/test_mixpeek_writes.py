"""Mixpeek's one write, ``DELETE /v1/tasks/{task_id}`` ("Kill Task"), over real loopback HTTP.

The SDK (``TasksApi.kill_task``): "Kill a task (idempotent - succeeds even if task doesn't
exist or is already killed)", answering ``GenericDeleteResponse``. A killed task says
``CANCELED`` (``TaskStatusEnum``) and never moves again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from webapp.simulators import SimulatorSuite
from webapp.simulators import mixpeek as sim
from webapp.simulators.core import Fault
from webapp.simulators.core import ManualClock
from webapp.simulators.core import SimulatorState
from webapp.simulators.server import ServerThread

KEY = sim.DEMO_CREDENTIALS["api_key"]
KILLED = {"message": "Successfully deleted", "success": True}
#: Waits, runs, then ends: the phases a kill can interrupt.
PHASES = [("QUEUED", 10.0), ("PROCESSING", 10.0), ("COMPLETED_WITH_ERRORS", None)]


def connect(root: str, key: str | None = KEY) -> httpx.Client:
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    return httpx.Client(base_url=SimulatorSuite.base_url(root, "mixpeek"), headers=headers)


@pytest.fixture
def state(suite: SimulatorSuite) -> SimulatorState:
    return suite.states["mixpeek"]


@pytest.fixture
def http(sim_server: ServerThread) -> Iterator[httpx.Client]:
    with connect(sim_server.url) as client:
        yield client


def status_of(http: httpx.Client, task_id: str) -> str:
    answer = http.get(f"/v1/tasks/{task_id}")
    assert answer.status_code == 200, answer.text
    status: str = answer.json()["status"]
    return status


@pytest.mark.parametrize(("elapsed", "before"), [(0.0, "QUEUED"), (15.0, "PROCESSING")])
def test_kill_cancels_an_active_task_and_it_stops_there(
    http: httpx.Client, state: SimulatorState, clock: ManualClock, elapsed: float, before: str
) -> None:
    state.add("task_live", PHASES)
    clock.advance(elapsed)
    assert status_of(http, "task_live") == before

    answer = http.delete("/v1/tasks/task_live")

    assert (answer.status_code, answer.json()) == (200, KILLED)
    document = http.get("/v1/tasks/task_live").json()
    assert document["status"] == "CANCELED"
    # No longer waiting: no place in the queue.
    assert (document["queue_position"], document["estimated_wait_minutes"]) == (None, None)
    clock.advance(1_000)
    assert status_of(http, "task_live") == "CANCELED"
    listed = http.post(
        "/v1/tasks/list",
        json={"filters": {"AND": [{"field": "task_id", "operator": "eq", "value": "task_live"}]}},
    ).json()["results"]
    assert [task["status"] for task in listed] == ["CANCELED"]


@pytest.mark.parametrize("final", ["COMPLETED", "FAILED", "CANCELED", "SKIPPED"])
def test_kill_leaves_a_finished_task_as_it_ended(
    http: httpx.Client, state: SimulatorState, clock: ManualClock, final: str
) -> None:
    state.add("task_done", [("PROCESSING", 5.0), (final, None)])
    clock.advance(6)

    answer = http.delete("/v1/tasks/task_done")

    assert (answer.status_code, answer.json()) == (200, KILLED)
    assert status_of(http, "task_done") == final


def test_kill_is_idempotent_for_a_killed_or_unknown_task(
    http: httpx.Client, state: SimulatorState, clock: ManualClock
) -> None:
    state.add("task_twice", PHASES)
    first = http.delete("/v1/tasks/task_twice")
    clock.advance(3)
    again = http.delete("/v1/tasks/task_twice")
    unknown = http.delete("/v1/tasks/task_never_was")

    for answer in (first, again, unknown):
        assert (answer.status_code, answer.json()) == (200, KILLED)
    assert status_of(http, "task_twice") == "CANCELED"
    # The unknown id was not created by the kill.
    assert http.get("/v1/tasks/task_never_was").status_code == 404
    assert state.calls["delete"] == 3


def test_kill_of_a_seed_example_in_progress(http: httpx.Client, state: SimulatorState) -> None:
    sim.load_seed_tasks(state)
    assert http.delete("/v1/tasks/task_abc123def456").json() == KILLED
    document = http.get("/v1/tasks/task_abc123def456").json()
    assert document["status"] == "CANCELED"
    # The rest of the example stays as written; the FAILED one is already over.
    assert document["additional_data"] == sim.seed_examples()["get_example"]["additional_data"]
    assert http.delete("/v1/tasks/task_abc123").json() == KILLED
    assert status_of(http, "task_abc123") == "FAILED"


@pytest.mark.parametrize("key", [None, "sk_wrong"])
def test_kill_needs_the_key(
    sim_server: ServerThread, state: SimulatorState, key: str | None
) -> None:
    state.add("task_kept", PHASES)
    with connect(sim_server.url, key) as client:
        answer = client.delete("/v1/tasks/task_kept")
    assert answer.status_code == 401
    assert answer.json()["error"]["type"] == "UnauthorizedError"
    assert state.get("task_kept") is not None
    assert state.get("task_kept").status(state.clock.now()) == "QUEUED"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("fault", "status"),
    [(Fault.SERVER_ERROR, 500), (Fault.RATE_LIMITED, 429), (Fault.UNAUTHORIZED, 401)],
)
def test_a_fault_answers_instead_of_the_kill(
    http: httpx.Client, state: SimulatorState, fault: Fault, status: int
) -> None:
    state.add("task_faulty", PHASES)
    state.add("task_other", PHASES)
    state.set_fault(fault, task_id="task_faulty", times=1)

    assert http.delete("/v1/tasks/task_other").json() == KILLED
    refused = http.delete("/v1/tasks/task_faulty")

    assert refused.status_code == status
    assert refused.json()["success"] is False
    # The fault stood in for the kill: the task runs on until a clean DELETE.
    assert status_of(http, "task_faulty") == "QUEUED"
    assert http.delete("/v1/tasks/task_faulty").json() == KILLED
    assert status_of(http, "task_faulty") == "CANCELED"
    assert state.calls["delete"] == 3


def test_kills_take_tokens_from_the_key_bucket(clock: ManualClock) -> None:
    credentials: dict[str, Any] = {**sim.DEMO_CREDENTIALS, "rate_limit": 2, "rate_window": 60.0}
    suite = SimulatorSuite(clock=clock, credentials={"mixpeek": credentials})
    state = suite.states["mixpeek"]
    state.add("task_limited", PHASES)
    with ServerThread(suite.wsgi_app()) as server, connect(server.url) as http:
        read = http.get("/v1/tasks/task_limited")
        kill = http.delete("/v1/tasks/task_limited")
        limited = http.delete("/v1/tasks/task_limited")
    assert read.headers["X-RateLimit-Remaining"] == "1"
    assert (kill.status_code, kill.headers["X-RateLimit-Remaining"]) == (200, "0")
    assert limited.status_code == 429
    assert limited.json()["error"]["type"] == "TooManyRequestsError"
    assert int(limited.headers["Retry-After"]) > 0
    # Refused by the bucket before the route: not a counted kill.
    assert state.calls["delete"] == 1
