"""What Mixpeek sends: ``TaskResponse``, ``ListTasksResponse`` and error bodies, read leniently.

Models follow the python SDK generated from Mixpeek's OpenAPI 0.82 (PROVIDERS.md part 3).
Errors come as the ``ErrorResponse`` envelope ``{success, status, error: {type, message, code,
details}}`` (a 422 lists its problems in ``details.validation_errors``) or, from older servers,
FastAPI's ``{detail: [...]}``: both are read.
"""

from __future__ import annotations

from typing import Annotated
from typing import Any

from pydantic import BeforeValidator
from pydantic import Field
from pydantic import JsonValue

from webapp.providers.payload import Count
from webapp.providers.payload import Float
from webapp.providers.payload import Id
from webapp.providers.payload import Payload
from webapp.providers.payload import Problems
from webapp.providers.payload import Scalar
from webapp.providers.payload import Text
from webapp.providers.payload import join_problems
from webapp.providers.payload import list_or_empty
from webapp.providers.payload import list_or_text
from webapp.providers.payload import object_or_empty
from webapp.providers.payload import object_or_text

#: ``additional_data`` keys naming the parent resources (shown as links and details).
PARENT_KEYS = ("batch_id", "bucket_id", "cluster_id", "job_id")


class AdditionalData(Payload):
    """``additional_data``: the parent resources, and a failure text some tasks put here."""

    batch_id: Id = None
    bucket_id: Id = None
    cluster_id: Id = None
    job_id: Id = None
    error: Text = None
    from_mongodb: Scalar = None

    def parent_links(self) -> dict[str, str]:
        """The parents that are named, as link keys (``batch_id``...) to ids."""
        named = self.model_dump(include=set(PARENT_KEYS))
        return {key: value for key, value in named.items() if value}


class TaskResponse(Payload):
    """``TaskResponse``.

    The schema requires ``task_id``, ``task_type`` and ``status``, but only ``status`` is needed
    to track a task: a GET is keyed by the id asked for, and a missing or odd ``task_type`` is
    shown as it came rather than rejecting the answer (PROVIDERS.md: parse defensively).
    """

    status: str
    task_id: Id = None
    task_type: Text = None
    #: Items are strings or objects (``anyOf string|object``); kept as they came.
    inputs: JsonValue = None
    outputs: JsonValue = None
    #: Shown as it came; :attr:`parents` reads the same object's known keys.
    additional_data: JsonValue = None
    parents: Annotated[AdditionalData, BeforeValidator(object_or_empty)] = Field(
        default_factory=AdditionalData, validation_alias="additional_data"
    )
    description: Text = None
    #: The API's flattened failure text; the docs call the same thing ``error_message``.
    error: Text = None
    error_message: Text = None
    #: 1-based place in the processing waitlist, and the minutes until the task starts, both
    #: ``null`` once it was dispatched (or when it never waited).
    queue_position: Count = None
    estimated_wait_minutes: Float = None
    #: What a cancel request reached (only on answers of the batch cancel endpoints).
    cancellation: JsonValue = None


class Pagination(Payload):
    total: Count = None
    next_cursor: Id = None


class TaskList(Payload):
    """``ListTasksResponse``: each result is read (and keyed by its id) one by one."""

    results: list[Any]
    pagination: Annotated[Pagination, BeforeValidator(object_or_empty)] = Field(
        default_factory=Pagination
    )


class ErrorDetails(Payload):
    validation_errors: Annotated[Problems, BeforeValidator(list_or_empty)] = Field(
        default_factory=list
    )
    retry_after: Float = None


class ErrorInfo(Payload):
    message: Text = None
    type: Text = None
    #: A finer name for some errors (``namespace_name_taken``...); ``type`` is the stable one.
    code: Text = None
    details: Annotated[ErrorDetails, BeforeValidator(object_or_empty)] = Field(
        default_factory=ErrorDetails
    )


class ErrorBody(Payload):
    """An error answer: the ``{success, status, error}`` envelope, whose ``error`` is an object
    or (flattened) text, or FastAPI's ``{detail}``, a list of problems or text."""

    error: Annotated[ErrorInfo | str | None, BeforeValidator(object_or_text)] = None
    detail: Annotated[Problems | str | None, BeforeValidator(list_or_text)] = None


def task_error(task: TaskResponse) -> str | None:
    """The failure text: ``error``, then ``error_message``, then ``additional_data.error``."""
    for text in (task.error, task.error_message, task.parents.error):
        if text and text.strip():
            return text
    return None


def error_message(body: ErrorBody) -> str | None:
    """A readable message from a Mixpeek error body (envelope or FastAPI), or ``None``."""
    envelope, detail = body.error, body.detail
    if isinstance(envelope, ErrorInfo):
        message = envelope.message or "error"
        kind = envelope.type
        if envelope.code and envelope.code != kind:
            kind = f"{kind}, {envelope.code}" if kind else envelope.code
        text = f"{message} ({kind})" if kind else message
        problems = envelope.details.validation_errors
        return f"{text}: {join_problems(problems)}" if problems else text
    if envelope and envelope.strip():
        return envelope
    if isinstance(detail, list) and detail:
        return "Validation error: " + join_problems(detail)
    if isinstance(detail, str) and detail.strip():
        return detail
    return None
