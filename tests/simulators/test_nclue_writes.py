"""NCLUE's one write, ``DELETE /api/v1/tasks/{task_id}``, over real loopback HTTP with signed
requests (``nclue-deletetask``; PROVIDERS.md part 3).

Allowed in ``registered``, ``completed`` and ``failed`` (200 ``{"task_id": ...}``, the task is
gone); refused in ``pending`` and ``in_progress`` (400 ``{"message": ...}``, [unverified]
shape). Writes pass the gateway's signature check and count against its 1 request/s.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from webapp.providers.nclue_gateway import NcpSignatureV2
from webapp.simulators import SimulatorSuite
from webapp.simulators import nclue as sim
from webapp.simulators.core import Fault
from webapp.simulators.core import ManualClock
from webapp.simulators.core import SimulatorState
from webapp.simulators.server import ServerThread

KEYS = sim.DEMO_CREDENTIALS
#: registered 2 s, pending 3 s, in_progress 10 s, then the final word.
PHASES: list[tuple[str, float | None]] = [
    ("registered", 2.0),
    ("pending", 3.0),
    ("in_progress", 10.0),
    ("completed", None),
]
#: Seconds after the start at which the task is in each state.
AT = {"registered": 0.0, "pending": 3.0, "in_progress": 8.0, "completed": 20.0}


def signed(root: str) -> httpx.Client:
    auth = NcpSignatureV2(KEYS["access_key"], KEYS["secret_key"])
    return httpx.Client(base_url=SimulatorSuite.base_url(root, "nclue"), auth=auth)


@pytest.fixture
def state(suite: SimulatorSuite) -> SimulatorState:
    return suite.states["nclue"]


@pytest.fixture
def http(sim_server: ServerThread) -> Iterator[httpx.Client]:
    with signed(sim_server.url) as client:
        yield client


def listed_ids(http: httpx.Client) -> list[str]:
    return [task["task_id"] for task in http.get("/api/v1/tasks?limit=100").json()["tasks"]]


@pytest.mark.parametrize(
    ("phases", "elapsed", "word"),
    [
        (PHASES, AT["registered"], "registered"),
        (PHASES, AT["completed"], "completed"),
        ([*PHASES[:3], ("failed", None)], AT["completed"], "failed"),
        # The create-task docs' spelling, which the simulator accepts as completed.
        ([*PHASES[:3], ("complete", None)], AT["completed"], "complete"),
    ],
)
def test_delete_is_allowed_once_registered_or_finished(
    http: httpx.Client,
    state: SimulatorState,
    clock: ManualClock,
    phases: list[tuple[str, float | None]],
    elapsed: float,
    word: str,
) -> None:
    state.add("t-kept", PHASES)
    state.add("t-1", phases)
    clock.advance(elapsed)
    assert http.get("/api/v1/tasks/t-1").json()["status"] == word

    answer = http.delete("/api/v1/tasks/t-1")

    assert (answer.status_code, answer.json()) == (200, {"task_id": "t-1"})
    gone = http.get("/api/v1/tasks/t-1")
    assert (gone.status_code, gone.json()) == (404, {"message": "TASK_NOT_FOUND"})
    assert listed_ids(http) == ["t-kept"]
    # Deleted is deleted: a second DELETE finds nothing, like any unknown id.
    again = http.delete("/api/v1/tasks/t-1")
    assert (again.status_code, again.json()) == (404, {"message": "TASK_NOT_FOUND"})
    assert state.calls["delete"] == 2


@pytest.mark.parametrize("word", ["pending", "in_progress"])
def test_delete_is_refused_while_the_task_is_built(
    http: httpx.Client, state: SimulatorState, clock: ManualClock, word: str
) -> None:
    state.add("t-1", PHASES)
    clock.advance(AT[word])

    refused = http.delete("/api/v1/tasks/t-1")

    assert refused.status_code == 400
    assert refused.json() == {"message": f"The task cannot be deleted while it is {word}."}
    # Still there, still moving; once built it can go.
    assert http.get("/api/v1/tasks/t-1").json()["status"] == word
    assert listed_ids(http) == ["t-1"]
    clock.advance(AT["completed"])
    assert http.get("/api/v1/tasks/t-1").json()["status"] == "completed"
    assert http.delete("/api/v1/tasks/t-1").status_code == 200
    assert state.calls["delete"] == 2


def test_delete_of_an_unknown_task_is_not_found(http: httpx.Client, state: SimulatorState) -> None:
    answer = http.delete("/api/v1/tasks/no-such-task")
    assert (answer.status_code, answer.json()) == (404, {"message": "TASK_NOT_FOUND"})
    assert state.calls["delete"] == 1


def test_delete_of_the_seed_example(http: httpx.Client, state: SimulatorState) -> None:
    (seed_id,) = sim.load_seed_tasks(state)
    answer = http.delete(f"/api/v1/tasks/{seed_id}")
    assert (answer.status_code, answer.json()) == (200, {"task_id": seed_id})
    assert http.get(f"/api/v1/tasks/{seed_id}").status_code == 404


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {
            "x-ncp-apigw-timestamp": str(int(time.time() * 1000)),
            "x-ncp-iam-access-key": KEYS["access_key"],
            "x-ncp-apigw-signature-v2": "c2lnbmVkIGZvciBhIEdFVA==",
        },
    ],
    ids=["unsigned", "bad-signature"],
)
def test_delete_needs_a_good_signature(
    sim_server: ServerThread, state: SimulatorState, headers: dict[str, str]
) -> None:
    state.add("t-1", PHASES)
    base = SimulatorSuite.base_url(sim_server.url, "nclue")
    answer = httpx.delete(f"{base}/api/v1/tasks/t-1", headers=headers)
    assert answer.status_code == 401
    assert answer.json() == {"error": {"errorCode": "200", "message": "Authentication Failed"}}
    assert state.get("t-1") is not None
    # Refused at the gateway: NCLUE never saw it.
    assert state.calls["delete"] == 0


def test_the_signature_covers_the_method(sim_server: ServerThread, state: SimulatorState) -> None:
    """A GET's signature does not authorize a DELETE of the same URI."""
    state.add("t-1", PHASES)
    base = SimulatorSuite.base_url(sim_server.url, "nclue")
    timestamp = str(int(time.time() * 1000))
    uri = b"/nclue/api/v1/tasks/t-1"
    for_get = sim.expected_signature("GET", uri, timestamp, KEYS["access_key"], KEYS["secret_key"])
    headers = {
        "x-ncp-apigw-timestamp": timestamp,
        "x-ncp-iam-access-key": KEYS["access_key"],
        "x-ncp-apigw-signature-v2": for_get,
    }
    assert httpx.get(f"{base}/api/v1/tasks/t-1", headers=headers).status_code == 200
    assert httpx.delete(f"{base}/api/v1/tasks/t-1", headers=headers).status_code == 401
    assert state.get("t-1") is not None


