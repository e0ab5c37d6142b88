"""Remote batch-prediction tasks in the OpenSearch ML Commons simulator, over loopback HTTP:
``remote_job`` holds the remote service's own job object, a GET is what asks the service and
moves the stored task, and ML Commons' minutely update job does the same when nobody asks."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from webapp.simulators import SIMULATORS
from webapp.simulators import SimulatorSuite
from webapp.simulators import opensearch_ml_remote as remote
from webapp.simulators.core import ManualClock
from webapp.simulators.core import SimulatorState
from webapp.simulators.opensearch_ml import add_remote_batch_task
from webapp.simulators.server import ServerThread

ML = SIMULATORS["opensearch-ml"]
LOGIN = (ML.DEMO_CREDENTIALS["username"], ML.DEMO_CREDENTIALS["password"])


class Cluster:
    def __init__(self, root: str) -> None:
        self.http = httpx.Client(base_url=root, auth=LOGIN, timeout=10)

    def get(self, task_id: str) -> dict[str, Any]:
        answer = self.http.get(f"/_plugins/_ml/tasks/{task_id}")
        assert answer.status_code == 200, answer.text
        return answer.json()

    def indexed(self, task_id: str) -> dict[str, Any]:
        """The task as a search finds it (the stored document, asking no remote service)."""
        body = {"query": {"ids": {"values": [task_id]}}}
        hits = self.http.post("/_plugins/_ml/tasks/_search", json=body).json()["hits"]["hits"]
        return hits[0]["_source"]


@pytest.fixture
def state(suite: SimulatorSuite) -> SimulatorState:
    return suite.states["opensearch-ml"]


@pytest.fixture
def cluster(sim_server: ServerThread, suite: SimulatorSuite) -> Iterator[Cluster]:
    cluster = Cluster(suite.base_url(sim_server.url, "opensearch-ml"))
    yield cluster
    cluster.http.close()


def batch(state: SimulatorState, service: str, final: str = "succeeded") -> str:
    task = add_remote_batch_task(
        state,
        random.Random(3),
        task_id=f"{service}-{final}",
        service=service,
        final=final,
        queued_seconds=5,
        running_seconds=20,
    )
    return task.task_id


CREATED = {
    "sagemaker": {"TransformJobArn", "dlq"},
    "bedrock": {"jobArn", "dlq"},
    "openai": {"id", "object", "status", "input_file_id", "request_counts", "created_at", "dlq"},
}
WORDS = {
    "sagemaker": ("TransformJobStatus", "InProgress", "InProgress", "Completed"),
    "bedrock": ("status", "Submitted", "InProgress", "Completed"),
    "openai": ("status", "validating", "in_progress", "completed"),
}


@pytest.mark.parametrize("service", remote.SERVICES)
def test_a_remote_batch_task_carries_the_services_job_and_moves_on_get(
    cluster: Cluster, state: SimulatorState, clock: ManualClock, service: str
) -> None:
    task_id = batch(state, service)
    created = cluster.indexed(task_id)
    assert (created["task_type"], created["function_name"]) == ("BATCH_PREDICTION", "REMOTE")
    assert (created["state"], created["input_type"], created["is_async"]) == (
        "RUNNING",
        "REMOTE",
        False,
    )
    assert created["model_id"] and "task_id" not in created
    assert CREATED[service] <= set(created["remote_job"])
    assert created["remote_job"]["dlq"] is None
    status_field, queued, running, done = WORDS[service]

    clock.advance(2)
    first = cluster.get(task_id)
    assert first["remote_job"][status_field] == queued and first["state"] == "RUNNING"
    assert first["last_update_time"] == int(clock.now() * 1000)

    clock.advance(10)
    assert cluster.get(task_id)["remote_job"][status_field] == running

    clock.advance(20)  # the job is done on the service's side...
    stale = cluster.indexed(task_id)
    assert stale["state"] == "RUNNING" and stale["remote_job"][status_field] == running
    fresh = cluster.get(task_id)  # ...and the GET is what finds out and writes it back
    assert fresh["state"] == "COMPLETED" and fresh["remote_job"][status_field] == done
    assert fresh["last_update_time"] == int(clock.now() * 1000)
    assert cluster.indexed(task_id) == fresh
    # Every GET asks the service again and rewrites the task.
    clock.advance(1)
    assert cluster.get(task_id)["last_update_time"] == int(clock.now() * 1000)


def test_service_specific_fields_as_the_job_progresses(
    cluster: Cluster, state: SimulatorState, clock: ManualClock
) -> None:
    openai, sagemaker = batch(state, "openai"), batch(state, "sagemaker", final="failed")
    clock.advance(30)
    job = cluster.get(openai)["remote_job"]
    assert job["id"].startswith("batch_") and job["object"] == "batch"
    assert job["completed_at"] and job["output_file_id"].startswith("file-")
    assert job["request_counts"]["completed"] == job["request_counts"]["total"] > 0
    failed = cluster.get(sagemaker)
    assert failed["state"] == "FAILED" and "error" not in failed
    assert failed["remote_job"]["FailureReason"]
    assert failed["remote_job"]["TransformJobArn"].endswith(
        "transform-job/" + failed["remote_job"]["TransformJobName"]
    )
    assert failed["remote_job"]["TransformEndTime"] > failed["remote_job"]["CreationTime"]


@pytest.mark.parametrize(
    ("service", "final", "word", "state_word"),
    [
        ("openai", "cancelled", "cancelled", "CANCELLED"),
        ("openai", "expired", "expired", "EXPIRED"),
        ("bedrock", "expired", "Expired", "EXPIRED"),
        ("bedrock", "failed", "Failed", "FAILED"),
        ("sagemaker", "cancelled", "Stopped", "CANCELLED"),
    ],
)
def test_final_words_map_by_the_default_status_regexes(
    cluster: Cluster,
    state: SimulatorState,
    clock: ManualClock,
    service: str,
    final: str,
    word: str,
    state_word: str,
) -> None:
    task_id = batch(state, service, final)
    clock.advance(40)
    task = cluster.get(task_id)
    assert task["state"] == state_word
    assert word in task["remote_job"].values()


def test_the_minutely_update_job_moves_tasks_nobody_asks_about(
    cluster: Cluster, state: SimulatorState, clock: ManualClock
) -> None:
    task_id = batch(state, "bedrock")
    clock.advance(59)
    assert cluster.indexed(task_id)["state"] == "RUNNING"
    clock.advance(1)  # the BATCH_TASK_UPDATE run at one minute asks the service
    polled = cluster.indexed(task_id)
    assert polled["state"] == "COMPLETED" and polled["remote_job"]["status"] == "Completed"
    assert polled["last_update_time"] == int(clock.now() * 1000)
    clock.advance(300)  # finished tasks are not polled any more
    assert cluster.indexed(task_id) == polled


@pytest.mark.parametrize(
    ("word", "before", "after"),
    [
        ("PartiallyCompleted", "RUNNING", "COMPLETED"),
        ("Completed", "RUNNING", "COMPLETED"),
        ("Stopping", "RUNNING", "CANCELLING"),
        ("cancelling", "RUNNING", "CANCELLING"),
        ("Stopped", "CANCELLING", "CANCELLED"),
        ("expired", "RUNNING", "EXPIRED"),
        ("failed", "RUNNING", "FAILED"),
        ("finalizing", "RUNNING", "RUNNING"),
        ("InProgress", "RUNNING", "RUNNING"),
        ("Validating", "RUNNING", "RUNNING"),
    ],
)
def test_status_word_to_state(word: str, before: str, after: str) -> None:
    assert remote.state_for({"status": word}, before) == after


def test_demo_batch_predictions_are_remote_jobs(state: SimulatorState) -> None:
    made = [ML.add_demo_task(state, random.Random(seed)) for seed in range(40)]
    batches = [t for t in made if t.fields["task_type"] == "BATCH_PREDICTION"]
    assert batches and all(isinstance(t.fields["remote"], remote.RemoteJob) for t in batches)
    partial = [ML.add_demo_task(state, random.Random(s), final="partial") for s in range(40)]
    # No remote service ends COMPLETED_WITH_ERROR: those are never batch predictions.
    assert all(t.fields["task_type"] != "BATCH_PREDICTION" for t in partial)
    with pytest.raises(ValueError, match="never end EXPIRED"):
        add_remote_batch_task(state, random.Random(1), service="sagemaker", final="expired")
