"""Conductor tasks, open-source and Orkes (PROVIDERS.md section 3, traps 6-10).

GET ``/api/tasks/{taskId}``, GET ``/api/tasks/{taskId}/log`` and GET ``/api/tasks/search``.
Traps handled here:

- ``Task`` times are epoch milliseconds where 0 means unset; search summaries carry ISO strings
  where 1970-01-01 means unset (sometimes without millis) and ``input``/``output`` as JSON
  *strings*.
- ``Task.workflowInstanceId`` is ``TaskSummary.workflowId``.
- "Not found" is 404 with an ErrorResponse, 404 empty, 204 empty, or (Orkes) 400.
- The Orkes answer's ``taskId`` may differ from the id asked for (seed 003): a task is keyed by
  the id it was fetched under.
- Auth: none (open source), a fixed token, or keyId/keySecret exchanged at ``POST /api/token``;
  the token goes in ``X-Authorization`` with no ``Bearer``, is refreshed before it ages and, on a
  401/403 whose JSON says ``EXPIRED_TOKEN``, refreshed and the request retried exactly once.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator
from collections.abc import Callable
from collections.abc import Generator
from collections.abc import Iterable
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
from webapp.providers.base import epoch_ms
from webapp.providers.base import map_status
from webapp.providers.base import parse_iso
from webapp.providers.base import parse_retry_after
from webapp.providers.base import quote_segment
from webapp.providers.base import short_body
from webapp.providers.base import status_table
from webapp.version import __version__

log = logging.getLogger(__name__)

STATUSES = status_table(
    {
        "SCHEDULED": TaskState.QUEUED,
        "IN_PROGRESS": TaskState.RUNNING,
        "COMPLETED": TaskState.SUCCEEDED,
        "COMPLETED_WITH_ERRORS": TaskState.PARTIAL,
        "FAILED": TaskState.FAILED,
        "FAILED_WITH_TERMINAL_ERROR": TaskState.FAILED,
        "TIMED_OUT": TaskState.FAILED,
        "CANCELED": TaskState.CANCELLED,
        "SKIPPED": TaskState.SKIPPED,
    }
)

#: The header Orkes reads the token from; the value is the bare token, no ``Bearer``.
TOKEN_HEADER = "X-Authorization"
TOKEN_PATH = "/api/token"
#: Refresh a token once it is this old. Orkes does not document the lifetime; both SDKs
#: refresh after 45 minutes (python ``auth_token_ttl_min``, Java ``tokenRefreshInSeconds``).
DEFAULT_TOKEN_REFRESH_SECONDS = 45 * 60
#: The ``error`` words of an Orkes 401/403 body (conductor-python ``rest.py``).
EXPIRED_TOKEN = "EXPIRED_TOKEN"
INVALID_TOKEN = "INVALID_TOKEN"


class ConductorTask(BaseModel):
    """``Task.java`` as served by GET ``/api/tasks/{taskId}``.

    Only ``status`` must be a string; everything else is read tolerantly in ``normalize`` so a
    field of an unexpected type is shown as it came rather than rejecting the task.
    """

    model_config = ConfigDict(extra="allow")

    status: str
    taskId: Any = None
    taskType: Any = None
    taskDefName: Any = None
    referenceTaskName: Any = None
    workflowInstanceId: Any = None
    workflowType: Any = None
    correlationId: Any = None
    scheduledTime: Any = None
    startTime: Any = None
    endTime: Any = None
    updateTime: Any = None
    reasonForIncompletion: Any = None
    retryCount: Any = None
    pollCount: Any = None
    seq: Any = None
    workerId: Any = None
    domain: Any = None
    inputData: Any = None
    outputData: Any = None
    queueWaitTime: Any = None


class ConductorTaskSummary(BaseModel):
    """``TaskSummary.java``, one search result: ISO-string times, JSON-string input/output."""

    model_config = ConfigDict(extra="allow")

    status: str
    taskId: Any = None
    taskType: Any = None
    taskDefName: Any = None
    # Not in the class, but in the docs example (docs/documentation/api/task.md).
    referenceTaskName: Any = None
    workflowId: Any = None
    workflowType: Any = None
    correlationId: Any = None
    scheduledTime: Any = None
    startTime: Any = None
    endTime: Any = None
    updateTime: Any = None
    reasonForIncompletion: Any = None
    executionTime: Any = None
    queueWaitTime: Any = None
    domain: Any = None
    input: Any = None
    output: Any = None


# -- auth --------------------------------------------------------------------------------------


class ConductorAuthBase(httpx.Auth):
    """What both token modes share: the secrets to keep out of error messages."""

    requires_response_body = True

    def secrets(self) -> list[str]:
        """Every credential this auth holds, so error messages can be scrubbed of them."""
        return []

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        # The token cache uses a threading lock; Taskdeck's clients are synchronous.
        raise RuntimeError("Conductor auth supports synchronous httpx clients only")
        yield request  # pragma: no cover - makes this an async generator


class ConductorTokenAuth(ConductorAuthBase):
    """A ready token (``token_env``): sent as is, never refreshed, never retried."""

    def __init__(self, token: str) -> None:
        self._token = token

    def secrets(self) -> list[str]:
        return [self._token]

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers[TOKEN_HEADER] = self._token
        yield request


class ConductorKeyAuth(ConductorAuthBase):
    """Orkes keyId/keySecret exchanged at ``POST /api/token`` for a token.

    One instance serves every thread sharing the source's client, so the cached token is read
    and renewed under a lock: when it ages, one thread renews it and the others wait for it.
    The token is renewed proactively after ``refresh_after`` seconds and once more, with exactly
    one retry of the request, when a 401/403 body says ``EXPIRED_TOKEN``. A second expiry, an
    ``INVALID_TOKEN`` or a rejected exchange is returned or raised as it is: never a loop.
    """

    def __init__(
        self,
        key_id: str,
        key_secret: str,
        token_url: str,
        *,
        refresh_after: float = DEFAULT_TOKEN_REFRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        label: str = "Conductor",
    ) -> None:
        self._key_id = key_id
        self._key_secret = key_secret
        self.token_url = token_url
        self.refresh_after = refresh_after
        self._clock = clock
        self._label = label
        self._lock = threading.Lock()
        self._token: str | None = None
        self._obtained_at = 0.0

    def secrets(self) -> list[str]:
        return [s for s in (self._key_id, self._key_secret, self._token) if s]

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        # As httpx's default, but closing the inner flow for sure, so that a transport error
        # during the exchange releases the token lock at once (not at garbage collection).
        flow = self.auth_flow(request)
        try:
            request = next(flow)
            while True:
                response = yield request
                response.read()
                try:
                    request = flow.send(response)
                except StopIteration:
                    return
        finally:
            flow.close()

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if request.url.path.endswith(TOKEN_PATH):
            # Never send a token to the endpoint that issues them.
            request.headers.pop(TOKEN_HEADER, None)
            yield request
            return
        token = yield from self._valid_token(stale=None)
        request.headers[TOKEN_HEADER] = token
        response = yield request
        if response.status_code in (401, 403) and token_error(response) == EXPIRED_TOKEN:
            token = yield from self._valid_token(stale=token)
            request.headers[TOKEN_HEADER] = token
            yield request

    def _valid_token(self, *, stale: str | None) -> Generator[httpx.Request, httpx.Response, str]:
        """The cached token, or a new one when there is none, it aged, or it is ``stale``."""
        with self._lock:
            token = self._token
            fresh = self._clock() - self._obtained_at < self.refresh_after
            # Another thread may have renewed a token the server called expired: reuse it.
            if token is not None and fresh and token != stale:
                return token
            self._token = None
            response = yield httpx.Request(
                "POST",
                self.token_url,
                json={"keyId": self._key_id, "keySecret": self._key_secret},
                headers={"Accept": "application/json", "User-Agent": f"taskdeck/{__version__}"},
            )
            token = self._read_token(response)
            self._token, self._obtained_at = token, self._clock()
            return token

    def _read_token(self, response: httpx.Response) -> str:
        code = response.status_code
        if code == 200:
            try:
                body = response.json()
            except ValueError:
                body = None
            token = body.get("token") if isinstance(body, dict) else None
            if isinstance(token, str) and token:
                return token
            raise FetchError(
                FetchErrorKind.UNAUTHORIZED,
                f"{self._label} token exchange answered without a token",
                status_code=code,
            )
        detail = scrub(error_message(response) or "", self.secrets())
        suffix = f": {detail}" if detail else ""
        if code == 429:
            kind = FetchErrorKind.RATE_LIMITED
            message = f"{self._label} token exchange was rate limited{suffix}"
        elif code >= 500:
            # The keys may be fine: a broken server is not a credential problem.
            kind = FetchErrorKind.UPSTREAM_ERROR
            message = f"{self._label} token exchange failed{suffix}"
        elif code == 404:
            kind = FetchErrorKind.UNAUTHORIZED
            message = (
                f"{self._label} has no {TOKEN_PATH} (open-source Conductor needs no key id or "
                "secret: remove key_id_env/key_secret_env)"
            )
        else:
            kind = FetchErrorKind.UNAUTHORIZED
            message = f"{self._label} rejected the key id and secret{suffix}"
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise FetchError(kind, message, status_code=code, retry_after=retry_after)


def token_error(response: httpx.Response) -> str | None:
    """The ``error`` word of an Orkes auth failure body (``EXPIRED_TOKEN``...), if any."""
    try:
        body = response.json()
    except ValueError:
        return None
    value = body.get("error") if isinstance(body, dict) else None
    return value if isinstance(value, str) else None


def error_message(response: httpx.Response) -> str | None:
    """``ErrorResponse.message`` (``{status, code, message, instance, retryable}``), else the
    body's first characters; ``None`` for an empty body."""
    if not response.content.strip():
        return None
    try:
        body = response.json()
    except ValueError:
        return short_body(response) or None
    if isinstance(body, dict):
        message = body.get("message")
        if isinstance(message, str) and message:
            return message
    return short_body(response) or None


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every credential replaced, in case an upstream echoes one back."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


