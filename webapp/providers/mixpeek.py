"""Mixpeek tasks (PROVIDERS.md section 2).

GET ``/v1/tasks/{task_id}`` and POST ``/v1/tasks/list``. Traps handled here (PROVIDERS.md 11-15):
the list is a POST whose paging (``limit``/``offset``/``cursor``/``include_total``) sits in the
query string while the filters go in the JSON body; the failure text may be in ``error``,
``error_message`` or ``additional_data.error``; a task 404s about a day after it was made (the
store turns that into "gone upstream"); ``inputs``/``outputs`` items are strings or objects;
errors come as the ``{success, status, error}`` envelope or, for 422, FastAPI's ``{detail}``;
every answer carries ``X-RateLimit-*`` headers, kept in :attr:`MixpeekProvider.rate_limit_state`.
A task has no times of its own, so the times Taskdeck shows are its own observations.
"""

from __future__ import annotations

import json
import re
import shlex
import threading
from collections.abc import Generator
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from typing import Any

import httpx
from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import ValidationError

from webapp.config import SourceConfig
from webapp.domain import FetchError
from webapp.domain import FetchErrorKind
from webapp.domain import NormalizedTask
from webapp.domain import SearchPage
from webapp.domain import TaskState
from webapp.providers.base import Provider
from webapp.providers.base import as_text
from webapp.providers.base import map_status
from webapp.providers.base import short_body
from webapp.providers.base import status_table
from webapp.providers.base import tolerant_float

STATUSES = status_table(
    {
        "PENDING": TaskState.QUEUED,
        "DRAFT": TaskState.QUEUED,
        "IN_PROGRESS": TaskState.RUNNING,
        "PROCESSING": TaskState.RUNNING,
        "ACTIVE": TaskState.RUNNING,
        "COMPLETED": TaskState.SUCCEEDED,
        "COMPLETED_WITH_ERRORS": TaskState.PARTIAL,
        "FAILED": TaskState.FAILED,
        "CANCELED": TaskState.CANCELLED,
        "SKIPPED": TaskState.SKIPPED,
        # Lifecycle words of the shared enum, not task progress: UNKNOWN and SUSPENDED may still
        # move on, ARCHIVED will not.
        "UNKNOWN": TaskState.UNKNOWN,
        "SUSPENDED": TaskState.UNKNOWN,
        "ARCHIVED": TaskState.UNKNOWN,
    },
    terminal_unknown={"ARCHIVED"},
)

#: ``additional_data`` keys naming the parent resources (shown as links and details).
PARENT_KEYS = ("batch_id", "bucket_id", "cluster_id", "job_id")
#: The list endpoint refuses offsets above this (openapi: ``offset`` 0-10000); use the cursor.
MAX_OFFSET = 10_000
_FILTER_KEYS = ("status", "task_type", "search")
_FILTER_TOKEN = re.compile(r"^([A-Za-z_]+):(.*)$", re.DOTALL)


class TaskResponse(BaseModel):
    """openapi ``TaskResponse``.

    The schema requires ``task_id``, ``task_type`` and ``status``, but only ``status`` is needed
    to track a task: a GET is keyed by the id asked for, and a missing or odd ``task_type`` is
    shown as it came rather than rejecting the answer (PROVIDERS.md: parse defensively).
    """

    model_config = ConfigDict(extra="allow")

    status: str
    task_id: Any = None
    task_type: Any = None
    #: Items are strings or objects (``anyOf string|object``); kept as they came.
    inputs: Any = None
    outputs: Any = None
    additional_data: Any = None
    description: Any = None
    #: The API's flattened failure text; the docs call the same thing ``error_message``.
    error: Any = None
    error_message: Any = None


@dataclass(frozen=True)
class RateLimitState:
    """What the last answer's ``X-RateLimit-*`` headers said (per API key, token bucket).

    ``limit`` requests per ``window`` seconds; ``remaining`` left now; the bucket is full again
    at ``reset_at`` (``X-RateLimit-Reset`` is Unix seconds). ``observed_at`` is when we read it.
    """

    limit: int | None
    remaining: int | None
    reset_at: datetime | None
    window: float | None
    observed_at: datetime

    @property
    def exhausted(self) -> bool:
        return self.remaining is not None and self.remaining <= 0

    def seconds_until_reset(self, now: datetime | None = None) -> float | None:
        """How long until ``reset_at`` (0 once it has passed); ``None`` when not reported."""
        if self.reset_at is None:
            return None
        now = now or datetime.now(UTC)
        return max(0.0, (self.reset_at - now).total_seconds())


