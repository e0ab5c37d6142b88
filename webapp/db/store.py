"""Reads and writes of the cache, shared by the views, the JSON API, the refresher and the CLI.

Writing a fetch result is the one place where a task's state, its history and its fetch
bookkeeping change, so the rules live here: an event only when the upstream word changes, a
fetch failure never touches the state, and a task seen before that is now "not found" is kept
and marked as gone upstream.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from webapp.db.models import Source
from webapp.db.models import Task
from webapp.db.models import TaskEvent
from webapp.db.models import db
from webapp.db.models import utcnow
from webapp.domain import FetchError
from webapp.domain import FetchErrorKind
from webapp.domain import NormalizedTask
from webapp.domain import TaskState
from webapp.providers import find_provider_spec
from webapp.sources.registry import registry

#: Upper bound on stored raw payloads, so one hostile upstream answer cannot bloat the cache.
MAX_RAW_BYTES = 256 * 1024


class UnknownSource(LookupError):
    """A source name that no configuration defines."""


#: Statements the task page runs on every request, built once: building one costs more than
#: SQLite takes to answer it.
_TASK_BY_KEY = sa.select(Task).where(
    Task.source == sa.bindparam("source"), Task.task_id == sa.bindparam("task_id")
)
_VERSION_BY_KEY = sa.select(Task.version, Task.terminal).where(
    Task.source == sa.bindparam("source"), Task.task_id == sa.bindparam("task_id")
)


_EVENTS = (
    sa.select(TaskEvent.at, TaskEvent.state, TaskEvent.upstream_status)
    .where(TaskEvent.task_pk == sa.bindparam("task_pk"))
    .order_by(TaskEvent.id)
)
_SOURCE_HEALTH = sa.select(Source.circuit, Source.last_error).where(
    Source.name == sa.bindparam("name")
)


def get_task(source: str, task_id: str) -> Task | None:
    return db.session.scalar(_TASK_BY_KEY, {"source": source, "task_id": task_id})


def unchanged_since(source: str, task_id: str, version: int) -> bool:
    """True when the task is tracked, still at ``version`` and not final: what a status poll
    asks most often, read from two columns (no payload, no ORM object)."""
    key = {"source": source, "task_id": task_id}
    row = db.session.connection().execute(_VERSION_BY_KEY, key).first()
    return row is not None and row.version == version and not row.terminal


def state_changes(task: Task) -> list[sa.Row[datetime, str, str | None]]:
    """The task's history (``at``, ``state``, ``upstream_status``), oldest first, as committed
    or flushed: read as rows, for its page, which shows them and changes none."""
    return list(db.session.connection().execute(_EVENTS, {"task_pk": task.id}))


def source_health(name: str) -> sa.Row[str, str | None] | None:
    """The source's ``circuit`` and ``last_error``, all its page's banner says of it."""
    return db.session.connection().execute(_SOURCE_HEALTH, {"name": name}).first()


#: The longest task id the cache holds (``Task.task_id``).
MAX_TASK_ID_LENGTH = 512
#: How tracking can begin (``Task.tracked_via``), in words for the task's page.
TRACKED_VIA = {
    "hand": "by hand",
    "import": "imported from a search",
    "follow": "found by the source's followed query",
    "push": "pushed through the API",
    "link": "linked from another tracked task",
}


def track(
    source_name: str, task_id: str, *, now: datetime | None = None, via: str = "hand"
) -> tuple[Task, bool]:
    """Start tracking a task (idempotent). Returns ``(task, created)``; the row is due at once.

    ``via`` records how (:data:`TRACKED_VIA`); a task tracked already keeps its own.

    Raises :class:`UnknownSource` for a source that is not configured, ``ValueError`` for an
    empty or oversized id.
    """

    known = registry()
    source = known.get(source_name)
    if source is None:
        raise UnknownSource(source_name)
    task_id = task_id.strip()
    if not task_id:
        raise ValueError("a task id cannot be empty")
    if len(task_id) > MAX_TASK_ID_LENGTH:
        raise ValueError(f"a task id is at most {MAX_TASK_ID_LENGTH} characters")
    existing = get_task(source_name, task_id)
    if existing is not None:
        return existing, False
    now = now or utcnow()
    task = Task(
        source=source_name,
        provider=source.provider,
        task_id=task_id,
        state=TaskState.UNKNOWN.value,
        terminal=False,
        links={},
        details={},
        sort_at=now,
        tracked_at=now,
        changed_at=now,
        next_poll_at=now,
        tracked_via=via,
    )
    db.session.add(task)
    db.session.flush()
    return task, True


def untrack(task: Task) -> None:
    db.session.delete(task)


@dataclass
class WriteOutcome:
    """What one fetch result did to a task."""

    state_changed: bool
    error_kind: FetchErrorKind | None = None


def apply_fetch(task: Task, result: NormalizedTask | FetchError, now: datetime) -> WriteOutcome:
    """Write one fetch result onto ``task`` (not committed)."""
    task.last_fetched_at = now
    task.version += 1
    if isinstance(result, FetchError):
        return _apply_failure(task, result, now)

    first_fetch = task.first_seen_at is None
    changed = (
        first_fetch
        or result.upstream_status != task.upstream_status
        or (result.state.value != task.state)
    )
    if changed:
        db.session.add(
            TaskEvent(
                task=task,
                at=now,
                state=result.state.value,
                upstream_status=result.upstream_status,
            )
        )
        task.last_changed_at = now
    visible_before = _row_signature(task)
    task.state = result.state.value
    task.upstream_status = _clip(result.upstream_status, 128)
    task.terminal = result.terminal
    task.task_type = _clip(result.task_type, 128)
    task.name = _clip(result.name, 512)
    task.created_at = result.created_at
    task.updated_at = result.updated_at
    if result.terminal:
        # Upstreams without a finish time (no times at all, or none on failures) get the time
        # we saw it.
        task.finished_at = result.finished_at or task.finished_at or now
    else:
        task.finished_at = None
    task.error = result.error
    task.links = result.links
    task.related_key = related_key(task.provider, result.links)
    task.details = jsonable(result.details)
    task.raw = capped_raw(result.raw)
    task.sort_at = result.created_at or task.tracked_at
    task.first_seen_at = task.first_seen_at or now
    task.last_success_at = now
    task.fetch_error = None
    task.fetch_error_kind = None
    task.gone_upstream = False
    if changed or visible_before != _row_signature(task):
        task.changed_at = now
    return WriteOutcome(state_changed=changed)


def _apply_failure(task: Task, error: FetchError, now: datetime) -> WriteOutcome:
    before = (task.fetch_error, task.gone_upstream)
    task.fetch_error = error.describe()
    task.fetch_error_kind = error.kind.value
    if error.kind is FetchErrorKind.NOT_FOUND and task.first_seen_at is not None:
        task.gone_upstream = True
    if error.kind is FetchErrorKind.BAD_PAYLOAD and error.raw is not None:
        # Stored as it came so a person can see what the upstream sent.
        task.raw = capped_raw(error.raw)
    if before != (task.fetch_error, task.gone_upstream):
        task.changed_at = now
    return WriteOutcome(state_changed=False, error_kind=error.kind)


def _row_signature(task: Task) -> tuple[Any, ...]:
    return (
        task.state,
        task.upstream_status,
        task.error,
        task.fetch_error,
        task.task_type,
        task.name,
    )


def _clip(value: str | None, limit: int) -> str | None:
    return value if value is None or len(value) <= limit else value[: limit - 1] + "…"


def capped_raw(raw: Any) -> Any:
    """The payload, or a note and a prefix when it is larger than :data:`MAX_RAW_BYTES`."""
    import json

    text = json.dumps(raw, default=str)
    if len(text) <= MAX_RAW_BYTES:
        return json.loads(text)  # as jsonable() would, from the text already made
    return {
        "_taskdeck_truncated": True,
        "_taskdeck_size": len(text),
        "prefix": text[:MAX_RAW_BYTES],
    }


def jsonable(value: Any) -> Any:
    """``value`` with anything JSON cannot hold turned into strings."""
    import json

    return json.loads(json.dumps(value, default=str))


def related_key(provider: str, links: dict[str, str]) -> str | None:
    """The id of the upstream group a task belongs to (its workflow, model, batch...): the
    first of its provider's related-link keys that the task has."""
    spec = find_provider_spec(provider)
    keys = spec.related_link_keys if spec is not None else ()
    return next((links[key][:512] for key in keys if links.get(key)), None)


