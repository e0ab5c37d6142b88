"""Mixpeek tasks (PROVIDERS.md section 2 and part 3).

GET ``/v1/tasks/{task_id}`` and POST ``/v1/tasks/list``. Traps handled here (PROVIDERS.md 11-15):
the list is a POST whose paging (``limit``/``offset``/``cursor``/``include_total``) sits in the
query string while the filters go in the JSON body; the failure text may be in ``error``,
``error_message`` or ``additional_data.error``; a task 404s about a day after it was made (the
store turns that into "gone upstream"); ``inputs``/``outputs`` items are strings or objects;
errors come as the ``{success, status, error}`` envelope or, from older servers, FastAPI's
``{detail}`` (:mod:`webapp.providers.mixpeek_payload`); every answer carries ``X-RateLimit-*``
headers, kept in :attr:`MixpeekProvider.rate_limit_state`. The list selects tasks by
``task_id``, so the refresher reads up to 100 tasks a call (:meth:`MixpeekProvider.fetch_many`).
A task has no times of its own, so the times Taskdeck shows are its own observations.
"""

from __future__ import annotations

import json
import re
import shlex
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from webapp.domain import FetchError
from webapp.domain import FetchErrorKind
from webapp.domain import NormalizedTask
from webapp.domain import SearchPage
from webapp.domain import TaskState
from webapp.providers.base import Provider
from webapp.providers.base import map_status
from webapp.providers.base import short_body
from webapp.providers.base import status_table
from webapp.providers.http import BearerAuth
from webapp.providers.mixpeek_payload import ErrorBody
from webapp.providers.mixpeek_payload import ErrorInfo
from webapp.providers.mixpeek_payload import TaskList
from webapp.providers.mixpeek_payload import TaskResponse
from webapp.providers.mixpeek_payload import error_message
from webapp.providers.mixpeek_payload import task_error
from webapp.providers.payload import read_json_as
from webapp.providers.payload import validate_payload
from webapp.providers.ratelimit import Limiter
from webapp.providers.ratelimit import RateLimitState
from webapp.providers.ratelimit import parse_rate_limit
from webapp.providers.source import SourceSettings
from webapp.providers.spec import ActionSpec
from webapp.providers.spec import Credentials
from webapp.providers.spec import DetailField
from webapp.providers.spec import ProviderSpec
from webapp.providers.spec import SourceSetting
from webapp.providers.spec import TaskUrl

API_PREFIX = "/v1/tasks"

SPEC = ProviderSpec(
    name="mixpeek",
    label="Mixpeek",
    simulator="webapp.simulators.mixpeek",
    credentials=Credentials(fields=("api_key_env",), required=("api_key_env",)),
    settings=(SourceSetting("namespace", "Namespace", "sent as X-Namespace."),),
    key_fields=(
        "description",
        "queue_position",
        "estimated_wait_minutes",
        "inputs",
        "outputs",
        "batch_id",
        "bucket_id",
        "cluster_id",
    ),
    field_formats=(
        DetailField("queue_position", label="Place in queue"),
        DetailField("estimated_wait_minutes", label="Estimated wait (minutes)"),
    ),
    related_link_keys=("batch_id", "cluster_id", "job_id"),
    task_urls=(TaskUrl(API_PREFIX + "/{task_id}"),),
    search_help="`status:FAILED task_type:…` and words (found in task ids, types and statuses).",
    times_note=(
        "Mixpeek reports no task times; times shown are when Taskdeck first saw the task "
        "and saw it change."
    ),
    # "Kill Task" (DELETE /v1/tasks/{id}): idempotent; there is no retry.
    actions=(
        ActionSpec(
            "cancel",
            "Cancel",
            "Mixpeek kills the task where it is; this cannot be undone.",
            states=("queued", "running"),
        ),
    ),
)

#: Every value of ``TaskStatusEnum`` (python SDK 1.3.783, OpenAPI 0.82), 16 of them: a word
#: missing here would be a bug, not something new to log.
STATUSES = status_table(
    {
        "PENDING": TaskState.QUEUED,
        # Waiting for a worker, with queue_position / estimated_wait_minutes (the SDK: poll
        # while PENDING, QUEUED, IN_PROGRESS or PROCESSING).
        "QUEUED": TaskState.QUEUED,
        "DRAFT": TaskState.QUEUED,
        "IN_PROGRESS": TaskState.RUNNING,
        "PROCESSING": TaskState.RUNNING,
        "ACTIVE": TaskState.RUNNING,
        "COMPLETED": TaskState.SUCCEEDED,
        "COMPLETED_WITH_ERRORS": TaskState.PARTIAL,
        "FAILED": TaskState.FAILED,
        "CANCELED": TaskState.CANCELLED,
        "SKIPPED": TaskState.SKIPPED,
        # Stopped by the system (an engine deploy, a lost node), not by anyone's cancel. The SDK
        # lists it neither among the states to poll nor among the four terminal ones, and Mixpeek
        # resubmits such work on its own a few times: shown as it came, and checked rarely (an
        # unknown word's back-off) so that a resubmission is still seen.
        "INTERRUPTED": TaskState.UNKNOWN,
        # Lifecycle words of the shared enum, not task progress: UNKNOWN, SUSPENDED and
        # DEACTIVATED (switched off, can be switched on again) may still move on, ARCHIVED will
        # not.
        "UNKNOWN": TaskState.UNKNOWN,
        "SUSPENDED": TaskState.UNKNOWN,
        "DEACTIVATED": TaskState.UNKNOWN,
        "ARCHIVED": TaskState.UNKNOWN,
    },
    terminal_unknown={"ARCHIVED"},
)

