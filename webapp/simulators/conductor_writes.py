"""Conductor's write endpoints on the simulator (PROVIDERS.md part 3), as conductor-oss does them.

- ``DELETE /api/workflow/{workflowId}?reason=…`` (``WorkflowResource.terminate``,
  ``WorkflowExecutorOps.terminateWorkflow``): an unknown workflow is 404 "No such workflow found
  by id: …"; a COMPLETED one is 409 "Cannot terminate a COMPLETED workflow."; any other, even
  one already FAILED or TERMINATED, becomes TERMINATED with the reason, and its tasks not yet
  terminal become CANCELED. 200 with an empty body.
- ``POST /api/workflow/{workflowId}/retry`` (``WorkflowExecutorOps.retry``): 404 "Workflow is
  still running.  status=RUNNING" (a NotFoundException, two spaces and all) while it runs; 409
  "There are no retryable tasks! …" when no task's last attempt ended FAILED,
  FAILED_WITH_TERMINAL_ERROR, TIMED_OUT or CANCELED. Otherwise each such task gets a new attempt
  (new id, ``retryCount`` + 1, ``retriedTaskId``; the old one ``retried``), SCHEDULED now; the
  workflow runs again. 204, as the 2.x clients expect.
- ``POST /api/tasks/{taskId}/log`` (``TaskResource.log``): the raw body is the message (a
  String ``@RequestBody``: JSON quotes a client sends stay in it); stored for any id, known or
  not, as the log index does; 200 with an empty body. A missing body is Spring's
  HttpMessageNotReadableException, which the exception mapper turns into a 500.

The simulator has no workflow store: a workflow is the tasks sharing a ``workflowInstanceId``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from flask import Flask
from flask import Response
from flask import request

from webapp.simulators.core import Phase
from webapp.simulators.core import SimTask
from webapp.simulators.core import SimulatorState
from webapp.simulators.core import simulated

TERMINAL = frozenset(
    {
        "COMPLETED",
        "COMPLETED_WITH_ERRORS",
        "FAILED",
        "FAILED_WITH_TERMINAL_ERROR",
        "TIMED_OUT",
        "CANCELED",
        "SKIPPED",
    }
)
#: ``Task.Status.isSuccessful()``.
SUCCESSFUL = frozenset({"COMPLETED", "COMPLETED_WITH_ERRORS", "SKIPPED"})
#: The statuses ``WorkflowExecutorOps.retry`` reschedules (the last attempt of a reference name).
RETRIABLE = frozenset({"FAILED", "FAILED_WITH_TERMINAL_ERROR", "TIMED_OUT", "CANCELED"})
NO_RETRYABLE_TASKS = (
    "There are no retryable tasks! Use restart if you want to attempt entire workflow "
    "execution again."
)
MISSING_BODY = (
    "Required request body is missing: public void com.netflix.conductor.rest.controllers."
    "TaskResource.log(java.lang.String,java.lang.String)"
)
#: Seconds a retried attempt waits, then runs, when the first attempt's phases do not say.
RETRY_QUEUED_SECONDS = 1.0
RETRY_RUNNING_SECONDS = 5.0

ErrorAnswer = Callable[[int, str], Response]


def workflow_of(task: SimTask) -> str:
    """The task's ``workflowInstanceId`` (a stable made-up one when the task has none)."""
    source = task.fixed_payload if task.fixed_payload is not None else task.fields
    value = source.get("workflowInstanceId")
    return value if isinstance(value, str) else str(uuid.uuid5(uuid.NAMESPACE_URL, task.task_id))


def status_of(task: SimTask, now: float) -> str:
    if task.fixed_payload is not None:
        return str(task.fixed_payload.get("status"))
    return task.status(now)


