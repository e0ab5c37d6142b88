"""NCLUE's ``--query`` (and ``follow``): NCLUE has no server-side search, so a query is a
filter applied here to the listed tasks."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from datetime import UTC
from datetime import datetime

from webapp.domain import NormalizedTask

QUERY_KEYS = ("status", "state", "name", "id")


def task_filter(query: str | None) -> Callable[[NormalizedTask], bool]:
    """``--query`` for NCLUE, which has no server-side search: a client-side filter.

    Space-separated terms, all of which must match: ``status:failed`` (the upstream word or
    the normalized state), ``state:succeeded``, ``name:churn`` (substring of the task name),
    ``id:f5ae`` (substring of the id), or a bare word (substring of the name or the id);
    ``*`` matches every task.
    """
    if not query or not query.strip() or query.strip() == "*":
        return lambda task: True
    try:
        tokens = shlex.split(query)
    except ValueError:
        tokens = query.split()
    checks: list[Callable[[NormalizedTask], bool]] = []
    for token in tokens:
        key, sep, value = token.partition(":")
        if not sep:
            key, value = "", token
        key, value = key.lower(), value.lower()
        if key and key not in QUERY_KEYS:
            raise ValueError(
                f"--query: NCLUE has no server-side search; unknown term {key!r} "
                f"(use {', '.join(k + ':' for k in QUERY_KEYS)} or a bare word)"
            )
        checks.append(_term_check(key, value))
    return lambda task: all(check(task) for check in checks)


def _term_check(key: str, value: str) -> Callable[[NormalizedTask], bool]:
    def name_of(task: NormalizedTask) -> str:
        return (task.name or "").lower()

    if key == "status":
        return lambda t: (t.upstream_status or "").lower() == value or t.state.value == value
    if key == "state":
        return lambda t: t.state.value == value
    if key == "name":
        return lambda t: value in name_of(t)
    if key == "id":
        return lambda t: value in t.task_id.lower()
    return lambda t: value in name_of(t) or value in t.task_id.lower()


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def oldest_first(tasks: list[NormalizedTask]) -> bool:
    """Whether a page of the list runs from older to newer tasks (its order is undocumented)."""
    times = [task.created_at for task in tasks if task.created_at is not None]
    return len(times) >= 2 and times[0] < times[-1]


def newest_key(task: NormalizedTask) -> datetime:
    """Sort key for newest first; a task without a creation time goes last."""
    return task.created_at or _EPOCH
