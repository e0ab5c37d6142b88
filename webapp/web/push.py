"""``POST /api/v1/tasks``: a pipeline has tasks tracked the moment it submits them.

The pydantic models below are the one statement of what the endpoint takes and answers: the view
validates the body with :class:`PushBody`, and ``/api/v1/openapi.json`` documents the request and
its answers from these same models (:mod:`webapp.web.openapi`), limits included.

A push is all or nothing: every problem of every item is reported (naming the item's index and
field) and nothing is tracked unless the whole body is good. Tracking is idempotent: an id tracked
already is answered as it is, its labels and note untouched.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated
from typing import Any

from flask import url_for
from pydantic import AfterValidator
from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Discriminator
from pydantic import Field
from pydantic import RootModel
from pydantic import Tag
from pydantic import ValidationError
from pydantic_core import ErrorDetails
from pydantic_core import PydanticCustomError
from sqlalchemy.exc import IntegrityError

from webapp.access import audit
from webapp.db import store
from webapp.db.models import Task
from webapp.db.models import db
from webapp.sources.registry import SourceRegistry
from webapp.web.serialize import ErrorOut
from webapp.web.serialize import TaskOut
from webapp.web.serialize import task_out

#: The largest body the endpoint reads (other endpoints keep their own limits): 500 items with
#: long ids, labels and notes fit with room to spare.
MAX_BODY_BYTES = 1024 * 1024
#: The most tasks one post may track: a pipeline with more posts again.
MAX_ITEMS = 500
TOO_LARGE = (
    f"The body is larger than {MAX_BODY_BYTES} bytes (1 MiB): post fewer tasks at once "
    f"(at most {MAX_ITEMS} per request)."
)
NOT_JSON = "Send the body as JSON, with Content-Type: application/json."
FIELDS = ("source", "task_id", "labels", "note")


def _control_characters(text: str, allowed: str = "") -> list[str]:
    return [
        f"U+{ord(ch):04X}" for ch in text if unicodedata.category(ch) == "Cc" and ch not in allowed
    ]


def _check_task_id(value: str) -> str:
    found = _control_characters(value)
    if found:
        raise PydanticCustomError(
            "task_id_control",
            "must not hold control characters (found {found})",
            {"found": ", ".join(dict.fromkeys(found))},
        )
    if value != value.strip():
        # Tracking strips ids; refusing keeps the answer's id the one that was posted.
        raise PydanticCustomError("task_id_blank_edge", "must not start or end with whitespace")
    return value


def _check_label(value: str) -> str:
    if any(ch.isspace() or ch == "," for ch in value) or _control_characters(value):
        raise PydanticCustomError(
            "label_words", "a label is one word: no spaces, commas or control characters"
        )
    return value


def _check_note(value: str) -> str:
    # Line breaks and tabs are text; other control characters (NUL above all, which PostgreSQL
    # cannot store) are not.
    found = _control_characters(value, allowed="\n\r\t")
    if found:
        raise PydanticCustomError(
            "note_control",
            "must not hold control characters other than line breaks and tabs (found {found})",
            {"found": ", ".join(dict.fromkeys(found))},
        )
    return value


TaskId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=store.MAX_TASK_ID_LENGTH,
        description="The upstream's own id, as its submit answered it: no control characters, "
        "no whitespace at either end.",
    ),
    AfterValidator(_check_task_id),
]
Label = Annotated[
    str,
    Field(
        min_length=1,
        max_length=store.MAX_LABEL_LENGTH,
        description="One word (no spaces or commas); kept in lower case.",
    ),
    AfterValidator(_check_label),
]
Note = Annotated[str, Field(max_length=store.MAX_NOTE_LENGTH), AfterValidator(_check_note)]


class PushItem(BaseModel):
    """One task to track."""

    model_config = ConfigDict(title="TrackRequest", extra="forbid")

    source: str = Field(description="The configured source the task belongs to (see /sources).")
    task_id: TaskId
    labels: list[Label] = Field(
        default_factory=list,
        max_length=store.MAX_LABELS,
        description="Labels for a task tracked now (duplicates dropped); ignored when the task "
        "is tracked already.",
    )
    note: Note | None = Field(
        default=None, description="A note for a task tracked now; ignored when tracked already."
    )


def _body_shape(value: Any) -> str | None:
    if isinstance(value, dict | PushItem):
        return "one"
    if isinstance(value, list):
        return "many"
    return None


class PushBody(
    RootModel[
        Annotated[
            Annotated[PushItem, Tag("one")]
            | Annotated[list[PushItem], Field(min_length=1, max_length=MAX_ITEMS), Tag("many")],
            Discriminator(
                _body_shape,
                custom_error_type="body_shape",
                custom_error_message="the body must be a JSON object or a list of them",
            ),
        ]
    ]
):
    """A task to track, or a list of 1 to 500 of them."""

    model_config = ConfigDict(title="TrackTasks")


class PushAnswer(RootModel[TaskOut | list[TaskOut]]):
    """The tasks as tracked now: one object for one posted, a list in the posted order for a
    list."""

    model_config = ConfigDict(title="TrackedTasks")


class PushProblem(BaseModel):
    """One thing wrong with a posted body."""

    model_config = ConfigDict(title="TrackProblem")

    item: int | None = Field(
        description="The index of the item in the posted list; null for a single posted object "
        "or the body as a whole."
    )
    field: str | None = Field(description="The field (`labels[2]` for one label), or null.")
    message: str


class PushErrorOut(ErrorOut):
    """Why a push was refused: ``error`` in words, ``problems`` one by one. Nothing was tracked."""

    model_config = ConfigDict(title="TrackError")

    problems: list[PushProblem] = Field(default_factory=list)


class PushRefused(Exception):
    """The body cannot be tracked; :attr:`problems` say why."""

    def __init__(self, problems: list[PushProblem]) -> None:
        super().__init__(describe(problems))
        self.problems = problems

    def answer(self) -> PushErrorOut:
        return PushErrorOut(error=str(self), status=400, problems=self.problems)


@dataclass(frozen=True)
class Push:
    """A valid body: its items, and whether it was one object (answered with one object)."""

    items: list[PushItem]
    single: bool


#: How many problems the ``error`` text spells out (``problems`` has them all).
SHOWN_PROBLEMS = 5


def describe(problems: list[PushProblem]) -> str:
    parts = []
    for problem in problems[:SHOWN_PROBLEMS]:
        where = [f"item {problem.item}"] if problem.item is not None else []
        where += [problem.field] if problem.field else []
        parts.append(": ".join([*where, problem.message]))
    more = len(problems) - SHOWN_PROBLEMS
    if more > 0:
        parts.append(f"and {more} more problem{'s' if more != 1 else ''}")
    return "Nothing was tracked: " + "; ".join(parts) + "."


def read(body: bytes, sources: SourceRegistry) -> Push:
    """The push in ``body``, checked against the configured ``sources``.

    Raises :class:`PushRefused` naming every problem.
    """
    try:
        parsed = PushBody.model_validate_json(body).root
    except ValidationError as exc:
        raise PushRefused([_problem(error) for error in exc.errors()]) from None
    single = isinstance(parsed, PushItem)
    items = [parsed] if isinstance(parsed, PushItem) else parsed
    known = sources.names()
    problems = [
        PushProblem(
            item=None if single else index,
            field="source",
            message=f"no source is called {_clipped(item.source)!r}; "
            + (f"the sources are {', '.join(known)}" if known else "no source is configured"),
        )
        for index, item in enumerate(items)
        if item.source not in sources
    ]
    if problems:
        raise PushRefused(problems)
    return Push(items=items, single=single)


def _clipped(text: str, limit: int = 80) -> str:
    """Posted text quoted back in a message, cut short: an answer does not echo a megabyte."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


