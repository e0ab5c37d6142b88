"""The OpenSearch ML Commons simulator's write endpoints over loopback HTTP: delete a task
(``DeleteTaskTransportAction``) and cancel a remote model's batch job
(``CancelBatchJobTransportAction``), each allowed and refused case in the real error envelope,
with the auth check, counting and faults of the shared prologue."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

import httpx
import pytest

from webapp.simulators import SIMULATORS
from webapp.simulators import SimulatorSuite
from webapp.simulators import opensearch_ml_remote as remote
from webapp.simulators.core import Fault
from webapp.simulators.core import ManualClock
from webapp.simulators.core import SimulatorState
from webapp.simulators.opensearch_ml import NO_BATCH_JOB
from webapp.simulators.opensearch_ml import RUNNING_NOT_DELETED
from webapp.simulators.opensearch_ml import add_remote_batch_task
from webapp.simulators.server import ServerThread

ML = SIMULATORS["opensearch-ml"]
LOGIN = (ML.DEMO_CREDENTIALS["username"], ML.DEMO_CREDENTIALS["password"])
TASKS = "/_plugins/_ml/tasks"


@pytest.fixture
def state(suite: SimulatorSuite) -> SimulatorState:
    return suite.states["opensearch-ml"]


@pytest.fixture
def http(sim_server: ServerThread, suite: SimulatorSuite) -> Iterator[httpx.Client]:
    root = suite.base_url(sim_server.url, "opensearch-ml")
    with httpx.Client(base_url=root, auth=LOGIN, timeout=10) as client:
        yield client


def envelope(answer: httpx.Response) -> tuple[int, str, str]:
    body = answer.json()
    assert body["status"] == answer.status_code
    assert body["error"]["root_cause"] == [
        {"type": body["error"]["type"], "reason": body["error"]["reason"]}
    ]
    return answer.status_code, body["error"]["type"], body["error"]["reason"]


def local_task(state: SimulatorState, task_id: str) -> str:
    phases: list[tuple[str, float | None]] = [("CREATED", 2), ("RUNNING", 10), ("COMPLETED", None)]
    state.add(task_id, phases, fields={"task_type": "DEPLOY_MODEL", "model_id": "m-1"})
    return task_id


def batch(state: SimulatorState, service: str, final: str = "succeeded") -> str:
    task = add_remote_batch_task(
        state,
        random.Random(5),
        task_id=f"{service}-{final}",
        service=service,
        final=final,
        queued_seconds=5,
        running_seconds=100,
    )
    return task.task_id


def stats(http: httpx.Client) -> dict[str, int]:
    calls: dict[str, int] = http.get("/_control/stats").json()["calls"]
    return calls


# -- delete --------------------------------------------------------------------------------------


def test_a_running_task_cannot_be_deleted_a_created_or_finished_one_can(
    state: SimulatorState, http: httpx.Client, clock: ManualClock
) -> None:
    local_task(state, "deploy-1")
    local_task(state, "deploy-2")
    # CREATED is not RUNNING: it may go.
    deleted = http.delete(f"{TASKS}/deploy-1")
    assert deleted.status_code == 200
    assert deleted.json() == {
        "_index": ".plugins-ml-task",
        "_id": "deploy-1",
        "_version": 2,
        "result": "deleted",
        "_shards": {"total": 2, "successful": 2, "failed": 0},
        "_seq_no": deleted.json()["_seq_no"],
        "_primary_term": 1,
    }
    assert http.get(f"{TASKS}/deploy-1").status_code == 404
    clock.advance(5)
    # A plain Exception in the transport action: the REST layer's 500 of type "exception".
    refused = http.delete(f"{TASKS}/deploy-2")
    assert envelope(refused) == (500, "exception", RUNNING_NOT_DELETED)
    assert http.get(f"{TASKS}/deploy-2").json()["state"] == "RUNNING"
    clock.advance(60)
    assert http.delete(f"{TASKS}/deploy-2").json()["result"] == "deleted"
    # Gone for a search too, and a second delete finds nothing.
    body = {"query": {"ids": {"values": ["deploy-2"]}}}
    assert http.post(f"{TASKS}/_search", json=body).json()["hits"]["hits"] == []
    assert envelope(http.delete(f"{TASKS}/deploy-2")) == (
        404,
        "status_exception",
        "Failed to find task",
    )


def test_a_remote_batch_task_is_refused_while_its_stored_state_is_running(
    state: SimulatorState, http: httpx.Client, clock: ManualClock
) -> None:
    task_id = batch(state, "sagemaker")
    clock.advance(30)
    assert envelope(http.delete(f"{TASKS}/{task_id}"))[0] == 500
    # The job ends at the service at 105 s; the minutely update job last asked at 60 s, so the
    # stored task is still RUNNING...
    clock.advance(80)
    assert envelope(http.delete(f"{TASKS}/{task_id}"))[0] == 500
    # ...until a GET (or the minutely update job) writes the service's answer back.
    assert http.get(f"{TASKS}/{task_id}").json()["state"] == "COMPLETED"
    assert http.delete(f"{TASKS}/{task_id}").status_code == 200


# -- cancel --------------------------------------------------------------------------------------


@pytest.mark.parametrize("service", remote.SERVICES)
def test_cancelling_stops_the_remote_job(
    service: str, state: SimulatorState, http: httpx.Client, clock: ManualClock
) -> None:
    task_id = batch(state, service)
    clock.advance(10)
    answer = http.post(f"{TASKS}/{task_id}/_cancel")
    assert (answer.status_code, answer.json()) == (200, {"status": "OK"})
    # ML Commons writes nothing itself: a search still finds the task RUNNING...
    body = {"query": {"ids": {"values": [task_id]}}}
    hits = http.post(f"{TASKS}/_search", json=body).json()["hits"]["hits"]
    assert hits[0]["_source"]["state"] == "RUNNING"
    # ...a GET reads the service's stopping word, and later its stopped one.
    field = "TransformJobStatus" if service == "sagemaker" else "status"
    stopping = http.get(f"{TASKS}/{task_id}").json()
    assert stopping["state"] == "CANCELLING"
    assert stopping["remote_job"][field] == remote.WORDS[service]["CANCELLING"]
    # Asked again while it stops, the service takes it again.
    assert http.post(f"{TASKS}/{task_id}/_cancel").json() == {"status": "OK"}
    clock.advance(remote.STOP_SECONDS)
    stopped = http.get(f"{TASKS}/{task_id}").json()
    assert stopped["state"] == "CANCELLED"
    assert stopped["remote_job"][field] == remote.WORDS[service]["CANCELLED"]
    if service == "sagemaker":
        # Stopping is not the end: the end time comes with Stopped.
        assert "TransformEndTime" not in stopping["remote_job"]
        assert "TransformEndTime" in stopped["remote_job"]
    if service == "openai":
        job = stopped["remote_job"]
        assert job["cancelled_at"] - job["cancelling_at"] == remote.STOP_SECONDS
    # A stopped job cannot be stopped again: the service's 400, passed on by ML Commons.
    status, kind, reason = envelope(http.post(f"{TASKS}/{task_id}/_cancel"))
    assert (status, kind) == (400, "status_exception")
    assert reason.startswith("Error from remote service: ")
    json.loads(reason.removeprefix("Error from remote service: "))
    # Cancelled is not RUNNING: the task may be deleted now.
    assert http.delete(f"{TASKS}/{task_id}").status_code == 200


def test_a_finished_job_is_refused_by_the_service(
    state: SimulatorState, http: httpx.Client, clock: ManualClock
) -> None:
    task_id = batch(state, "openai")
    clock.advance(200)
    status, kind, reason = envelope(http.post(f"{TASKS}/{task_id}/_cancel"))
    assert (status, kind) == (400, "status_exception")
    error = json.loads(reason.removeprefix("Error from remote service: "))
    assert error["error"]["message"] == "Cannot cancel a batch with status 'completed'."
    # The refusal changed nothing: the job completed.
    assert http.get(f"{TASKS}/{task_id}").json()["state"] == "COMPLETED"


def test_only_a_remote_batch_prediction_has_a_job_to_cancel(
    state: SimulatorState, http: httpx.Client
) -> None:
    local_task(state, "deploy-3")
    running: list[tuple[str, float | None]] = [("RUNNING", None)]
    state.add(
        "local-batch",
        running,
        fields={"task_type": "BATCH_PREDICTION", "function_name": "TEXT_EMBEDDING"},
    )
    for task_id in ("deploy-3", "local-batch"):
        refused = http.post(f"{TASKS}/{task_id}/_cancel")
        assert envelope(refused) == (400, "illegal_argument_exception", NO_BATCH_JOB)
    unknown = http.post(f"{TASKS}/no-such-task/_cancel")
    assert envelope(unknown) == (404, "status_exception", "Fail to find task")


# -- the prologue --------------------------------------------------------------------------------


def test_writes_need_a_login_and_are_counted_and_faulted(
    state: SimulatorState, http: httpx.Client, clock: ManualClock
) -> None:
    task_id = batch(state, "bedrock")
    local_task(state, "deploy-4")
    before = stats(http)
    anonymous = httpx.post(f"{http.base_url}{TASKS.lstrip('/')}/{task_id}/_cancel")
    assert anonymous.status_code == 401 and anonymous.text == "Unauthorized"
    state.set_fault(Fault.SERVER_ERROR, task_id=task_id, times=1)
    assert http.post(f"{TASKS}/{task_id}/_cancel").status_code == 500
    assert http.post(f"{TASKS}/{task_id}/_cancel").json() == {"status": "OK"}
    state.set_fault(Fault.RATE_LIMITED, task_id="deploy-4", times=1, seconds=2)
    limited = http.delete(f"{TASKS}/deploy-4")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "2"
    assert http.delete(f"{TASKS}/deploy-4").status_code == 200
    after = stats(http)
    for kind, count in (("cancel", 2), ("delete", 2)):
        assert after.get(kind, 0) == before.get(kind, 0) + count, kind
    # The faulted cancel changed nothing: the second one did the stopping.
    clock.advance(1)
    assert http.get(f"{TASKS}/{task_id}").json()["state"] == "CANCELLING"