#: The list endpoint refuses offsets above this (openapi: ``offset`` 0-10000); use the cursor.
MAX_OFFSET = 10_000
#: The list's ``sort`` for the newest tasks first (the default direction is ``asc``).
NEWEST_FIRST = {"field": "created_at", "direction": "desc"}
_FILTER_KEYS = ("status", "task_type", "search")
#: List failures that a GET of each id would meet as well (with any 5xx): they fail the batch.
_SOURCE_WIDE = frozenset(
    {
        FetchErrorKind.UNAUTHORIZED,
        FetchErrorKind.FORBIDDEN,
        FetchErrorKind.RATE_LIMITED,
        FetchErrorKind.TIMEOUT,
        FetchErrorKind.NETWORK,
    }
)
_FILTER_TOKEN = re.compile(r"^([A-Za-z_]+):(.*)$", re.DOTALL)


@dataclass
class MixpeekPage(SearchPage):
    """A list page, with the cursor that continues it (``pagination.next_cursor``)."""

    next_cursor: str | None = None


def by_ids(task_ids: list[str]) -> dict[str, Any]:
    """A ``ListTasksRequest`` body selecting exactly these tasks (the SDK's own example filters
    on ``task_id``; ``in`` takes a list). Case-sensitive: filters fold case by default, and a
    task must not be answered for another whose id differs only in case."""
    condition = {"field": "task_id", "operator": "in", "value": task_ids}
    return {"filters": {"AND": [condition], "case_sensitive": True}}