# -- reading Conductor values --------------------------------------------------------------


def conductor_time(value: Any) -> datetime | None:
    """A Conductor time: epoch ms (0 = unset) in a ``Task``, an ISO string (1970 = unset, with
    or without millis) in a ``TaskSummary``."""
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return epoch_ms(int(text), zero_is_unset=True)
        return parse_iso(text, epoch_is_unset=True)
    return epoch_ms(value, zero_is_unset=True)


def decode_json_string(value: Any) -> Any:
    """Summary ``input``/``output``: a JSON string decoded; anything unreadable kept as it came
    (older servers wrote Java's ``Map.toString()``)."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


#: ``--query`` is sent as Conductor's SQL-like ``query`` when it starts with a comparison on a
#: field (``status = 'FAILED'``, ``taskType IN (HTTP,SIMPLE)``, ``startTime > 1700000000000``,
#: ``workflowId IS NOT NULL``...); anything else is ``freeText`` (ES query-string syntax such
#: as ``status:FAILED`` or a bare word).
_WHERE_CLAUSE = re.compile(
    r"^\s*\(?\s*[A-Za-z_][\w.]*\s*"
    r"(?:!=|<=|>=|=|<|>|\bIN\s*\(|\bNOT\s+IN\s*\(|\bBETWEEN\b|\bIS\b|\bSTARTS_WITH\b)",
    re.IGNORECASE,
)
#: Ids that can go in ``taskId IN ('a','b')`` without escaping (Conductor's parser has none).
_QUOTABLE_ID = re.compile(r"^[^',()\\]+$")


class ConductorProvider(Provider):
    name = "conductor"
    label = "Conductor"
    api_prefix = "/api/tasks"
    can_search = True
    max_page_size = 100
    #: One ``taskId IN (...)`` search answers this many tasks.
    batch_size = 100
    times_note = "Conductor reports epoch milliseconds; 0 means the time is not set yet."
    #: Tasks whose execution log this provider keeps (most recently used), per process.
    max_cached_logs = 10_000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # task id -> (status the log was read at, entries): the log is read again only when
        # the task's status changes, so polling a task costs one call, not two.
        self._logs: OrderedDict[str, tuple[str | None, list[dict[str, Any]]]] = OrderedDict()
        self._logs_lock = threading.Lock()

    #: Seconds after which an exchanged token is renewed before use.
    token_refresh_seconds: float = DEFAULT_TOKEN_REFRESH_SECONDS
    #: Search order: newest first (every task has a scheduled time; a queued one no start).
    search_sort = "scheduledTime:DESC"

    @classmethod
    def client_auth(cls, source: SourceConfig) -> httpx.Auth | None:
        key_id = source.secret("key_id_env")
        if key_id is not None:
            return ConductorKeyAuth(
                key_id,
                source.secret("key_secret_env") or "",
                source.base_url.rstrip("/") + TOKEN_PATH,
                refresh_after=cls.token_refresh_seconds,
                label=cls.label,
            )
        token = source.secret("token_env")
        if token is not None:
            return ConductorTokenAuth(token)
        return None  # open-source Conductor: no auth by default

    # -- fetching ----------------------------------------------------------------------------
    def fetch(self, task_id: str) -> NormalizedTask:
        response = self.request("GET", self.api_path(task_id))
        if response.status_code != 200 or not response.content.strip():
            raise self.error_for(response, about_task=True)
        return self.normalize(task_id, self.json_body(response))

    def fetch_many(self, task_ids: list[str]) -> dict[str, NormalizedTask | FetchError]:
        """One ``taskId IN (...)`` search per 100 ids instead of N gets.

        Trade-off: a summary has fewer fields than a ``Task`` (no retry/poll counts, worker,
        sequence or workflow task; ``raw`` is the summary), and it comes from the indexing
        backend, which Conductor updates asynchronously, so it can trail the GET by a moment.
        Ids the search does not return (not indexed yet, no indexing backend, ids that cannot
        be quoted) are fetched one by one, as is everything when the search itself fails for a
        reason other than credentials, throttling or the network.
        """
        unique = list(dict.fromkeys(task_ids))
        if len(unique) <= 1:
            return super().fetch_many(task_ids)
        quotable = [task_id for task_id in unique if _QUOTABLE_ID.match(task_id)]
        found: dict[str, NormalizedTask] = {}
        for start in range(0, len(quotable), self.max_page_size):
            chunk = quotable[start : start + self.max_page_size]
            query = "taskId IN (" + ",".join(f"'{task_id}'" for task_id in chunk) + ")"
            try:
                page = self._search({"query": query}, 0, len(chunk))
            except FetchError as exc:
                if exc.kind in (
                    FetchErrorKind.UNAUTHORIZED,
                    FetchErrorKind.RATE_LIMITED,
                    FetchErrorKind.TIMEOUT,
                    FetchErrorKind.NETWORK,
                ):
                    # A GET would fail the same way: don't multiply the damage.
                    return {task_id: exc for task_id in unique}
                break
            found.update((task.task_id, task) for task in page.tasks if task.task_id in chunk)
        results: dict[str, NormalizedTask | FetchError] = {}
        missing = [task_id for task_id in unique if task_id not in found]
        results.update(super().fetch_many(missing))
        results.update((task_id, found[task_id]) for task_id in unique if task_id in found)
        return {task_id: results[task_id] for task_id in unique}

    def search_page(self, query: str | None, offset: int, limit: int) -> SearchPage:
        return self._search(self.parse_query(query), offset, limit)

    @staticmethod
    def parse_query(query: str | None) -> dict[str, str]:
        """``--query`` as search parameters: a where clause goes in ``query``, anything else in
        ``freeText`` (see ``_WHERE_CLAUSE``); nothing searches everything."""
        if not query or not query.strip():
            return {}
        text = query.strip()
        if _WHERE_CLAUSE.match(text):
            return {"query": text}
        return {"freeText": text}

    def _search(self, params: dict[str, str], offset: int, limit: int) -> SearchPage:
        response = self.request(
            "GET",
            f"{self.api_prefix}/search",
            params={
                "start": offset,
                "size": limit,
                "sort": self.search_sort,
                "freeText": params.get("freeText", "*"),
                **({"query": params["query"]} if "query" in params else {}),
            },
        )
        if response.status_code != 200:
            raise self.error_for(response, about_task=False)
        payload = self.json_body(response)
        results = payload.get("results") if isinstance(payload, dict) else None
        if not isinstance(results, list):
            raise FetchError(
                FetchErrorKind.BAD_PAYLOAD,
                "search answer is not a Conductor SearchResult",
                raw=payload,
            )
        tasks = [self.normalize_summary(item) for item in results]
        total = payload.get("totalHits")
        return SearchPage(tasks, total if isinstance(total, int) else None)

    def fetch_logs(self, task_id: str) -> list[dict[str, Any]]:
        """The task's execution log, oldest first: ``{log, taskId, createdTime, created_at}``.

        204 means "no logs" (also what Conductor says for an unknown id): an empty list.
        Raises :class:`FetchError`.
        """
        response = self.request("GET", self.api_path(task_id, "log"))
        if response.status_code == 204 or (
            response.status_code == 200 and not response.content.strip()
        ):
            return []
        if response.status_code != 200:
            raise self.error_for(response, about_task=False)
        payload = self.json_body(response)
        if not isinstance(payload, list):
            raise FetchError(
                FetchErrorKind.BAD_PAYLOAD, "task log answer is not a list", raw=payload
            )
        entries: list[dict[str, Any]] = []
        for item in payload:
            entry = dict(item) if isinstance(item, dict) else {"log": as_text(item)}
            entry["created_at"] = conductor_time(entry.get("createdTime"))
            entries.append(entry)
        return entries

    def add_extras(self, results: dict[str, NormalizedTask | FetchError]) -> None:
        """Each fetched task's execution log, for the detail page."""
        for result in results.values():
            if isinstance(result, NormalizedTask):
                self.with_logs(result)

    def with_logs(self, task: NormalizedTask) -> NormalizedTask:
        """``task`` with its execution log in ``details["logs"]`` (``{at, log}`` entries).

        The log is read once a task is finished (then it is complete), and again only if its
        final status changes: one extra call per task, so batched polling stays cheap. A failed
        log fetch keeps the log read before (the task itself was fetched fine).
        """
        if not task.terminal:
            return task
        with self._logs_lock:
            cached = self._logs.get(task.task_id)
        entries = cached[1] if cached else None
        if cached is None or cached[0] != task.upstream_status:
            try:
                entries = [
                    {
                        "at": entry["created_at"].isoformat() if entry["created_at"] else None,
                        "log": as_text(entry.get("log")),
                    }
                    for entry in self.fetch_logs(task.task_id)
                ]
            except FetchError as exc:
                log.info("source %s: no log for %s: %s", self.source.name, task.task_id, exc)
            else:
                with self._logs_lock:
                    self._logs[task.task_id] = (task.upstream_status, entries)
                    self._logs.move_to_end(task.task_id)
                    while len(self._logs) > self.max_cached_logs:
                        self._logs.popitem(last=False)
        if entries:
            task.details["logs"] = entries
        return task

    def ui_url(self, task: NormalizedTask) -> str | None:
        """``{ui_url or base_url}/execution/{workflowInstanceId}/{taskId}`` (the OSS UI route
        ``/execution/:id/:taskId?``; Orkes serves the same path)."""
        workflow_id = task.links.get("workflowInstanceId")
        if not workflow_id:
            return None
        # The upstream's own taskId locates the task in the workflow; the tracked id may differ.
        own_id = task.raw.get("taskId") if isinstance(task.raw, dict) else None
        task_id = own_id if isinstance(own_id, str) and own_id else task.task_id
        root = (self.source.ui_url or self.source.base_url).rstrip("/")
        return f"{root}/execution/{quote_segment(workflow_id)}/{quote_segment(task_id)}"

    # -- reading answers ---------------------------------------------------------------------
    def normalize(self, task_id: str, payload: Any) -> NormalizedTask:
        """A ``Task`` fetched as ``task_id`` (its own ``taskId`` may differ, seed 003)."""
        try:
            task = ConductorTask.model_validate(payload)
        except ValidationError as exc:
            raise FetchError(
                FetchErrorKind.BAD_PAYLOAD, "task has no string 'status'", raw=payload
            ) from exc
        details = {
            "workflowType": task.workflowType,
            "taskDefName": task.taskDefName,
            "referenceTaskName": task.referenceTaskName,
            "retryCount": task.retryCount,
            "pollCount": task.pollCount,
            "seq": task.seq,
            "workerId": task.workerId,
            "domain": task.domain,
            "correlationId": task.correlationId,
            "inputData": task.inputData,
            "outputData": task.outputData,
            "queueWaitTime": task.queueWaitTime,
        }
        return self._build(task_id, task, payload, task.workflowInstanceId, details)

    def normalize_summary(self, item: Any) -> NormalizedTask:
        """A search result, keyed by its ``taskId``."""
        try:
            summary = ConductorTaskSummary.model_validate(item)
        except ValidationError as exc:
            raise FetchError(
                FetchErrorKind.BAD_PAYLOAD, "search result has no string 'status'", raw=item
            ) from exc
        if not isinstance(summary.taskId, str) or not summary.taskId:
            raise FetchError(FetchErrorKind.BAD_PAYLOAD, "search result has no 'taskId'", raw=item)
        details = {
            "workflowType": summary.workflowType,
            "taskDefName": summary.taskDefName,
            "referenceTaskName": summary.referenceTaskName,
            "domain": summary.domain,
            "correlationId": summary.correlationId,
            "inputData": decode_json_string(summary.input),
            "outputData": decode_json_string(summary.output),
            "queueWaitTime": summary.queueWaitTime,
            "executionTime": summary.executionTime,
        }
        return self._build(summary.taskId, summary, item, summary.workflowId, details)

    def _build(
        self,
        task_id: str,
        task: ConductorTask | ConductorTaskSummary,
        payload: Any,
        workflow_id: Any,
        details: dict[str, Any],
    ) -> NormalizedTask:
        mapping = map_status(STATUSES, task.status, source=self.source.name, provider=self.name)
        scheduled = conductor_time(task.scheduledTime)
        started = conductor_time(task.startTime)
        ended = conductor_time(task.endTime)
        # updateTime stays 0 on some tasks (the seed's WAIT task): fall back to the latest time
        # the task does report.
        updated = conductor_time(task.updateTime) or max(
            (t for t in (ended, started, scheduled) if t is not None), default=None
        )
        links: dict[str, str] = {"api": self.api_url(task_id)}
        if isinstance(workflow_id, str) and workflow_id:
            links["workflowInstanceId"] = workflow_id
        name = task.referenceTaskName or task.taskDefName
        result = NormalizedTask(
            task_id=task_id,
            state=mapping.state,
            upstream_status=task.status,
            terminal=mapping.terminal,
            raw=payload,
            task_type=as_text(task.taskType),
            name=as_text(name),
            created_at=scheduled,
            updated_at=updated,
            finished_at=(ended or updated) if mapping.terminal else None,
            error=as_text(task.reasonForIncompletion) or None,
            links=links,
            details={k: v for k, v in details.items() if v not in (None, "", [], {})},
        )
        ui = self.ui_url(result)
        if ui:
            result.links["ui"] = ui
        return result

    def error_for(self, response: httpx.Response, *, about_task: bool) -> FetchError:
        """Classify an error answer. On a task GET, 204, 400 and 404 all mean "not found"."""
        code = response.status_code
        secrets = self._secrets()
        message = error_message(response)
        message = scrub(message, secrets) if message else None
        if about_task and code in (204, 200, 400, 404):
            return FetchError(
                FetchErrorKind.NOT_FOUND,
                message or f"{self.label} has no task with this id (HTTP {code})",
                status_code=code,
            )
        word = token_error(response) if code in (401, 403) else None
        if word in (EXPIRED_TOKEN, INVALID_TOKEN):
            why = "expired" if word == EXPIRED_TOKEN else "was rejected"
            return FetchError(
                FetchErrorKind.UNAUTHORIZED,
                f"the {self.label} token {why} ({word})",
                status_code=code,
            )
        if code == 400:
            return FetchError(
                FetchErrorKind.UPSTREAM_ERROR,
                f"{self.label} rejected the request: {message or 'HTTP 400'}",
                status_code=code,
            )
        return self.status_error(response, message=message)

    def _secrets(self) -> list[str]:
        values = [secret.get_secret_value() for secret in self.source.credentials.values()]
        auth = self.client.auth
        if isinstance(auth, ConductorAuthBase):
            values.extend(auth.secrets())
        return values