def parse_rate_limit(headers: httpx.Headers, now: datetime | None = None) -> RateLimitState | None:
    """The ``X-RateLimit-*`` headers of one answer; ``None`` when it carries none."""
    limit = _header_int(headers.get("X-RateLimit-Limit"))
    remaining = _header_int(headers.get("X-RateLimit-Remaining"))
    reset = tolerant_float(headers.get("X-RateLimit-Reset"))
    window = tolerant_float(headers.get("X-RateLimit-Window"))
    if limit is None and remaining is None and reset is None:
        return None
    reset_at: datetime | None = None
    if reset is not None:
        try:
            reset_at = datetime.fromtimestamp(reset, tz=UTC)
        except (OverflowError, OSError, ValueError):
            reset_at = None
    return RateLimitState(limit, remaining, reset_at, window, now or datetime.now(UTC))


def _header_int(value: str | None) -> int | None:
    number = tolerant_float(value)
    return int(number) if number is not None and number.is_integer() else None


class BearerAuth(httpx.Auth):
    """``Authorization: Bearer <key>`` added per request, so the key is not a default header
    of the client (which could end up in a log or a repr)."""

    def __init__(self, api_key: str) -> None:
        self._api_key = api_key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._api_key}"
        yield request

    def __repr__(self) -> str:
        return "BearerAuth(<hidden>)"


@dataclass
class MixpeekPage(SearchPage):
    """A list page, with the cursor that continues it (``pagination.next_cursor``)."""

    next_cursor: str | None = None


