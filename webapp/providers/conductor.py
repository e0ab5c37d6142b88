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
- Auth (conductor_auth.py): none (open source), a fixed token, or keyId/keySecret exchanged at
  ``POST /api/token``.
- The search ``query`` (conductor_query.py): only what Conductor's parser reads, ``IN``
  values unquoted.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated
from typing import Any

import httpx
from pydantic import BeforeValidator
from pydantic import JsonValue
from pydantic import RootModel

from webapp.domain import FetchError
from webapp.domain import FetchErrorKind
from webapp.domain import NormalizedTask
from webapp.domain import SearchPage
from webapp.domain import Sibling
from webapp.domain import TaskState
from webapp.providers.base import map_status
from webapp.providers.base import quote_segment
from webapp.providers.base import status_table
from webapp.providers.conductor_actions import ACTIONS
from webapp.providers.conductor_actions import ConductorActions
from webapp.providers.conductor_auth import DEFAULT_TOKEN_REFRESH_SECONDS
from webapp.providers.conductor_auth import ConductorAuthBase
from webapp.providers.conductor_auth import auth_for
from webapp.providers.conductor_auth import error_message
from webapp.providers.conductor_auth import scrub
from webapp.providers.conductor_auth import token_failure
from webapp.providers.conductor_links import PAYLOAD_LINKS
from webapp.providers.conductor_links import workflow_search
from webapp.providers.conductor_links import workflow_siblings
from webapp.providers.conductor_query import carries_unquoted
from webapp.providers.conductor_query import ids_query
from webapp.providers.conductor_query import looks_like_clause
from webapp.providers.conductor_query import where_clause
from webapp.providers.conductor_times import conductor_time
from webapp.providers.conductor_times import no_worker_polling
from webapp.providers.payload import Count
from webapp.providers.payload import Id
from webapp.providers.payload import Payload
from webapp.providers.payload import Scalar
from webapp.providers.payload import Text
from webapp.providers.payload import as_text
from webapp.providers.payload import validate_payload
from webapp.providers.source import SourceSettings
from webapp.providers.spec import Credentials
from webapp.providers.spec import OverdueSignal
from webapp.providers.spec import ProviderSpec
from webapp.providers.spec import SourceSetting
from webapp.providers.spec import TaskUrl

log = logging.getLogger(__name__)

API_PREFIX = "/api/tasks"
SPEC = ProviderSpec(
    name="conductor",
    label="Conductor",
    simulator="webapp.simulators.conductor",
    credentials=Credentials(
        fields=("key_id_env", "key_secret_env", "token_env"),
        pairs=(("key_id_env", "key_secret_env"),),
        alternatives=(("token_env",), ("key_id_env", "key_secret_env")),
    ),
    settings=(
        SourceSetting(
            "ui_url",
            "UI URL",
            "where /execution/{workflowId} pages are (base URL if unset).",
            "url",
        ),
    ),
    key_fields=(
        "workflowType",
        "referenceTaskName",
        "taskDefName",
        "workerId",
        "retryCount",
        "inputData",
        "outputData",
    ),
    related_link_keys=("workflowInstanceId",),
    payload_links=PAYLOAD_LINKS,
    task_urls=(
        TaskUrl(API_PREFIX + "/{task_id}"),
        TaskUrl("/execution/{workflow_id}/{task_id}", root="ui_url"),
    ),
    search_help=(
        "its SQL-like query (`status = 'FAILED' AND taskType IN (HTTP,SIMPLE)`: upper-case "
        "=, !=, <, >, IN, IS NULL, BETWEEN, STARTS_WITH; no NOT) or words."
    ),
    times_note="Conductor reports epoch milliseconds; 0 means the time is not set yet.",
    active_note="The execution log is read once the task has finished.",
    actions=ACTIONS,
    overdue_signals=(OverdueSignal(frozenset({"SCHEDULED"}), no_worker_polling),),
)

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


# -- reading Conductor values --------------------------------------------------------------


