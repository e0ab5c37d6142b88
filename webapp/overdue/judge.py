"""Whether one active task is overdue now, and why.

In this order, the first that speaks decides:

1. an upstream's own signal, declared in its provider's spec (``overdue_signals``: a Conductor
   task SCHEDULED for long that no worker polled, an ML Commons task CREATED with no update);
2. the source's ``overdue_after`` for the task's type, when it sets one
   ("over the 15 min set for ml-prod");
3. else the bound learned from history (:mod:`webapp.overdue.history`;
   "running 3× longer than usual for DEPLOY_MODEL").

Time runs from the task's creation upstream, or from when Taskdeck started tracking it where
the upstream reports none. Only active tasks (queued, running) can be overdue.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from webapp.config import SourceConfig
from webapp.db.models import Task
from webapp.domain import ACTIVE_STATES
from webapp.overdue.history import Learned
from webapp.overdue.setting import ANY_TYPE
from webapp.overdue.setting import bound_for
from webapp.overdue.words import span
from webapp.overdue.words import times
from webapp.providers import find_provider_spec
from webapp.providers.spec import SignalFacts

ACTIVE = frozenset(state.value for state in ACTIVE_STATES)


@dataclass(frozen=True)
class Subject:
    """The fields of a task the verdict reads (a whole row, or the periodic pass's columns)."""

    source: str
    provider: str
    state: str
    terminal: bool
    upstream_status: str | None
    task_type: str | None
    created_at: datetime | None
    updated_at: datetime | None
    #: When its time started: the creation upstream, else when it was tracked (``sort_at``).
    started_at: datetime
    details: Any = None
    raw: Any = None

    @classmethod
    def of(cls, task: Task) -> Subject:
        return cls(
            source=task.source,
            provider=task.provider,
            state=task.state,
            terminal=task.terminal,
            upstream_status=task.upstream_status,
            task_type=task.task_type,
            created_at=task.created_at,
            updated_at=task.updated_at,
            started_at=task.created_at or task.sort_at,
            details=task.details,
            raw=task.raw,
        )


def wants_payload(provider: str, upstream_status: str | None) -> bool:
    """Whether a signal of ``provider`` looks at tasks with this upstream word (so the
    periodic pass reads their payloads)."""
    spec = find_provider_spec(provider)
    if spec is None or upstream_status is None:
        return False
    return any(upstream_status in signal.statuses for signal in spec.overdue_signals)


def upstream_signal(task: Subject, now: datetime) -> str | None:
    spec = find_provider_spec(task.provider)
    if spec is None:
        return None
    facts = SignalFacts(
        upstream_status=task.upstream_status,
        created_at=task.created_at,
        updated_at=task.updated_at,
        details=task.details if isinstance(task.details, dict) else {},
        raw=task.raw,
    )
    for signal in spec.overdue_signals:
        if task.upstream_status in signal.statuses:
            reason = signal.check(facts, now)
            if reason:
                return reason
    return None


def configured_reason(source: SourceConfig, task_type: str | None, limit: float) -> str:
    setting = source.overdue_after
    per_type = isinstance(setting, dict) and task_type is not None and task_type in setting
    if per_type or (isinstance(setting, dict) and ANY_TYPE not in setting):
        return f"over the {span(limit)} set for {task_type} on {source.name}"
    return f"over the {span(limit)} set for {source.name}"


def verdict(
    task: Subject, source: SourceConfig | None, learned: Learned | None, now: datetime
) -> str | None:
    """Why ``task`` is overdue at ``now``, or ``None`` when it is not."""
    if task.terminal or task.state not in ACTIVE:
        return None
    signal = upstream_signal(task, now)
    if signal is not None:
        return signal
    elapsed = (now - task.started_at).total_seconds()
    limit = bound_for(source.overdue_after, task.task_type) if source is not None else None
    if source is not None and limit is not None:
        return configured_reason(source, task.task_type, limit) if elapsed > limit else None
    if learned is None or elapsed <= learned.bound:
        return None
    kind = task.task_type or f"tasks of {task.source}"
    return f"running {times(elapsed / learned.typical)} longer than usual for {kind}"