class MixpeekProvider(Provider):
    name = "mixpeek"
    label = "Mixpeek"
    api_prefix = "/v1/tasks"
    can_search = True
    max_page_size = 100
    times_note = (
        "Mixpeek reports no task times; times shown are when Taskdeck first saw the task "
        "and saw it change."
    )

    def __init__(self, source: SourceConfig, client: httpx.Client) -> None:
        super().__init__(source, client)
        self._rate_lock = threading.Lock()
        self._rate_limit_state: RateLimitState | None = None

    @classmethod
    def client_auth(cls, source: SourceConfig) -> httpx.Auth | None:
        api_key = source.secret("api_key_env")
        return BearerAuth(api_key) if api_key else None

    @classmethod
    def client_headers(cls, source: SourceConfig) -> dict[str, str]:
        # The task operations do not declare X-Namespace (PROVIDERS.md 2.4): send it only when
        # the source names a namespace, never an empty one.
        return {"X-Namespace": source.namespace} if source.namespace else {}

    # -- rate limit headers --------------------------------------------------------------------
    @property
    def rate_limit_state(self) -> RateLimitState | None:
        """The latest ``X-RateLimit-*`` reading (``None`` before the first answer).

        Replaced whole under a lock by every answer, so a reader on another thread always sees
        one consistent reading. The refresher can hold off while :attr:`RateLimitState.exhausted`
        until ``reset_at``; a 429 also carries ``retry_after`` on its :class:`FetchError`.
        """
        with self._rate_lock:
            return self._rate_limit_state

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = super().request(method, path, **kwargs)
        reading = parse_rate_limit(response.headers)
        if reading is not None:
            with self._rate_lock:
                self._rate_limit_state = reading
        return response

    # -- fetching ----------------------------------------------------------------------------
    def fetch(self, task_id: str) -> NormalizedTask:
        response = self.request("GET", self.api_path(task_id))
        if response.status_code != 200:
            raise self.error_for(response)
        return self.normalize(task_id, self.json_body(response))

    def fetch_many(self, task_ids: list[str]) -> dict[str, NormalizedTask | FetchError]:
        """One GET per id: the documented list cannot select tasks by id.

        ``ListTasksRequest`` filters by ``status``, ``task_type`` and ``search`` only; its generic
        ``filters`` DSL is shared with document search and nothing says the task list honours a
        ``task_id`` condition, nor whether it reads the same store as GET (Redis with a ~24 h
        TTL) so that an absent id would mean "gone". Listing everything to pick a few ids would
        cost more calls than it saves. Once a GET is rate-limited, the remaining ids get the
        same error instead of spending more of the bucket.
        """
        results: dict[str, NormalizedTask | FetchError] = {}
        limited: FetchError | None = None
        for task_id in task_ids:
            if limited is not None:
                results[task_id] = limited
                continue
            try:
                results[task_id] = self.fetch(task_id)
            except FetchError as exc:
                results[task_id] = exc
                if exc.kind is FetchErrorKind.RATE_LIMITED:
                    limited = exc
        return results

    # -- searching ---------------------------------------------------------------------------
    def search_page(self, query: str | None, offset: int, limit: int) -> MixpeekPage:
        return self.list_page(self.parse_query(query), offset=offset, limit=limit)

    def search(
        self, query: str | None = None, limit: int | None = None
    ) -> Iterator[NormalizedTask]:
        """Every task the list returns for ``query``: by offset, then by ``next_cursor``.

        The cursor is how the API says to page ("use next_cursor for navigation") and the only
        way past offset 10 000.
        """
        body = self.parse_query(query)
        seen = 0
        cursor: str | None = None
        while limit is None or seen < limit:
            size = self.max_page_size if limit is None else min(self.max_page_size, limit - seen)
            if cursor is None and seen > MAX_OFFSET:
                return
            page = self.list_page(body, offset=seen, limit=size, cursor=cursor)
            yield from page.tasks
            seen += len(page.tasks)
            if len(page.tasks) < size or (page.total is not None and seen >= page.total):
                return
            cursor = page.next_cursor

    @staticmethod
    def parse_query(query: str | None) -> dict[str, Any]:
        """``--query`` as a ``ListTasksRequest`` body.

        A JSON object is sent as it is. Otherwise ``status:FAILED task_type:engine_cluster_build
        some words`` gives ``{status, task_type, search}``; quote a value with spaces
        (``search:"not found"``). Status words are upper case and task types lower case on the
        wire (the enum *values*), whatever case was typed. The newest tasks come first.
        """
        if not query or not query.strip():
            return {"sort": {"field": "created_at", "direction": "desc"}}
        text = query.strip()
        if text.startswith("{"):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"--query is not valid JSON: {exc.msg}") from None
            return parsed  # text starting with "{" that parses is always an object
        try:
            tokens = shlex.split(text)
        except ValueError:
            tokens = text.split()
        body: dict[str, Any] = {}
        words: list[str] = []
        for token in tokens:
            match = _FILTER_TOKEN.match(token)
            if match is None:
                words.append(token)
                continue
            key, value = match.group(1).lower(), match.group(2).strip()
            if key not in _FILTER_KEYS:
                raise ValueError(
                    f"--query: unknown filter {key!r}; "
                    "use status:, task_type:, search: or free text"
                )
            if not value:
                raise ValueError(f"--query: {key}: needs a value")
            if key == "search":
                words.append(value)
            else:
                body[key] = value.upper() if key == "status" else value.lower()
        if words:
            body["search"] = " ".join(words)
        body["sort"] = {"field": "created_at", "direction": "desc"}
        return body

    def list_page(
        self,
        body: dict[str, Any],
        *,
        offset: int = 0,
        limit: int = 100,
        cursor: str | None = None,
    ) -> MixpeekPage:
        """One ``POST /v1/tasks/list``: paging in the query string, filters in the body.

        The total is asked for on the first page only (``include_total``), as counting is the
        costly part and later pages do not need it.
        """
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        else:
            params["offset"] = offset
            if offset == 0:
                params["include_total"] = "true"
        response = self.request("POST", f"{self.api_prefix}/list", params=params, json=body)
        if response.status_code != 200:
            raise self.error_for(response)
        payload = self.json_body(response)
        if not isinstance(payload, dict) or not isinstance(payload.get("results"), list):
            raise FetchError(
                FetchErrorKind.BAD_PAYLOAD,
                "list answer has no 'results' array",
                status_code=response.status_code,
                raw=payload,
            )
        tasks: list[NormalizedTask] = []
        for item in payload["results"]:
            task_id = item.get("task_id") if isinstance(item, dict) else None
            if not isinstance(task_id, str) or not task_id:
                raise FetchError(
                    FetchErrorKind.BAD_PAYLOAD,
                    "a list result has no string 'task_id'",
                    status_code=response.status_code,
                    raw=item,
                )
            tasks.append(self.normalize(task_id, item))
        pagination = payload.get("pagination")
        pagination = pagination if isinstance(pagination, dict) else {}
        total = pagination.get("total")
        next_cursor = pagination.get("next_cursor")
        return MixpeekPage(
            tasks,
            total if isinstance(total, int) and not isinstance(total, bool) else None,
            next_cursor if isinstance(next_cursor, str) and next_cursor else None,
        )

    # -- reading answers ---------------------------------------------------------------------
    def normalize(self, task_id: str, payload: Any) -> NormalizedTask:
        try:
            task = TaskResponse.model_validate(payload)
        except ValidationError as exc:
            raise FetchError(
                FetchErrorKind.BAD_PAYLOAD, "task has no string 'status'", raw=payload
            ) from exc
        mapping = map_status(STATUSES, task.status, source=self.source.name, provider=self.name)
        extra = task.additional_data if isinstance(task.additional_data, dict) else {}
        links: dict[str, str] = {"api": self.api_url(task_id)}
        for key in PARENT_KEYS:
            if isinstance(extra.get(key), str) and extra[key]:
                links[key] = extra[key]
        details: dict[str, Any] = {
            "description": task.description,
            "inputs": task.inputs,
            "outputs": task.outputs,
            "additional_data": task.additional_data,
            "batch_id": extra.get("batch_id"),
            "bucket_id": extra.get("bucket_id"),
            "cluster_id": extra.get("cluster_id"),
            "from_mongodb": extra.get("from_mongodb"),
        }
        if isinstance(task.task_id, str) and task.task_id != task_id:
            # Key by the id asked for, but show what the upstream called it.
            details["upstream_task_id"] = task.task_id
        return NormalizedTask(
            task_id=task_id,
            state=mapping.state,
            upstream_status=task.status,
            terminal=mapping.terminal,
            raw=payload,
            task_type=as_text(task.task_type),
            name=None,
            # TaskResponse has no times (PROVIDERS.md 2.2): the store records what it observes.
            created_at=None,
            updated_at=None,
            finished_at=None,
            error=task_error(task),
            links=links,
            details={k: v for k, v in details.items() if v not in (None, [], {}, "")},
        )

    def error_for(self, response: httpx.Response) -> FetchError:
        """Classify an error answer, with the envelope's or FastAPI's message when there is one.

        The API key is masked out of the message should an error ever echo it.
        """
        try:
            body: Any = response.json()
        except (ValueError, UnicodeDecodeError):
            body = None
        message = error_message(body) if body is not None else None
        error = self.status_error(response, message=self._mask(message or short_body(response)))
        if error.kind is FetchErrorKind.RATE_LIMITED and error.retry_after is None:
            # No Retry-After header: the envelope's details.retry_after says the same.
            details = _envelope_details(body)
            error.retry_after = tolerant_float(details.get("retry_after"))
        return error

    def _mask(self, text: str) -> str:
        api_key = self.source.secret("api_key_env")
        return text.replace(api_key, "***") if api_key else text


