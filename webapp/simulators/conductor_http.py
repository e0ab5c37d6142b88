"""Conductor's HTTP system task on the simulator, as the demo uses it: a task whose request
started a job on another upstream, with that upstream's answer as its output.

Conductor's ``HttpTask`` keeps the request in ``inputData.http_request`` and what came back in
``outputData.response`` (``statusCode``, ``reasonPhrase``, ``headers``, ``body``): a task's
``outputData`` is free-form, and this is what a real HTTP task leaves there.
"""

from __future__ import annotations

from typing import Any

from webapp.simulators.conductor import PROVIDER
from webapp.simulators.conductor import uuid_like
from webapp.simulators.core import SimTask
from webapp.simulators.core import SimulatorState

__all__ = ["PROVIDER", "add_launching_task"]


def add_launching_task(
    state: SimulatorState,
    rng: Any,
    *,
    method: str,
    uri: str,
    answer: dict[str, Any],
    running_seconds: float = 1.0,
) -> SimTask:
    """An HTTP task that called ``method uri`` and got ``answer`` (an API that answers with a
    job's id, ``{"task_id": …}``, leaves that id in the task's output)."""
    serial = int(state.next_id(""))
    fields: dict[str, Any] = {
        "taskType": "HTTP",
        "taskDefName": "start_ml_job",
        "referenceTaskName": "start_ml_job_ref",
        "workflowType": "ml_pipeline",
        "workflowInstanceId": uuid_like(rng, serial),
        "workerId": "conductor-server",
        "seq": 1,
        "inputData": {"http_request": {"method": method, "uri": uri}},
        "outputData": {
            "response": {
                "statusCode": 200,
                "reasonPhrase": "OK",
                "headers": {"content-type": ["application/json; charset=UTF-8"]},
                "body": answer,
            }
        },
    }
    return state.add(
        uuid_like(rng, serial),
        [("SCHEDULED", 0.5), ("IN_PROGRESS", running_seconds), ("COMPLETED", None)],
        fields=fields,
    )