def decode_json_string(value: Any) -> Any:
    """Summary ``input``/``output``: a JSON string decoded; anything unreadable kept as it came
    (older servers wrote Java's ``Map.toString()``)."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def log_line(value: Any) -> Any:
    """A log entry as it came; a bare value (not an object) is read as the line itself."""
    return value if isinstance(value, dict) else {"log": as_text(value)}


ConductorTime = Annotated[datetime | None, BeforeValidator(conductor_time)]
JsonString = Annotated[JsonValue, BeforeValidator(decode_json_string)]


class TaskFields(Payload):
    """What a ``Task`` and a ``TaskSummary`` share. Only ``status`` must be a string."""

    status: str
    taskId: Id = None
    taskType: Text = None
    taskDefName: Text = None
    # Not in TaskSummary.java, but in the docs' summary example (docs/documentation/api/task.md).
    referenceTaskName: Text = None
    workflowType: Text = None
    correlationId: Text = None
    scheduledTime: ConductorTime = None
    startTime: ConductorTime = None
    endTime: ConductorTime = None
    updateTime: ConductorTime = None
    reasonForIncompletion: Text = None
    queueWaitTime: Scalar = None
    domain: Text = None


class ConductorTask(TaskFields):
    """``Task.java`` as served by GET ``/api/tasks/{taskId}``: epoch-millisecond times."""

    workflowInstanceId: Id = None
    retryCount: Scalar = None
    pollCount: Scalar = None
    seq: Scalar = None
    workerId: Text = None
    inputData: JsonValue = None
    outputData: JsonValue = None


class ConductorTaskSummary(TaskFields):
    """``TaskSummary.java``, one search result: ISO-string times, JSON-string input/output."""

    workflowId: Id = None
    executionTime: Scalar = None
    input: JsonString = None
    output: JsonString = None


class ConductorSearchResult(Payload):
    """``SearchResult<TaskSummary>``: each result is read (and keyed by its id) one by one."""

    results: list[Any]
    totalHits: Count = None


LogEntry = Annotated[dict[str, JsonValue], BeforeValidator(log_line)]


class ConductorTaskLog(RootModel[list[LogEntry]]):
    """``List<TaskExecLog>``: ``{log, taskId, createdTime}`` entries, oldest first."""


class ConductorProvider(ConductorActions):
    spec = SPEC
    api_prefix = API_PREFIX
    can_search = True
    max_page_size = 100
    #: One ``taskId IN (...)`` search answers this many tasks.
    batch_size = 100
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
    def client_auth(cls, source: SourceSettings) -> httpx.Auth | None:
        return auth_for(source, refresh_after=cls.token_refresh_seconds, label=cls.label)

    # -- fetching ----------------------------------------------------------------------------
    def fetch(self, task_id: str) -> NormalizedTask:
        response = self.request("GET", self.api_path(task_id))
        if response.status_code != 200 or not response.content.strip():
            raise self.error_for(response, about_task=True)
        return self.normalize(task_id, self.json_body(response))

    def fetch_many(self, task_ids: list[str]) -> dict[str, NormalizedTask | FetchError]:
        """One ``taskId IN (a,b,...)`` search per 100 ids instead of N gets.

        Trade-off: a summary has fewer fields than a ``Task`` (no retry/poll counts, worker,
        sequence or workflow task; ``raw`` is the summary), and it comes from the indexing
        backend, which Conductor updates asynchronously, so it can trail the GET by a moment.
        Ids the search does not return (not indexed yet, no indexing backend) and ids the list
        syntax cannot carry unquoted (a comma, parenthesis, quote, space or non-ASCII
        character: :func:`carries_unquoted`) are fetched one by one, as is everything when the
        search itself fails for a reason other than credentials, throttling or the network.
        """
        unique = list(dict.fromkeys(task_ids))
        if len(unique) <= 1:
            return super().fetch_many(task_ids)
        listable = [task_id for task_id in unique if carries_unquoted(task_id)]
        found: dict[str, NormalizedTask] = {}
        for start in range(0, len(listable), self.max_page_size):
            chunk = listable[start : start + self.max_page_size]
            try:
                page = self._search({"query": ids_query(chunk)}, 0, len(chunk))
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
        """``--query`` as search parameters; nothing searches everything.

        A where clause (``status = 'FAILED'``, ``taskType IN (HTTP,SIMPLE)``,
        ``startTime > 1700000000000``...) goes in ``query`` once checked against Conductor's
        grammar (:func:`where_clause`: ``ValueError`` for ``NOT IN``, ``<=``, lower-case
        operators...); anything else is ``freeText`` (ES query-string syntax such as
        ``status:FAILED`` or a bare word).
        """
        if not query or not query.strip():
            return {}
        text = query.strip()
        if looks_like_clause(text):
            return {"query": where_clause(text)}
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
        answer = validate_payload(
            ConductorSearchResult,
            self.json_body(response),
            "search answer is not a Conductor SearchResult",
        )
        return SearchPage(
            [self.normalize_summary(item) for item in answer.results], answer.totalHits
        )

    def siblings(self, task_id: str, links: Mapping[str, str]) -> list[Sibling] | None:
        if (params := workflow_search(links.get("workflowInstanceId") or "")) is None:
            return None
        response = self.request("GET", f"{self.api_prefix}/search-v2", params=params)
        if response.status_code != 200:
            raise self.error_for(response, about_task=False)
        return workflow_siblings(task_id, self.json_body(response))

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
        logs = validate_payload(
            ConductorTaskLog, self.json_body(response), "task log answer is not a list"
        )
        return [
            {**entry, "created_at": conductor_time(entry.get("createdTime"))} for entry in logs.root
        ]

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

    def execution_url(self, workflow_id: str, task_id: str) -> str:
        """``{ui_url or base_url}/execution/{workflowInstanceId}/{taskId}`` (the OSS UI route
        ``/execution/:id/:taskId?``; Orkes serves the same path)."""
        root = (self.source.setting("ui_url") or self.source.base_url).rstrip("/")
        return f"{root}/execution/{quote_segment(workflow_id)}/{quote_segment(task_id)}"

    # -- reading answers ---------------------------------------------------------------------
    def normalize(self, task_id: str, payload: Any) -> NormalizedTask:
        """A ``Task`` fetched as ``task_id`` (its own ``taskId`` may differ, seed 003)."""
        task = validate_payload(ConductorTask, payload, "task has no string 'status'")
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
        summary = validate_payload(
            ConductorTaskSummary, item, "search result has no string 'status'"
        )
        if summary.taskId is None:
            raise FetchError(FetchErrorKind.BAD_PAYLOAD, "search result has no 'taskId'", raw=item)
        details = {
            "workflowType": summary.workflowType,
            "taskDefName": summary.taskDefName,
            "referenceTaskName": summary.referenceTaskName,
            "domain": summary.domain,
            "correlationId": summary.correlationId,
            "inputData": summary.input,
            "outputData": summary.output,
            "queueWaitTime": summary.queueWaitTime,
            "executionTime": summary.executionTime,
        }
        return self._build(summary.taskId, summary, item, summary.workflowId, details)

    def _build(
        self,
        task_id: str,
        task: TaskFields,
        payload: Any,
        workflow_id: str | None,
        details: dict[str, Any],
    ) -> NormalizedTask:
        mapping = map_status(STATUSES, task.status, source=self.source.name, provider=self.name)
        ended = task.endTime
        # updateTime stays 0 on some tasks (the seed's WAIT task): fall back to the latest time
        # the task does report.
        updated = task.updateTime or max(
            (t for t in (ended, task.startTime, task.scheduledTime) if t is not None), default=None
        )
        links: dict[str, str] = {"api": self.api_url(task_id)}
        if workflow_id:
            links["workflowInstanceId"] = workflow_id
            # The upstream's own taskId locates the task in the workflow; the tracked id may
            # differ.
            links["ui"] = self.execution_url(workflow_id, task.taskId or task_id)
        return NormalizedTask(
            task_id=task_id,
            state=mapping.state,
            upstream_status=task.status,
            terminal=mapping.terminal,
            raw=payload,
            task_type=task.taskType,
            name=task.referenceTaskName or task.taskDefName,
            created_at=task.scheduledTime,
            updated_at=updated,
            finished_at=(ended or updated) if mapping.terminal else None,
            error=task.reasonForIncompletion or None,
            links=links,
            details={k: v for k, v in details.items() if v not in (None, "", [], {})},
        )

    def error_for(self, response: httpx.Response, *, about_task: bool) -> FetchError:
        """Classify an error answer. On a task GET, 204, 400 and 404 all mean "not found"."""
        code = response.status_code
        auth = self.client.auth
        secrets = [secret.get_secret_value() for secret in self.source.credentials.values()]
        secrets += auth.secrets() if isinstance(auth, ConductorAuthBase) else []
        message = error_message(response)
        message = scrub(message, secrets) if message else None
        if about_task and code in (204, 200, 400, 404):
            return FetchError(
                FetchErrorKind.NOT_FOUND,
                message or f"{self.label} has no task with this id (HTTP {code})",
                status_code=code,
            )
        expired = token_failure(response, self.label)
        if expired is not None:
            return expired
        if code == 400:
            return FetchError(
                FetchErrorKind.UPSTREAM_ERROR,
                f"{self.label} rejected the request: {message or 'HTTP 400'}",
                status_code=code,
            )
        return self.status_error(response, message=message)
