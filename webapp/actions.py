"""Upstream actions on tracked tasks (cancel, delete, retry): which a task allows now, and taking
one for the current principal.

Which actions exist, and in which states, is each provider's :class:`ActionSpec` declaration;
the request is its client's :meth:`~webapp.providers.base.Provider.act`. This module adds what
every action shares: the check against the cached state, the record in ``task_actions`` (the
task's history), the audit line, and a forced refresh so the page shows the upstream's new
state within a refresher pass. The caller commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import sqlalchemy as sa

from webapp.access import audit
from webapp.db.models import Task
from webapp.db.models import TaskAction
from webapp.db.models import db
from webapp.db.models import utcnow
from webapp.domain import FetchError
from webapp.providers import find_provider_spec
from webapp.providers.spec import ACTION_NAMES
from webapp.providers.spec import ActionSpec
from webapp.sources.registry import registry

Outcome = Literal["done", "refused", "failed", "unavailable"]
#: How the history and the messages word each outcome.
OUTCOME_WORDS: dict[str, str] = {
    "done": "accepted upstream",
    "refused": "refused upstream",
    "failed": "failed",
    "unavailable": "not available in the task's state",
}


class UnknownAction(LookupError):
    """The action name is none of ``cancel``, ``delete``, ``retry``, or the task's upstream has
    no such action."""


@dataclass(frozen=True)
class Attempt:
    """One action tried on one task, and how it went."""

    task: Task
    action: str
    outcome: Outcome
    message: str

    @property
    def succeeded(self) -> bool:
        return self.outcome == "done"


def declared(task: Task) -> tuple[ActionSpec, ...]:
    """Every action the task's upstream has, whatever the task's state."""
    spec = find_provider_spec(task.provider)
    return spec.actions if spec is not None else ()


def available(task: Task) -> list[ActionSpec]:
    """The actions the upstream allows on the task now, as last fetched. None for a task gone
    upstream, never seen yet, or whose source has left the configuration."""
    if task.gone_upstream or task.first_seen_at is None or task.source not in registry():
        return []
    return [
        action
        for action in declared(task)
        if action.allows(task.state, task.upstream_status, task.task_type, task.details)
    ]


def available_names(task: Task) -> list[str]:
    return [action.name for action in available(task)]


def find(task: Task, name: str) -> ActionSpec:
    """The task's upstream's action ``name``; :class:`UnknownAction` if it has none."""
    if name not in ACTION_NAMES:
        raise UnknownAction(f"There is no action “{name}”: actions are {', '.join(ACTION_NAMES)}.")
    for action in declared(task):
        if action.name == name:
            return action
    raise UnknownAction(f"{task.source} ({task.provider}) has no “{name}” action.")


def perform(task: Task, name: str, actor: str) -> Attempt:
    """Take action ``name`` on ``task`` for ``actor`` (raises :class:`UnknownAction`).

    An action the task does not allow now is not sent upstream (``unavailable``). Every other
    attempt is written to the task's history; every attempt, to the audit log. Not committed.
    """
    action = find(task, name)
    if action not in available(task):
        attempt = Attempt(task, name, "unavailable", _unavailable_message(task, action))
    else:
        attempt = _send(task, action, actor)
        db.session.add(
            TaskAction(
                task_pk=task.id,
                at=utcnow(),
                action=name,
                actor=actor[:120],
                outcome=attempt.outcome,
                message=attempt.message,
            )
        )
        refresh_soon(task)
        if attempt.outcome == "done":
            # An action can make new tasks upstream (a retry's new attempt, under a new id):
            # look for the task's links again (webapp.links reads changed tasks).
            task.links_checked_at = None
            task.changed_at = utcnow()
    audit.record(
        "task.action",
        audit.task_target(task.source, task.task_id),
        action=name,
        outcome=attempt.outcome,
        message=attempt.message,
    )
    return attempt


def _send(task: Task, action: ActionSpec, actor: str) -> Attempt:
    provider = registry().provider(task.source)
    links = {str(k): str(v) for k, v in (task.links or {}).items() if v is not None}
    try:
        result = provider.act(action, task.task_id, links=links, actor=actor)
    except FetchError as exc:
        return Attempt(task, action.name, "failed", exc.describe())
    return Attempt(task, action.name, result.outcome, result.message)


def _unavailable_message(task: Task, action: ActionSpec) -> str:
    if task.gone_upstream:
        return f"{task.task_id} is gone upstream: there is nothing to {action.name}."
    word = task.upstream_status or task.state
    return f"{action.label} is not available while {task.task_id} is {word}."


def refresh_soon(task: Task) -> None:
    """Have the refresher fetch the task on its next pass (as "Refresh now" does); after the
    commit, :func:`webapp.refresher.background.wake_background` starts
    that pass at once."""
    task.next_poll_at = utcnow()
    task.unchanged_polls = 0


#: Built once: the task page and its status poll read it on every answer.
_HISTORY = (
    sa.select(TaskAction)
    .where(TaskAction.task_pk == sa.bindparam("task_pk"))
    .order_by(TaskAction.id)
)


def history(task: Task) -> list[TaskAction]:
    """The actions asked for on the task, oldest first."""
    return list(db.session.scalars(_HISTORY, {"task_pk": task.id}))