@pytest.mark.parametrize(
    ("fault", "status"),
    [(Fault.SERVER_ERROR, 503), (Fault.RATE_LIMITED, 429), (Fault.NOT_FOUND, 404)],
)
def test_a_fault_answers_instead_of_the_delete(
    http: httpx.Client, state: SimulatorState, fault: Fault, status: int
) -> None:
    state.add("t-1", PHASES)
    state.set_fault(fault, task_id="t-1", times=1)

    faulted = http.delete("/api/v1/tasks/t-1")

    assert faulted.status_code == status
    assert set(faulted.json()) == {"error"}  # the gateway's envelope, not NCLUE's
    assert state.get("t-1") is not None
    assert http.delete("/api/v1/tasks/t-1").status_code == 200
    assert state.calls["delete"] == 2


@pytest.fixture
def throttled(clock: ManualClock) -> Iterator[tuple[httpx.Client, SimulatorState]]:
    """A simulator whose gateway lets one request a second through, as NCLUE asks."""
    credentials: dict[str, Any] = {
        **KEYS,
        "max_skew_seconds": None,
        "rate_limit_per_second": 1,
    }
    suite = SimulatorSuite(clock=clock, credentials={"nclue": credentials})
    with ServerThread(suite.wsgi_app()) as server, signed(server.url) as client:
        yield client, suite.states["nclue"]


def is_throttled(answer: httpx.Response) -> bool:
    error = {"error": {"errorCode": "420", "message": "Rate Limited"}}
    return answer.status_code == 429 and answer.json() == error


def test_writes_and_reads_share_the_one_request_a_second(
    throttled: tuple[httpx.Client, SimulatorState], clock: ManualClock
) -> None:
    http, state = throttled
    state.add("t-1", PHASES)

    assert http.get("/api/v1/tasks/t-1").status_code == 200
    assert is_throttled(http.delete("/api/v1/tasks/t-1"))
    assert state.get("t-1") is not None
    clock.advance(1.0)
    assert http.delete("/api/v1/tasks/t-1").status_code == 200
    assert is_throttled(http.get("/api/v1/tasks?limit=10"))
    clock.advance(1.0)
    assert http.get("/api/v1/tasks/t-1").status_code == 404
    assert state.calls["delete"] == 1


def test_a_refused_delete_still_spends_the_second(
    throttled: tuple[httpx.Client, SimulatorState], clock: ManualClock
) -> None:
    http, state = throttled
    state.add("t-1", PHASES)
    clock.advance(AT["pending"])

    assert http.delete("/api/v1/tasks/t-1").status_code == 400
    assert is_throttled(http.get("/api/v1/tasks/t-1"))
    assert is_throttled(http.delete("/api/v1/tasks/t-1"))
    clock.advance(1.0)
    assert http.get("/api/v1/tasks/t-1").json()["status"] == "pending"
    assert state.calls["delete"] == 1