def task_error(task: TaskResponse) -> str | None:
    """The failure text: ``error``, then ``error_message``, then ``additional_data.error``."""
    extra = task.additional_data if isinstance(task.additional_data, dict) else {}
    for value in (task.error, task.error_message, extra.get("error")):
        text = as_text(value)
        if text and text.strip():
            return text
    return None


def error_message(body: Any) -> str | None:
    """A readable message from a Mixpeek error body (envelope or FastAPI), or ``None``."""
    if not isinstance(body, dict):
        return None
    envelope = body.get("error")
    if isinstance(envelope, dict):
        message = as_text(envelope.get("message")) or "error"
        error_type = as_text(envelope.get("type"))
        text = f"{message} ({error_type})" if error_type else message
        problems = _envelope_details(body).get("validation_errors")
        if isinstance(problems, list) and problems:
            text += ": " + _join_problems(problems, "location", "message")
        return text
    if isinstance(envelope, str) and envelope.strip():
        return envelope
    detail = body.get("detail")
    if isinstance(detail, list) and detail:
        return "Validation error: " + _join_problems(detail, "loc", "msg")
    if isinstance(detail, str) and detail.strip():
        return detail
    return None


def _envelope_details(body: Any) -> dict[str, Any]:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        details = body["error"].get("details")
        if isinstance(details, dict):
            return details
    return {}


def _join_problems(problems: list[Any], location_key: str, message_key: str) -> str:
    """``body.status: Input should be ...; query.limit: ...`` from validation error items."""
    parts: list[str] = []
    for problem in problems[:10]:
        if not isinstance(problem, dict):
            parts.append(as_text(problem) or "?")
            continue
        location = problem.get(location_key)
        if isinstance(location, list):
            where = ".".join(str(part) for part in location)
        else:
            where = as_text(location) or ""
        message = as_text(problem.get(message_key)) or as_text(problem.get("type")) or "invalid"
        parts.append(f"{where}: {message}" if where else message)
    if len(problems) > 10:
        parts.append(f"and {len(problems) - 10} more")
    return "; ".join(parts)
