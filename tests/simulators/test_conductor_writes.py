"""The Conductor simulator's write endpoints over loopback HTTP: terminate a workflow, retry its
failed tasks, post to a task's log; each allowed and refused case as conductor-oss answers it,
with the auth check, counting and faults of the shared prologue."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from webapp.simulators import SIMULATORS
from webapp.simulators import SimulatorSuite
from webapp.simulators import conductor as sim
from webapp.simulators.conductor_writes import NO_RETRYABLE_TASKS
from webapp.simulators.core import Fault
from webapp.simulators.core import ManualClock
from webapp.simulators.core import SimTask
from webapp.simulators.core import SimulatorState
from webapp.simulators.server import ServerThread

KEYS = SIMULATORS["conductor"].DEMO_CREDENTIALS


class Server:
    """An Orkes-style client: a token from ``/api/token`` on every request."""

    def __init__(self, root: str) -> None:
        self.http = httpx.Client(base_url=root, timeout=10)
        answer = self.http.post(
            "/api/token", json={"keyId": KEYS["key_id"], "keySecret": KEYS["key_secret"]}
        )
        self.http.headers["X-Authorization"] = answer.json()["token"]

    def task(self, task_id: str) -> dict[str, Any]:
        answer = self.http.get(f"/api/tasks/{task_id}")
        assert answer.status_code == 200, answer.text
        return answer.json()

    def calls(self) -> dict[str, int]:
        return self.http.get("/_control/stats").json()["calls"]


@pytest.fixture
def state(suite: SimulatorSuite) -> SimulatorState:
    return suite.states["conductor"]


@pytest.fixture
def server(sim_server: ServerThread, suite: SimulatorSuite) -> Iterator[Server]:
    server = Server(suite.base_url(sim_server.url, "conductor"))
    yield server
    server.http.close()


def demo(state: SimulatorState, final: str, task_id: str) -> SimTask:
    return sim.add_demo_task(
        state, random.Random(7), task_id=task_id, final=final, running_seconds=10
    )


def workflow(task: SimTask) -> str:
    return str(task.fields["workflowInstanceId"])


def error(answer: httpx.Response) -> tuple[int, str, bool]:
    body = answer.json()
    assert body["status"] == answer.status_code and body["instance"] == sim.INSTANCE
    return answer.status_code, body["message"], body["retryable"]


# -- terminate -----------------------------------------------------------------------------------


def test_terminating_cancels_the_running_tasks_and_ends_the_workflow(
    state: SimulatorState, server: Server, clock: ManualClock
) -> None:
    task = demo(state, "succeeded", "running-1")
    clock.advance(5)
    answer = server.http.delete(f"/api/workflow/{workflow(task)}", params={"reason": "by hand"})
    assert (answer.status_code, answer.content) == (200, b"")
    ended = server.task("running-1")
    assert ended["status"] == "CANCELED"
    assert ended["endTime"] == int(clock.now() * 1000) and ended["executed"] is True
    # It stays canceled: the phases it would have gone through are gone.
    clock.advance(60)
    assert server.task("running-1")["status"] == "CANCELED"
    assert server.http.get("/api/tasks/running-1/log").json()[-1]["log"] == "Task CANCELED"


def test_a_completed_workflow_cannot_be_terminated_but_a_failed_one_can(
    state: SimulatorState, server: Server, clock: ManualClock
) -> None:
    done = demo(state, "succeeded", "done-1")
    failed = demo(state, "failed", "failed-1")
    clock.advance(60)
    refused = server.http.delete(f"/api/workflow/{workflow(done)}")
    assert error(refused) == (409, "Cannot terminate a COMPLETED workflow.", False)
    # A failed workflow becomes TERMINATED; its task keeps the status it ended with.
    assert server.http.delete(f"/api/workflow/{workflow(failed)}").status_code == 200
    assert server.task("failed-1")["status"] == "FAILED"


def test_an_unknown_workflow_is_not_found(server: Server) -> None:
    for answer in (
        server.http.delete("/api/workflow/no-such-workflow"),
        server.http.post("/api/workflow/no-such-workflow/retry"),
    ):
        assert error(answer) == (404, "No such workflow found by id: no-such-workflow", False)


# -- retry ---------------------------------------------------------------------------------------


def test_retry_schedules_a_new_attempt_of_the_failed_task(
    state: SimulatorState, server: Server, clock: ManualClock
) -> None:
    failed = demo(state, "failed", "failed-2")
    clock.advance(60)
    answer = server.http.post(f"/api/workflow/{workflow(failed)}/retry")
    assert (answer.status_code, answer.content) == (204, b"")
    attempts = [t for t in state.visible_tasks() if t.fields.get("retriedTaskId") == "failed-2"]
    assert len(attempts) == 1
    new = server.task(attempts[0].task_id)
    assert new["status"] == "SCHEDULED" and new["retryCount"] == 1
    assert new["retriedTaskId"] == "failed-2" and new["workflowInstanceId"] == workflow(failed)
    assert new["startTime"] == 0 and "reasonForIncompletion" not in new
    old = server.task("failed-2")
    assert old["retried"] is True and old["status"] == "FAILED"
    # The new attempt runs; while it does, the workflow is running again and cannot be retried.
    clock.advance(5)
    assert server.task(new["taskId"])["status"] == "IN_PROGRESS"
    running = server.http.post(f"/api/workflow/{workflow(failed)}/retry")
    assert error(running) == (404, "Workflow is still running.  status=RUNNING", False)
    clock.advance(60)
    assert server.task(new["taskId"])["status"] == "COMPLETED"
    # Everything's last attempt succeeded: nothing left to retry, and nothing to terminate.
    nothing = server.http.post(f"/api/workflow/{workflow(failed)}/retry")
    assert error(nothing) == (409, NO_RETRYABLE_TASKS, False)
    completed = server.http.delete(f"/api/workflow/{workflow(failed)}")
    assert completed.status_code == 409


def test_a_terminated_workflow_retries_its_canceled_task(
    state: SimulatorState, server: Server, clock: ManualClock
) -> None:
    task = demo(state, "succeeded", "running-2")
    clock.advance(5)
    assert server.http.post(f"/api/workflow/{workflow(task)}/retry").status_code == 404
    assert server.http.delete(f"/api/workflow/{workflow(task)}").status_code == 200
    assert server.http.post(f"/api/workflow/{workflow(task)}/retry").status_code == 204
    assert [t.status(clock.now()) for t in state.visible_tasks() if t.task_id != "running-2"] == [
        "SCHEDULED"
    ]


def test_a_successful_workflow_has_nothing_to_retry(
    state: SimulatorState, server: Server, clock: ManualClock
) -> None:
    done = demo(state, "succeeded", "done-2")
    clock.advance(60)
    answer = server.http.post(f"/api/workflow/{workflow(done)}/retry")
    assert error(answer) == (409, NO_RETRYABLE_TASKS, False)


# -- the task log --------------------------------------------------------------------------------


def test_a_posted_log_line_joins_the_tasks_log(
    state: SimulatorState, server: Server, clock: ManualClock
) -> None:
    demo(state, "succeeded", "logged-1")
    clock.advance(4)
    answer = server.http.post(
        "/api/tasks/logged-1/log",
        content=b"checked by hand",
        headers={"Content-Type": "text/plain"},
    )
    assert (answer.status_code, answer.content) == (200, b"")
    clock.advance(60)
    lines = [
        (e["log"], e["createdTime"]) for e in server.http.get("/api/tasks/logged-1/log").json()
    ]
    posted = ("checked by hand", int((clock.now() - 60) * 1000))
    # In time order among the lines the task wrote itself.
    assert posted in lines and lines == sorted(lines, key=lambda line: line[1])
    assert lines[-1][0] == "Task COMPLETED"


def test_a_json_client_posts_its_message_with_the_quotes(server: Server) -> None:
    # The message is a String @RequestBody: a JSON-encoded string keeps its quotes, and the log
    # index takes an entry for any id, known or not.
    assert server.http.post("/api/tasks/nobody/log", json="hello").status_code == 200
    entries = server.http.get("/api/tasks/nobody/log").json()
    assert [(e["log"], e["taskId"]) for e in entries] == [('"hello"', "nobody")]


def test_a_log_post_without_a_body_is_a_server_error(server: Server) -> None:
    status, message, retryable = error(server.http.post("/api/tasks/nobody/log"))
    assert (status, retryable) == (500, False)
    assert message.startswith("Required request body is missing")


# -- the prologue --------------------------------------------------------------------------------


def test_writes_need_a_token_and_are_counted_and_faulted(
    state: SimulatorState, server: Server, clock: ManualClock
) -> None:
    task = demo(state, "failed", "faulted-1")
    clock.advance(60)
    before = server.calls()
    anonymous = httpx.post(f"{server.http.base_url}api/workflow/{workflow(task)}/retry")
    assert anonymous.status_code == 401
    # A fault set for the task hits a write to its workflow too.
    state.set_fault(Fault.SERVER_ERROR, task_id="faulted-1", times=1)
    assert server.http.post(f"/api/workflow/{workflow(task)}/retry").status_code == 500
    assert server.http.post(f"/api/workflow/{workflow(task)}/retry").status_code == 204
    state.set_fault(Fault.RATE_LIMITED, times=1, seconds=3)
    limited = server.http.post("/api/tasks/faulted-1/log", content=b"x")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "3"
    state.set_fault(Fault.UNAUTHORIZED, times=1)
    assert server.http.delete(f"/api/workflow/{workflow(task)}").status_code == 401
    after = server.calls()
    for kind, count in (("retry", 2), ("add_log", 1), ("terminate", 1)):
        assert after.get(kind, 0) == before.get(kind, 0) + count, kind
    # The anonymous request was turned away before the route: counted as refused, not retry.
    assert after["refused"] == before.get("refused", 0) + 1
