"""The JSON the API returns, as pydantic models: the normalized task (DESIGN.md, "Normalized
task"), a page of tasks with its paging links, and errors. ``/api/v1/openapi.json`` is generated
from these same models (:mod:`webapp.web.openapi`), so the document cannot drift from the answers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from typing import Literal

from flask import url_for
from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field

from webapp.actions import available
from webapp.db.models import Task
from webapp.domain import FetchErrorKind
from webapp.domain import TaskState
from webapp.links.family import link_rows


class HistoryEntry(BaseModel):
    """One change of state, as the refresher saw it."""

    at: datetime
    state: TaskState
    upstream_status: str | None


class LinkedTaskOut(BaseModel):
    """Another upstream task this one leads to or comes from (README, Linked tasks)."""

    model_config = ConfigDict(title="LinkedTask")

    relation: str = Field(description="How the two relate: launched, launched by, same model...")
    task_id: str = Field(description="The other task's upstream id (a batch's id for a batch).")
    source: str | None = Field(description="The source it was found on; null until resolved.")
    status: Literal["pending", "found", "not_found", "ambiguous"] = Field(
        description="pending: not looked up yet; not_found: on no configured source; "
        "ambiguous: on more than one."
    )
    found_in: str | None = Field(description="Where it was named (outputData.task_id...).")
    state: TaskState | None = Field(description="The other task's state when it is tracked.")


class TaskOut(BaseModel):
    """The normalized task object."""

    model_config = ConfigDict(title="Task")

    source: str = Field(description="The configured source (upstream account) it belongs to.")
    provider: str = Field(description="Which upstream platform the source is.")
    task_id: str = Field(description="The upstream's own id.")
    state: TaskState = Field(description="Taskdeck's normalized state.")
    upstream_status: str | None = Field(description="The upstream's own status word, unchanged.")
    terminal: bool
    task_type: str | None
    name: str | None
    created_at: datetime | None
    updated_at: datetime | None
    finished_at: datetime | None
    error: str | None
    links: dict[str, str] = Field(description="Related ids and URLs; `self` is the task's page.")
    details: dict[str, Any] = Field(description="Provider-specific fields worth showing.")
    raw: Any = Field(description="The last upstream payload, as it came.")
    last_fetched_at: datetime | None
    fetch_error: str | None = Field(description="The last failure to fetch, or null.")
    fetch_error_kind: FetchErrorKind | None
    gone_upstream: bool
    overdue: bool = Field(
        default=False, description="Active and running past its bound (README, Overdue tasks)."
    )
    overdue_reason: str | None = Field(default=None, description="Why it is overdue, in words.")
    history: list[HistoryEntry] | None = Field(
        default=None, description="State changes, oldest first (on a single task only)."
    )
    actions: list[Literal["cancel", "delete", "retry"]] = Field(
        default_factory=list,
        description="The upstream actions the task allows now (POST …/actions/<action>).",
    )
    linked: list[LinkedTaskOut] | None = Field(
        default=None,
        description="Tasks it leads to or comes from (on a single task only; `links` is "
        "something else: its own related ids and URLs).",
    )


class TaskPageOut(BaseModel):
    """One page of the task list, with the same filters, search, sort and paging as ``/``."""

    model_config = ConfigDict(title="TaskPage")

    tasks: list[TaskOut]
    total: int = Field(description="Tasks in the view (a lower bound unless total_exact).")
    total_exact: bool
    next: str | None = Field(description="The next page's URL, or null on the last page.")
    prev: str | None = Field(description="The previous page's URL, or null on the first page.")


class ActionOut(BaseModel):
    """The answer to an upstream action: how it went, and the task as it is now."""

    model_config = ConfigDict(title="ActionResult")

    action: str
    outcome: Literal["done", "refused", "failed", "unavailable"] = Field(
        description="done: the upstream accepted it; refused: the upstream said no; "
        "failed: the upstream could not be reached or failed; unavailable: not in this state."
    )
    message: str = Field(description="What the upstream said, or why nothing was sent.")
    task: TaskOut


class ErrorOut(BaseModel):
    """Any error answer of the API."""

    model_config = ConfigDict(title="Error")

    error: str
    status: int


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def task_out(task: Task, *, with_history: bool = True) -> TaskOut:
    """The normalized task object of a cached task."""
    # Stored links are strings by construction; the coercion keeps a hostile payload that slipped
    # through from breaking the documented type.
    links = {key: str(value) for key, value in (task.links or {}).items() if value is not None}
    links["self"] = url_for(
        "tasks.detail", source=task.source, task_id=task.task_id, _external=True
    )
    return TaskOut(
        source=task.source,
        provider=task.provider,
        task_id=task.task_id,
        state=TaskState(task.state),
        upstream_status=task.upstream_status,
        terminal=task.terminal,
        task_type=task.task_type,
        name=task.name,
        created_at=task.created_at,
        updated_at=task.updated_at,
        finished_at=task.finished_at,
        error=task.error,
        links=links,
        details=task.details or {},
        raw=task.raw,
        last_fetched_at=task.last_fetched_at,
        fetch_error=task.fetch_error,
        fetch_error_kind=FetchErrorKind(task.fetch_error_kind) if task.fetch_error_kind else None,
        gone_upstream=task.gone_upstream,
        overdue=task.overdue,
        overdue_reason=task.overdue_reason,
        history=[
            HistoryEntry(at=e.at, state=TaskState(e.state), upstream_status=e.upstream_status)
            for e in task.events
        ]
        if with_history
        else None,
        actions=[action.name for action in available(task)],
        linked=[
            LinkedTaskOut(
                relation=row.relation,
                task_id=row.task_id,
                source=row.source,
                status=row.status,  # type: ignore[arg-type]
                found_in=row.found_in,
                state=TaskState(row.tracked.state) if row.tracked is not None else None,
            )
            for row in link_rows(task)
        ]
        if with_history
        else None,
    )


def task_json(task: Task, *, with_history: bool = True) -> dict[str, Any]:
    """The normalized task object as JSON-ready data (no ``history`` key without history)."""
    return task_out(task, with_history=with_history).model_dump(
        mode="json",
        exclude_none=False,
        exclude={"history", "linked"} if not with_history else None,
    )