class Workflows:
    """The workflows the simulator's tasks make up, what was done to them, and posted logs."""

    def __init__(self, state: SimulatorState) -> None:
        self.state = state
        #: Workflow id -> status set by a write (TERMINATED); derived from its tasks otherwise.
        self.status_set: dict[str, str] = {}
        self.reasons: dict[str, str | None] = {}
        self.logs: dict[str, list[tuple[float, str]]] = {}

    def tasks(self, workflow_id: str) -> list[SimTask]:
        """The workflow's tasks in ``seq`` order, as ``workflow.getTasks()`` lists them."""
        found = [t for t in self.state.visible_tasks() if workflow_of(t) == workflow_id]
        return sorted(found, key=lambda t: (_field(t, "seq", 0), t.started_at))

    def status(self, workflow_id: str, tasks: list[SimTask], now: float) -> str:
        if workflow_id in self.status_set:
            return self.status_set[workflow_id]
        latest = [status_of(t, now) for t in tasks if not t.fields.get("retried")]
        if any(word not in TERMINAL for word in latest):
            return "RUNNING"
        if all(word in SUCCESSFUL for word in latest):
            return "COMPLETED"
        return "TIMED_OUT" if "TIMED_OUT" in latest else "FAILED"

    def terminate(self, workflow_id: str, reason: str | None, error: ErrorAnswer) -> Response:
        now = self.state.clock.now()
        with self.state.lock:
            tasks = self.tasks(workflow_id)
            if not tasks:
                return error(404, f"No such workflow found by id: {workflow_id}")
            if self.status(workflow_id, tasks, now) == "COMPLETED":
                return error(409, "Cannot terminate a COMPLETED workflow.")
            for task in tasks:
                if status_of(task, now) not in TERMINAL:
                    _end_now(task, now, "CANCELED")
            self.status_set[workflow_id] = "TERMINATED"
            self.reasons[workflow_id] = reason
        return Response(status=200)

    def retry(self, workflow_id: str, error: ErrorAnswer) -> Response:
        now = self.state.clock.now()
        with self.state.lock:
            tasks = self.tasks(workflow_id)
            if not tasks:
                return error(404, f"No such workflow found by id: {workflow_id}")
            status = self.status(workflow_id, tasks, now)
            if status not in ("COMPLETED", "FAILED", "TIMED_OUT", "TERMINATED"):
                return error(404, f"Workflow is still running.  status={status}")
            retriable: dict[str, SimTask] = {}
            for task in tasks:
                name = str(_field(task, "referenceTaskName", task.task_id))
                if status_of(task, now) in RETRIABLE:
                    retriable[name] = task
                else:
                    retriable.pop(name, None)
            if not retriable and status != "TIMED_OUT":
                return error(409, NO_RETRYABLE_TASKS)
            self.status_set.pop(workflow_id, None)
            self.reasons.pop(workflow_id, None)
            seq = max(int(_field(t, "seq", 0)) for t in tasks)
            for position, task in enumerate(retriable.values(), start=1):
                self._new_attempt(task, seq + position)
        return Response(status=204)

    def _new_attempt(self, task: SimTask, seq: int) -> SimTask:
        """``taskToBeRescheduled``: a copy with a new id, SCHEDULED, one more retry."""
        source = task.fixed_payload if task.fixed_payload is not None else task.fields
        fields = {k: v for k, v in source.items() if k not in _NOT_COPIED}
        fields.update(
            retryCount=int(source.get("retryCount", 0)) + 1,
            retriedTaskId=task.task_id,
            seq=seq,
            workflowInstanceId=workflow_of(task),
        )
        task.fields["retried"] = True
        waits = {phase.status: phase.seconds for phase in task.phases}
        return self.state.add(
            str(uuid.uuid4()),
            [
                ("SCHEDULED", waits.get("SCHEDULED") or RETRY_QUEUED_SECONDS),
                ("IN_PROGRESS", waits.get("IN_PROGRESS") or RETRY_RUNNING_SECONDS),
                ("COMPLETED", None),
            ],
            fields=fields,
        )

    def add_log(self, task_id: str, message: str) -> None:
        with self.state.lock:
            self.logs.setdefault(task_id, []).append((self.state.clock.now(), message))

    def posted_logs(self, task_id: str) -> list[tuple[float, str]]:
        with self.state.lock:
            return list(self.logs.get(task_id, []))


#: What a new attempt does not inherit (``taskToBeRescheduled`` resets them; the rest are the
#: fixed payload's rendered fields, which the simulator recomputes).
_NOT_COPIED = frozenset(
    {
        "taskId",
        "status",
        "reasonForIncompletion",
        "retried",
        "retriedTaskId",
        "scheduledTime",
        "startTime",
        "endTime",
        "updateTime",
        "pollCount",
        "executed",
        "queueWaitTime",
        "firstStartTime",
    }
)


def _field(task: SimTask, name: str, default: Any) -> Any:
    source = task.fixed_payload if task.fixed_payload is not None else task.fields
    return source.get(name, default)


def _end_now(task: SimTask, now: float, word: str) -> None:
    """The task stops where it is and holds ``word`` from ``now`` on."""
    if task.fixed_payload is not None:
        task.fixed_payload["status"] = word
        task.fixed_payload["endTime"] = int(round(now * 1000))
        task.phases = [Phase(word)]
        return
    index, began = task.progress(now)
    current = task.phases[index]
    task.phases = [*task.phases[:index], Phase(current.status, now - began), Phase(word)]
    # cancelNonTerminalTasks sets no reason: whatever the task would have failed with is moot.
    task.fields.pop("reasonForIncompletion", None)


def register_writes(app: Flask, workflows: Workflows, error: ErrorAnswer) -> None:
    """Mount the write routes on the Conductor simulator ``app``; ``error`` writes Conductor's
    ErrorResponse."""

    def workflow_scope(**view_args: Any) -> list[str]:
        # A fault set for one of the workflow's tasks hits a write to its workflow too.
        workflow_id = view_args["workflow_id"]
        return [workflow_id, *(t.task_id for t in workflows.tasks(workflow_id))]

    @app.delete("/api/workflow/<workflow_id>")
    @simulated("terminate", scope=workflow_scope)
    def terminate_workflow(workflow_id: str) -> Response:
        return workflows.terminate(workflow_id, request.args.get("reason"), error)

    @app.post("/api/workflow/<workflow_id>/retry")
    @simulated("retry", scope=workflow_scope)
    def retry_workflow(workflow_id: str) -> Response:
        return workflows.retry(workflow_id, error)

    @app.post("/api/tasks/<path:task_id>/log")
    @simulated("add_log")
    def add_task_log(task_id: str) -> Response:
        message = request.get_data(as_text=True)
        if not message:
            return error(500, MISSING_BODY)
        workflows.add_log(task_id, message)
        return Response(status=200)