class MixpeekProvider(Provider):
    spec = SPEC
    api_prefix = API_PREFIX
    can_search = True
    max_page_size = 100
    #: Ids a list call selects at once; its answer holds them all on one page (limit <= 1000).
    batch_size = 100

    def __init__(
        self, source: SourceSettings, client: httpx.Client, *, limiter: Limiter | None = None
    ) -> None:
        super().__init__(source, client, limiter=limiter)
        self._rate_lock = threading.Lock()
        self._rate_limit_state: RateLimitState | None = None

    @classmethod
    def client_auth(cls, source: SourceSettings) -> httpx.Auth | None:
        api_key = source.secret("api_key_env")
        return BearerAuth(api_key) if api_key else None

    @classmethod
    def client_headers(cls, source: SourceSettings) -> dict[str, str]:
        # The task operations do not declare X-Namespace (PROVIDERS.md 2.4): send it only when
        # the source names a namespace, never an empty one.
        namespace = source.setting("namespace")
        return {"X-Namespace": namespace} if namespace else {}

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
        """One list call per :attr:`batch_size` ids (``filters`` on ``task_id`` ``in``) instead
        of a GET each.

        The list answers from the task store as GET does, so an id it leaves out has most likely
        expired (Redis keeps a task about a day): that id gets a GET of its own, whose 404 is
        the "not found" the store turns into "gone upstream", and which still finds a task that
        GET reads from the MongoDB fallback. A list call that fails for reasons a GET would meet
        too (credentials, the rate limit, the network, a server error) fails every id at once
        rather than multiply the requests to a source in trouble; a refusal of the request
        itself (a 4xx such as a 422 for the filter) or an unreadable page falls back to GETs,
        and the refresher stops batching a source whose batches keep costing more than GETs.
        """
        unique = list(dict.fromkeys(task_ids))
        if len(unique) <= 1:
            return self._fetch_each(unique)
        found: dict[str, NormalizedTask] = {}
        for start in range(0, len(unique), self.batch_size):
            chunk = unique[start : start + self.batch_size]
            try:
                page = self.list_page(by_ids(chunk), limit=len(chunk), include_total=False)
            except FetchError as exc:
                if exc.kind in _SOURCE_WIDE or (exc.status_code or 0) >= 500:
                    return {task_id: exc for task_id in unique}
                break
            wanted = set(chunk)
            found.update((task.task_id, task) for task in page.tasks if task.task_id in wanted)
        results = self._fetch_each([task_id for task_id in unique if task_id not in found])
        results.update(found)
        return {task_id: results[task_id] for task_id in unique}

    def _fetch_each(self, task_ids: list[str]) -> dict[str, NormalizedTask | FetchError]:
        """One GET per id. Once a GET is rate-limited, the remaining ids get the same error
        instead of spending more of the bucket."""
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

    def search_newest(
        self, query: str | None, page_size: int | None = None
    ) -> Iterator[MixpeekPage]:
        """The list newest first (``sort`` on ``created_at`` desc, whatever sort a JSON query
        asked for), by ``next_cursor`` after the first page. The answers carry no creation
        times (TaskResponse has none), so a follow stops at the ids its last run saw."""
        body = {**self.parse_query(query), "sort": dict(NEWEST_FIRST)}
        size = max(1, min(page_size or self.max_page_size, self.max_page_size))
        seen = 0
        cursor: str | None = None
        while cursor is not None or seen <= MAX_OFFSET:
            page = self.list_page(body, offset=seen, limit=size, cursor=cursor)
            yield page
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
        if not query or not query.strip() or query.strip() == "*":
            return {"sort": dict(NEWEST_FIRST)}
        text = query.strip()
        if text.startswith("{"):
            try:
                # Text starting with "{" that parses is always an object.
                parsed: dict[str, Any] = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"--query is not valid JSON: {exc.msg}") from None
            return parsed
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
        body["sort"] = dict(NEWEST_FIRST)
        return body

    def list_page(
        self,
        body: dict[str, Any],
        *,
        offset: int = 0,
        limit: int = 100,
        cursor: str | None = None,
        include_total: bool | None = None,
    ) -> MixpeekPage:
        """One ``POST /v1/tasks/list``: paging in the query string, filters in the body.

        The total is asked for on the first page only unless ``include_total`` says otherwise,
        as counting is the costly part and later pages do not need it.
        """
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        else:
            params["offset"] = offset
        if include_total is None:
            include_total = not cursor and offset == 0
        if include_total:
            params["include_total"] = "true"
        response = self.request("POST", f"{self.api_prefix}/list", params=params, json=body)
        if response.status_code != 200:
            raise self.error_for(response)
        answer = validate_payload(
            TaskList,
            self.json_body(response),
            "list answer has no 'results' array",
            status_code=response.status_code,
        )
        tasks: list[NormalizedTask] = []
        for item in answer.results:
            task_id = item.get("task_id") if isinstance(item, dict) else None
            if not isinstance(task_id, str) or not task_id:
                raise FetchError(
                    FetchErrorKind.BAD_PAYLOAD,
                    "a list result has no string 'task_id'",
                    status_code=response.status_code,
                    raw=item,
                )
            tasks.append(self.normalize(task_id, item))
        return MixpeekPage(tasks, answer.pagination.total, answer.pagination.next_cursor)

    # -- reading answers ---------------------------------------------------------------------
    def normalize(self, task_id: str, payload: Any) -> NormalizedTask:
        task = validate_payload(TaskResponse, payload, "task has no string 'status'")
        mapping = map_status(STATUSES, task.status, source=self.source.name, provider=self.name)
        parents = task.parents
        links = {"api": self.api_url(task_id), **parents.parent_links()}
        details: dict[str, Any] = {
            "description": task.description,
            "inputs": task.inputs,
            "outputs": task.outputs,
            "additional_data": task.additional_data,
            "batch_id": parents.batch_id,
            "bucket_id": parents.bucket_id,
            "cluster_id": parents.cluster_id,
            "from_mongodb": parents.from_mongodb,
            "cancellation": task.cancellation,
        }
        if mapping.state is TaskState.QUEUED:
            # Only while it waits: once dispatched the upstream's figures mean nothing.
            details["queue_position"] = task.queue_position
            details["estimated_wait_minutes"] = task.estimated_wait_minutes
        if task.task_id is not None and task.task_id != task_id:
            # Key by the id asked for, but show what the upstream called it.
            details["upstream_task_id"] = task.task_id
        return NormalizedTask(
            task_id=task_id,
            state=mapping.state,
            upstream_status=task.status,
            terminal=mapping.terminal,
            raw=payload,
            task_type=task.task_type,
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
        body = read_json_as(ErrorBody, response)
        message = error_message(body) if body is not None else None
        error = self.status_error(response, message=self._mask(message or short_body(response)))
        if error.kind is FetchErrorKind.RATE_LIMITED and error.retry_after is None:
            # No Retry-After header: the envelope's details.retry_after says the same.
            envelope = body.error if body is not None else None
            if isinstance(envelope, ErrorInfo):
                error.retry_after = envelope.details.retry_after
        return error

    def _mask(self, text: str) -> str:
        api_key = self.source.secret("api_key_env")
        return text.replace(api_key, "***") if api_key else text
