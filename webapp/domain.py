"""Taskdeck's own vocabulary: normalized states and their groups, the normalized task, and
fetch errors carried as data. Everything else (providers, the cache, the pages) speaks it.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from enum import StrEnum
from typing import Any


class TaskState(StrEnum):
    """Taskdeck's normalized states (PROVIDERS.md part 1)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    EXPIRED = "expired"
    UNKNOWN = "unknown"


ACTIVE_STATES = frozenset({TaskState.QUEUED, TaskState.RUNNING})
FINISHED_STATES = frozenset(
    {
        TaskState.SUCCEEDED,
        TaskState.PARTIAL,
        TaskState.FAILED,
        TaskState.CANCELLED,
        TaskState.SKIPPED,
        TaskState.EXPIRED,
    }
)
PROBLEM_STATES = frozenset({TaskState.FAILED, TaskState.PARTIAL, TaskState.EXPIRED})


class FetchErrorKind(StrEnum):
    """Why a fetch failed (PROVIDERS.md, "Not found, and other fetch failures")."""

    NOT_FOUND = "not_found"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    RATE_LIMITED = "rate_limited"
    UPSTREAM_ERROR = "upstream_error"
    TIMEOUT = "timeout"
    NETWORK = "network"
    BAD_PAYLOAD = "bad_payload"


class FetchError(Exception):
    """An upstream failure, carried as data. Never contains a credential.

    ``raw`` holds the payload when the upstream answered with something we could not read
    (``bad_payload``), so it can be stored and shown as it came.
    """

    def __init__(
        self,
        kind: FetchErrorKind,
        message: str,
        *,
        status_code: int | None = None,
        retry_after: float | None = None,
        raw: Any = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status_code = status_code
        self.retry_after = retry_after
        self.raw = raw

    def __str__(self) -> str:
        return self.message

    def describe(self) -> str:
        """One line for pages and logs: kind, HTTP status where there was one, message."""
        status = f" (HTTP {self.status_code})" if self.status_code else ""
        return f"{self.kind.value}{status}: {self.message}"


@dataclass
class NormalizedTask:
    """One upstream task in Taskdeck's model (DESIGN.md, "Normalized task")."""

    task_id: str
    state: TaskState
    upstream_status: str | None
    terminal: bool
    raw: Any
    task_type: str | None = None
    name: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    links: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Sibling:
    """A task the upstream lists beside another (the same model's, the same workflow's), and
    how the two relate in words for the page (``same model``, ``retry``)."""

    task_id: str
    relation: str


@dataclass
class SearchPage:
    """One page of an upstream search: tasks, and a total where the upstream gives one."""

    tasks: list[NormalizedTask]
    total: int | None = None
    #: The oldest creation time among what the request read, where it read more than
    #: ``tasks`` (a filter applied here): how far back a newest-first walk has got.
    read_back_to: datetime | None = field(default=None, kw_only=True)
