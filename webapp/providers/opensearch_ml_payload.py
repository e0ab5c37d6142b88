"""What OpenSearch ML Commons answers (PROVIDERS.md section 1), read tolerantly: the task
document, search hits and error bodies."""

from __future__ import annotations

from typing import Annotated
from typing import Any

from pydantic import BeforeValidator
from pydantic import Field
from pydantic import JsonValue

from webapp.providers.payload import EpochMs
from webapp.providers.payload import Id
from webapp.providers.payload import Payload
from webapp.providers.payload import Scalar
from webapp.providers.payload import Text
from webapp.providers.payload import as_text
from webapp.providers.payload import list_or_empty
from webapp.providers.payload import strict_int


def worker_nodes(value: Any) -> list[str]:
    """``worker_node`` as a list: arrays (2.5+) as they are, strings (older) split on commas."""
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return []


def user_name(value: Any) -> str | None:
    """``user`` is an object (name, roles...) from the security plugin: its name is shown."""
    return as_text(value.get("name")) if isinstance(value, dict) else as_text(value)


def total_hits(value: Any) -> int | None:
    """``hits.total``: ``{"value": n, "relation": ...}`` (7.x+) or a bare number."""
    return strict_int(value.get("value") if isinstance(value, dict) else value)


#: Where ML Commons reads a remote job's status (``plugins.ml_commons.remote_job.status_field``)
#: and where each service puts its job's id: SageMaker's ``TransformJobArn``, Bedrock's
#: ``jobArn``, OpenAI's ``id``, Cohere's ``job_id``.
REMOTE_STATUS_FIELDS = ("status", "Status", "TransformJobStatus")
REMOTE_ID_FIELDS = ("TransformJobArn", "jobArn", "id", "job_id", "TransformJobName", "jobName")


def remote_job_summary(value: Any) -> dict[str, str]:
    """The remote job's status word and id, and why it failed where the service says:
    SageMaker's ``FailureReason``, Bedrock's ``message``, OpenAI's ``errors.data[].message``."""
    if not isinstance(value, dict):
        return {}
    summary: dict[str, str] = {}
    status = next((value[k] for k in REMOTE_STATUS_FIELDS if isinstance(value.get(k), str)), None)
    job_id = next((value[k] for k in REMOTE_ID_FIELDS if isinstance(value.get(k), str)), None)
    if status:
        summary["remote_job_status"] = status
    if job_id:
        summary["remote_job_id"] = job_id
    errors = value.get("errors")
    listed = errors.get("data") if isinstance(errors, dict) else None
    messages = [e["message"] for e in listed or [] if isinstance(e, dict) and "message" in e]
    failure = value.get("FailureReason") or value.get("message") or "; ".join(map(str, messages))
    if failure and isinstance(failure, str):
        summary["remote_job_error"] = failure
    return summary


class MLTask(Payload):
    """``MLTask.toXContent``: every field but ``is_async`` is written only when set."""

    state: str
    model_id: Id = None
    task_type: Text = None
    function_name: Text = None
    input_type: Text = None
    progress: Scalar = None
    output_index: Text = None
    worker_node: Annotated[list[str], BeforeValidator(worker_nodes)] = Field(default_factory=list)
    create_time: EpochMs = None
    last_update_time: EpochMs = None
    error: Text = None
    user: Annotated[str | None, BeforeValidator(user_name)] = None
    is_async: Scalar = None
    remote_job: JsonValue = None
    tenant_id: Text = None


class SearchHit(Payload):
    id: str = Field(alias="_id")
    source: dict[str, Any] = Field(alias="_source")
    #: The hit's sort values, which ``search_after`` resumes from.
    sort: list[JsonValue] | None = None


class SearchHits(Payload):
    hits: list[SearchHit]
    total: Annotated[int | None, BeforeValidator(total_hits)] = None


class SearchResponse(Payload):
    hits: SearchHits


class ErrorCause(Payload):
    reason: Text = None
    type: Text = None

    def describe(self) -> str | None:
        return f"{self.reason} ({self.type})" if self.reason and self.type else self.reason


class ErrorBody(ErrorCause):
    root_cause: Annotated[list[ErrorCause], BeforeValidator(list_or_empty)] = Field(
        default_factory=list
    )


class ErrorResponse(Payload):
    """``{"error": {"type", "reason", "root_cause"...}, "status"}``: a request that failed."""

    error: ErrorBody
