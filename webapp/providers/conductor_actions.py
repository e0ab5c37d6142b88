"""Conductor's actions on a task (PROVIDERS.md part 3): they act on the task's workflow.

- ``cancel``: terminate the workflow with a reason, ``DELETE /api/workflow/{workflowId}?reason=…``
  (its tasks not yet finished become CANCELED; a COMPLETED workflow is refused with 409);
- ``retry``: ``POST /api/workflow/{workflowId}/retry`` reschedules the workflow's last failed
  tasks (refused while the workflow still runs, or with nothing to retry);
- after either, a line on the task's own log, ``POST /api/tasks/{taskId}/log`` (the body is the
  message as plain text), says who asked, from Taskdeck, and what Conductor answered, so people
  reading the execution in Conductor's UI see it.
"""

from __future__ import annotations

from collections.abc import Mapping

from webapp.domain import FetchError
from webapp.providers.base import ActionResult
from webapp.providers.base import Provider
from webapp.providers.base import answer_message
from webapp.providers.base import quote_segment
from webapp.providers.spec import ActionSpec

ACTIONS = (
    ActionSpec(
        "cancel",
        "Cancel",
        "Conductor terminates the task's whole workflow: its unfinished tasks are cancelled.",
        states=("queued", "running"),
    ),
    ActionSpec(
        "retry",
        "Retry",
        "Conductor retries the workflow's last failed tasks, as new attempts.",
        upstream=("FAILED", "FAILED_WITH_TERMINAL_ERROR", "TIMED_OUT", "CANCELED"),
    ),
)
#: Where the workflow endpoints are, beside ``/api/tasks``.
WORKFLOW_PREFIX = "/api/workflow"


class ConductorActions(Provider):
    """The Conductor provider's :meth:`act` (a base class, to keep the client module short)."""

    def act(
        self, action: ActionSpec, task_id: str, *, links: Mapping[str, str], actor: str
    ) -> ActionResult:
        workflow_id = links.get("workflowInstanceId")
        if not workflow_id:
            return ActionResult("refused", "the task names no workflow to act on")
        path = f"{WORKFLOW_PREFIX}/{quote_segment(workflow_id)}"
        if action.name == "cancel":
            reason = f"Terminated from Taskdeck by {actor}"
            response = self.request("DELETE", path, params={"reason": reason})
        elif action.name == "retry":
            response = self.request("POST", path + "/retry")
        else:
            return ActionResult("refused", f"{self.label} has no {action.name} action")
        result = self.action_answer(action, response)
        what = "terminate the workflow" if action.name == "cancel" else "retry the workflow"
        line = f"Taskdeck: {actor} asked to {what} ({action.name}): {result.outcome}"
        if result.outcome == "refused":
            line += f" ({result.message})"
        return ActionResult(result.outcome, result.message + self._log(task_id, line))

    def _log(self, task_id: str, line: str) -> str:
        """Write ``line`` on the task's log; what to add to the action's message if it failed
        (the action itself stands either way)."""
        try:
            response = self.request(
                "POST",
                self.api_path(task_id, "log"),
                content=line.encode(),
                headers={"Content-Type": "text/plain"},
            )
        except FetchError as exc:
            return f" (the line on the task's log was not written: {exc.message})"
        if not response.is_success:
            said = answer_message(response) or f"HTTP {response.status_code}"
            return f" (the line on the task's log was not written: {said})"
        return ""