#: pydantic's words for the errors a push meets, said the way the rest of the API says them.
_MESSAGES = {
    "missing": "is required",
    "string_type": "must be a string",
    "list_type": "must be a list of strings",
    "string_too_short": "must not be empty",
}


def _problem(error: ErrorDetails) -> PushProblem:
    location = list(error["loc"])
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "json_invalid":
        return PushProblem(item=None, field=None, message=f"the body is not JSON ({ctx['error']})")
    single = bool(location) and location[0] == "one"
    location = location[1:]
    item = None if single or not location else int(location.pop(0))
    field = _field_name(location)
    if kind == "extra_forbidden":
        message = f"unknown field; an item has only {', '.join(FIELDS)}"
    elif kind == "too_short" and not location and item is None:
        message = "the list is empty: post at least one task"
    elif kind == "too_long" and not location and item is None:
        message = f"{ctx['actual_length']} items is too many: at most {MAX_ITEMS} per request"
    elif kind == "too_long":
        message = f"at most {ctx['max_length']} labels ({ctx['actual_length']} given)"
    elif kind == "string_too_long":
        message = f"is longer than {ctx['max_length']} characters"
    elif kind == "model_type" or (kind == "dict_type" and item is not None):
        message = "each item must be a JSON object"
    else:
        message = _MESSAGES.get(kind, error["msg"])
    return PushProblem(item=item, field=field, message=message)


def _field_name(location: list[int | str]) -> str | None:
    if not location:
        return None
    name = _clipped(str(location[0]))  # an unknown field's name is the poster's text
    return name + "".join(f"[{part}]" for part in location[1:])


# -- tracking ---------------------------------------------------------------------------------


def track(push: Push) -> list[tuple[Task, bool]]:
    """Track each item (not committed), in order: ``(task, created)``. A new task gets the
    item's labels and note and one ``task.track`` audit event; one tracked already is left as it
    is. A concurrent push of the same id (a unique-key clash) is retried once, when the other
    one's row is there to be found."""
    try:
        return _track_all(push.items)
    except IntegrityError:
        db.session.rollback()
        return _track_all(push.items)


def _track_all(items: list[PushItem]) -> list[tuple[Task, bool]]:
    # Each new row is flushed by ``store.track`` itself; flushing before every look-up as well
    # (the session's autoflush) would double the writes of a long list.
    with db.session.no_autoflush:
        return [_track_one(item) for item in items]


def _track_one(item: PushItem) -> tuple[Task, bool]:
    task, created = store.track(item.source, item.task_id, via="push")
    if created:
        task.labels = store.normalize_labels(item.labels)
        task.note = store.normalize_note(item.note or "")
        audit.record(
            "task.track", audit.task_target(task.source, task.task_id), via="push", **_extras(task)
        )
    return task, created


def _extras(task: Task) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if task.labels:
        details["labels"] = task.labels
    if task.note:
        details["note"] = task.note
    return details


def answer(push: Push, tracked: Iterable[tuple[Task, bool]]) -> PushAnswer:
    """What the push answers: the task objects as they are now (a new one not fetched yet)."""
    tasks = [task_out(task) for task, _ in tracked]
    return PushAnswer(tasks[0] if push.single else tasks)


def location(task: Task) -> str:
    """The API URL of a task: the ``Location`` of a newly tracked one."""
    return url_for("api.get_task", source=task.source, task_id=task.task_id, _external=True)