@dataclass(frozen=True, slots=True)
class TaskGlance:
    """What a task's page shows of another task (its link, its state badge, its family bar):
    read as plain columns, so 20 relatives cost no ORM objects and none of their JSON."""

    id: int
    source: str
    task_id: str
    name: str | None
    state: str
    terminal: bool
    fetch_error: str | None
    version: int
    created_at: datetime | None
    sort_at: datetime
    tracked_at: datetime
    finished_at: datetime | None


GLANCE_COLUMNS = tuple(getattr(Task, name) for name in TaskGlance.__slots__)


_RELATED = (
    sa.select(*GLANCE_COLUMNS)
    .where(
        Task.source == sa.bindparam("source"),
        Task.related_key == sa.bindparam("related_key"),
        Task.id != sa.bindparam("id"),
    )
    .order_by(Task.sort_at.desc())
    .limit(sa.bindparam("limit"))
)


def glance(task: Task) -> TaskGlance:
    """A loaded task seen as its relatives are."""
    return TaskGlance(*(getattr(task, name) for name in TaskGlance.__slots__))


def related_tasks(task: Task, limit: int = 20) -> list[TaskGlance]:
    """Other tracked tasks of the same upstream group (same workflow, model, batch…)."""
    if not task.related_key:
        return []
    key = {"source": task.source, "related_key": task.related_key, "id": task.id, "limit": limit}
    return [TaskGlance(*row) for row in db.session.connection().execute(_RELATED, key)]


#: What a task's annotations hold at most (the form and ``POST /api/v1/tasks`` alike).
MAX_LABELS = 20
MAX_LABEL_LENGTH = 40
MAX_NOTE_LENGTH = 4000


def normalize_labels(words: Iterable[str]) -> list[str]:
    """Labels as tasks keep them: lower case, deduplicated in their order, at most
    :data:`MAX_LABELS` of at most :data:`MAX_LABEL_LENGTH` characters."""
    labels: list[str] = []
    for raw in words:
        label = raw.strip().lower()[:MAX_LABEL_LENGTH]
        if label and label not in labels:
            labels.append(label)
    return labels[:MAX_LABELS]


def normalize_note(note: str) -> str | None:
    return note.strip()[:MAX_NOTE_LENGTH] or None


def set_annotations(task: Task, labels_text: str, note: str) -> None:
    """Labels from a comma- or space-separated text (deduplicated, order kept) and a note."""
    task.labels = normalize_labels(labels_text.replace(",", " ").split())
    task.note = normalize_note(note)
