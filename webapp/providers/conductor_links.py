"""What links a Conductor task to other tasks (webapp.links): the ids its payload names, and
the other tasks of its workflow (PROVIDERS.md 3.1-3.3).

A worker or HTTP task that started work elsewhere keeps the answer in its output (an HTTP task's
under ``response.body``): its ``task_id`` is an ML Commons or a Mixpeek task, its ``batch_id`` a
Mixpeek batch (a group: Mixpeek serves no task under a batch's id).

``GET /api/tasks/search-v2`` with ``query=workflowId = '…'`` answers the workflow's tasks as full
``Task`` documents, which (unlike search summaries) carry ``retriedTaskId``: a workflow retry
schedules a new attempt under a new id whose ``retriedTaskId`` is the failed one, so the page
can say which sibling is the retry. (The workflow API would list the same tasks, but a
Taskdeck source is only known to reach the task endpoints.)
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from webapp.domain import FetchError
from webapp.domain import FetchErrorKind
from webapp.domain import Sibling
from webapp.providers.base import MAX_SIBLINGS
from webapp.providers.payload import Id
from webapp.providers.payload import Payload
from webapp.providers.spec import PayloadLink

_IN_OUT = ("inputData", "outputData")
PAYLOAD_LINKS = (
    PayloadLink("task_id", ("opensearch-ml", "mixpeek"), within=_IN_OUT),
    PayloadLink("batch_id", ("mixpeek",), relation="launched batch", within=_IN_OUT, group=True),
)

#: Characters a workflow id may not hold to be written inside the query's quotes (Conductor's
#: parser has no escapes that the index reads back the same).
_UNQUOTABLE = frozenset("'\"\\")


class Attempt(Payload):
    """The fields of one search-v2 result that tell a retry from its failed attempt."""

    taskId: Id = None
    retriedTaskId: Id = None


def workflow_search(workflow_id: str) -> dict[str, Any] | None:
    """The search-v2 parameters listing the workflow's tasks; ``None`` for an id that cannot
    be quoted in Conductor's query."""
    if not workflow_id or _UNQUOTABLE & set(workflow_id) or len(workflow_id) > 200:
        return None
    return {
        "start": 0,
        # One more than kept: the task itself is among them.
        "size": MAX_SIBLINGS + 1,
        "sort": "scheduledTime:ASC",
        "freeText": "*",
        "query": f"workflowId = '{workflow_id}'",
    }


def workflow_siblings(task_id: str, answer: Any) -> list[Sibling]:
    """The workflow's other tasks in a search-v2 ``answer`` (``{totalHits, results}`` of task
    documents), each named ``retry`` (a new attempt of this task), ``earlier attempt`` (the one
    this task retries) or ``same workflow``. Results that are not task documents are left out.
    """
    results = answer.get("results") if isinstance(answer, dict) else None
    if not isinstance(results, list):
        raise FetchError(FetchErrorKind.BAD_PAYLOAD, "search answer is not a SearchResult")
    attempts = []
    for item in results:
        try:
            attempt = Attempt.model_validate(item)
        except ValidationError:
            continue
        if attempt.taskId is not None:
            attempts.append(attempt)
    own = next((a for a in attempts if a.taskId == task_id), None)
    retries = own.retriedTaskId if own is not None else None
    siblings = []
    for attempt in attempts:
        other = attempt.taskId
        if other is None or other == task_id:
            continue
        if attempt.retriedTaskId == task_id:
            relation = "retry"
        elif other == retries:
            relation = "earlier attempt"
        else:
            relation = "same workflow"
        siblings.append(Sibling(other, relation))
    return siblings[:MAX_SIBLINGS]
