"""NAVER Cloud NCLUE task models (PROVIDERS.md section 4).

GET ``/api/v1/tasks/{task_id}`` and GET ``/api/v1/tasks?index=&limit=`` (at most 100 a page)
behind the NCP API Gateway. Traps handled here (PROVIDERS.md 16-19):

* Every request is signed with API Gateway signature v2 (nclue_gateway.py): the string to sign
  holds the request URI *as sent*, base-URL prefix and percent-encoding included, and a
  millisecond timestamp the gateway accepts only within 5 minutes of its own clock.
* Errors come from two layers: the gateway's ``{"error": {"errorCode": "200", ...}}`` envelope
  (nclue_gateway.py) and NCLUE's own (code, message) errors, whose JSON shape is unverified and
  read tolerantly.
* NCLUE asks for at most 1 request/s: every request waits for the source's budget (the
  shared token bucket of webapp/ratelimit.py, taken in :meth:`Provider.request`; NCLUE's rate
  defaults to 1/s), and :meth:`NclueProvider.fetch_many` pages the list (100 tasks a call)
  instead of one GET per task when that is cheaper.
* ``status`` is lower case and both ``completed`` and ``complete`` occur; times are ISO 8601
  without a zone (read in the source's ``timezone``); ``AUROC`` may be a numeric string.

NCLUE has no server-side search: ``--query`` filters the listed tasks on the client.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import httpx
from pydantic import AliasChoices
from pydantic import Field

from webapp.domain import FetchError
from webapp.domain import FetchErrorKind
from webapp.domain import NormalizedTask
from webapp.domain import SearchPage
from webapp.domain import TaskState
from webapp.providers.base import Provider
from webapp.providers.base import map_status
from webapp.providers.base import short_body
from webapp.providers.base import status_table
from webapp.providers.http import build_client
from webapp.providers.nclue_gateway import SIGNATURE_HEADER
from webapp.providers.nclue_gateway import NcpSignatureV2
from webapp.providers.nclue_gateway import gateway_error
from webapp.providers.nclue_gateway import wall_clock_ms
from webapp.providers.nclue_query import newest_key
from webapp.providers.nclue_query import oldest_first
from webapp.providers.nclue_query import task_filter
from webapp.providers.payload import Count
from webapp.providers.payload import Float
from webapp.providers.payload import Id
from webapp.providers.payload import IsoTime
from webapp.providers.payload import Payload
from webapp.providers.payload import Scalar
from webapp.providers.payload import Text
from webapp.providers.payload import as_text
from webapp.providers.payload import validate_payload
from webapp.providers.ratelimit import Limiter
from webapp.providers.source import SourceSettings
from webapp.providers.spec import ActionSpec
from webapp.providers.spec import Credentials
from webapp.providers.spec import DetailField
from webapp.providers.spec import ProviderSpec
from webapp.providers.spec import TaskUrl

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1/tasks"

SPEC = ProviderSpec(
    name="nclue",
    label="NAVER Cloud NCLUE",
    simulator="webapp.simulators.nclue",
    credentials=Credentials(
        fields=("access_key_env", "secret_key_env"),
        pairs=(("access_key_env", "secret_key_env"),),
        required=("access_key_env", "secret_key_env"),
    ),
    # NCLUE asks for at most 1 request/s.
    default_rate_limit=1.0,
    key_fields=("auroc", "line_count", "disk_usage", "train_feature_name", "test_feature_name"),
    field_formats=(
        DetailField("auroc", "AUROC", "metric"),
        DetailField("auroc_raw", "AUROC (as sent)"),
        DetailField("disk_usage", kind="bytes"),
    ),
    related_link_keys=("train_feature_id",),
    task_urls=(TaskUrl(API_PREFIX + "/{task_id}"),),
    search_help="`status:failed` or a name, filtered here.",
    times_note=(
        "NCLUE sends times without a zone; they are read in the source's time zone "
        "(UTC unless the source sets timezone)."
    ),
    zoneless_times=True,
    # nclue-deletetask: refused while pending or in_progress; a registered task is cancelled.
    actions=(
        ActionSpec(
            "delete",
            "Delete",
            "NCLUE deletes the task (a registered one is never built); this cannot be undone.",
            upstream=("registered", "completed", "complete", "failed"),
        ),
    ),
)

STATUSES = status_table(
    {
        "registered": TaskState.QUEUED,
        "pending": TaskState.QUEUED,
        "in_progress": TaskState.RUNNING,
        # gettask says "completed", the posttask step table "complete" (trap 5): accept both.
        "completed": TaskState.SUCCEEDED,
        "complete": TaskState.SUCCEEDED,
        "failed": TaskState.FAILED,
    }
)


class NclueTask(Payload):
    """One task as gettask / gettasklist return it. Only ``status`` must be a string; times
    carry no zone (read in the zone given as validation context)."""

    status: str
    task_id: Id = None
    task_name: Text = None
    created_at: IsoTime = None
    completed_at: IsoTime = None
    train_feature_id: Id = None
    train_feature_name: Text = None
    train_bucket: Text = None
    train_file_path: Text = None
    test_feature_id: Id = None
    test_feature_name: Text = None
    test_bucket: Text = None
    test_file_path: Text = None
    #: A number or a numeric string; :attr:`auroc_sent` keeps one that is neither.
    auroc: Float = Field(default=None, validation_alias=AliasChoices("AUROC", "auroc"))
    auroc_sent: Text = Field(default=None, validation_alias=AliasChoices("AUROC", "auroc"))
    line_count: Scalar = None
    disk_usage: Scalar = None
    fail_message: Text = None


class NclueTaskList(Payload):
    """The list answer: each task is read (and keyed by its id) one by one."""

    tasks: list[Any]
    total: Count = None


# -- the provider ---------------------------------------------------------------------------


class NclueProvider(Provider):
    spec = SPEC
    api_prefix = API_PREFIX
    can_search = True
    max_page_size = 100
    #: :meth:`fetch_many` weighs list pages against GETs itself, so any number of ids is safe.
    #: The list cannot pick ids: a job walks it from the first page until its ids are found, so
    #: jobs of 100 ids would each walk the same pages again (20 calls for 500 due tasks, where
    #: one walk takes 5). Ten pages' worth of ids a job walks the list once per 1,000 due tasks.
    batch_size = 1000

    def __init__(
        self,
        source: SourceSettings,
        client: httpx.Client,
        *,
        limiter: Limiter | None = None,
    ) -> None:
        super().__init__(source, client, limiter=limiter)
        #: The list's total as last seen: lets :meth:`fetch_many` price a list scan up front.
        self.known_total: int | None = None

    @classmethod
    def create(
        cls,
        source: SourceSettings,
        *,
        transport: httpx.BaseTransport | None = None,
        now_ms: Callable[[], int] | None = None,
        limiter: Limiter | None = None,
    ) -> NclueProvider:
        """As :meth:`Provider.create`, plus an injectable signing clock and limiter."""
        client = build_client(
            source,
            auth=cls.client_auth(source, now_ms=now_ms),
            headers=cls.client_headers(source),
            transport=transport,
        )
        return cls(source, client, limiter=limiter)

    @classmethod
    def client_auth(
        cls, source: SourceSettings, *, now_ms: Callable[[], int] | None = None
    ) -> httpx.Auth | None:
        access_key = source.secret("access_key_env")
        secret_key = source.secret("secret_key_env")
        if not access_key or not secret_key:
            return None
        return NcpSignatureV2(access_key, secret_key, now_ms=now_ms or wall_clock_ms)

    # -- requests ------------------------------------------------------------------------------
    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One signed request (the base class waits for the source's rate limit first)."""
        if not isinstance(self.client.auth, NcpSignatureV2):
            raise FetchError(
                FetchErrorKind.UNAUTHORIZED,
                f"{self.label}: no access key / secret key configured for this source",
            )
        return super().request(method, path, **kwargs)

    def fetch(self, task_id: str) -> NormalizedTask:
        response = self.request("GET", self.api_path(task_id))
        if response.status_code != 200:
            raise self.error_for(response)
        return self.normalize(task_id, self.json_body(response))

    def list_page(self, index: int, limit: int) -> NclueTaskList:
        """GET ``/api/v1/tasks?index=&limit=`` (``limit`` clamped to 1..100)."""
        limit = max(1, min(self.max_page_size, limit))
        response = self.request(
            "GET", self.api_prefix, params={"index": max(0, index), "limit": limit}
        )
        if response.status_code != 200:
            raise self.error_for(response)
        answer = validate_payload(
            NclueTaskList,
            self.json_body(response),
            "task list answer has no 'tasks' array",
            status_code=response.status_code,
        )
        if answer.total is not None:
            self.known_total = answer.total
        return answer

    def scan(self) -> Iterator[tuple[str, NormalizedTask | FetchError]]:
        """Every listed task, newest first, one list call per 100 tasks."""
        index = 0
        while True:
            page = self.list_page(index, self.max_page_size)
            yield from self._normalize_items(page.tasks)
            index += len(page.tasks)
            if len(page.tasks) < self.max_page_size or (
                page.total is not None and index >= page.total
            ):
                return

    def search_page(self, query: str | None, offset: int, limit: int) -> SearchPage:
        """A page of the task list; with ``query``, a page of the client-side filtered list.

        Filtering reads the whole list (``ceil(total/100)`` calls at 1 request/s) to give an
        exact total; :meth:`search` streams instead, in one pass.
        """
        if not query or not query.strip():
            page = self.list_page(offset, limit)
            items = self._normalize_items(page.tasks)
            tasks = [task for _, task in items if not isinstance(task, FetchError)]
            return SearchPage(tasks, page.total)
        matches = list(self._filtered(query))
        return SearchPage(matches[offset : offset + limit], len(matches))

    def search(
        self, query: str | None = None, limit: int | None = None
    ) -> Iterator[NormalizedTask]:
        """One streaming pass over the list, filtered on the client when ``query`` is set."""
        if limit is not None and limit <= 0:
            return
        for count, task in enumerate(self._filtered(query), start=1):
            yield task
            if limit is not None and count >= limit:
                return

    @staticmethod
    def parse_query(query: str | None) -> Callable[[NormalizedTask], bool]:
        """``--query`` as what it is here: a filter of the listed tasks."""
        return task_filter(query)

    def search_newest(
        self, query: str | None, page_size: int | None = None
    ) -> Iterator[SearchPage]:
        """The list newest first, filtered here, one list call a page. NCLUE's docs do not say
        in which order the list comes (the simulator serves it newest first): the walk reads it
        from the first page's creation times, and pages a list that comes oldest first back
        from its end (``total``), where tasks are added."""
        keep = task_filter(query)
        counted = not query or not query.strip() or query.strip() == "*"
        size = max(1, min(page_size or self.max_page_size, self.max_page_size))

        def listed(items: list[Any]) -> list[NormalizedTask]:
            return [t for _, t in self._normalize_items(items) if not isinstance(t, FetchError)]

        def shown(tasks: list[NormalizedTask], total: int | None) -> SearchPage:
            oldest = min((t.created_at for t in tasks if t.created_at), default=None)
            kept = [t for t in tasks if keep(t)]
            return SearchPage(kept, total if counted else None, read_back_to=oldest)

        first = self.list_page(0, size)
        head = listed(first.tasks)
        if len(first.tasks) < size or (first.total is not None and first.total <= size):
            yield shown(sorted(head, key=newest_key, reverse=True), first.total)
            return
        if not oldest_first(head) or first.total is None:
            yield shown(head, first.total)
            index = len(first.tasks)
            while True:
                page = self.list_page(index, size)
                yield shown(listed(page.tasks), first.total)
                index += len(page.tasks)
                if len(page.tasks) < size or (page.total is not None and index >= page.total):
                    return
        end = first.total
        while end > 0:
            start = max(0, end - size)
            yield shown(listed(self.list_page(start, end - start).tasks)[::-1], first.total)
            end = start

    def fetch_many(self, task_ids: list[str]) -> dict[str, NormalizedTask | FetchError]:
        """Page the list (100 tasks a call) when that is cheaper than one GET per id.

        Paging stops as soon as every id is found. Before each further page the remaining list
        calls are weighed against one GET per id still missing, and the cheaper way finishes
        the job. Ids absent from the complete list are ``not_found``; if the list's total moved
        while paging (a task was added or removed, shifting pages), missing ids are fetched one
        by one rather than declared gone.
        """
        wanted = list(dict.fromkeys(task_ids))
        if len(wanted) <= 1 or (
            self.known_total is not None and self._list_calls(self.known_total) >= len(wanted)
        ):
            return super().fetch_many(wanted)
        results: dict[str, NormalizedTask | FetchError] = {}
        missing = set(wanted)
        index = 0
        first_total: int | None = None
        stable = True
        complete = False
        while missing:
            try:
                page = self.list_page(index, self.max_page_size)
            except FetchError as exc:
                results.update({task_id: exc for task_id in missing})
                return {task_id: results[task_id] for task_id in wanted}
            if index == 0:
                first_total = page.total
            elif page.total != first_total:
                stable = False
            for task_id, task in self._normalize_items(page.tasks, only=missing):
                results[task_id] = task
                missing.discard(task_id)
            index += len(page.tasks)
            if len(page.tasks) < self.max_page_size or (
                page.total is not None and index >= page.total
            ):
                complete = True
                break
            if page.total is not None and self._list_calls(page.total - index) >= len(missing):
                break
        if complete and stable:
            for task_id in missing:
                results[task_id] = FetchError(
                    FetchErrorKind.NOT_FOUND,
                    f"{self.label}: task is not in the task list ({index} tasks listed)",
                )
        else:
            results.update(super().fetch_many([t for t in wanted if t in missing]))
        return {task_id: results[task_id] for task_id in wanted}

    def _list_calls(self, count: int) -> int:
        return max(1, math.ceil(count / self.max_page_size))

    def _normalize_items(
        self, items: list[Any], only: set[str] | None = None
    ) -> Iterator[tuple[str, NormalizedTask | FetchError]]:
        """(id, task) for listed items; one that does not parse comes out as its error.

        Items without a string ``task_id`` cannot be keyed: they are skipped and logged.
        """
        for item in items:
            task_id = item.get("task_id") if isinstance(item, dict) else None
            if not isinstance(task_id, str):
                log.warning("source %s: listed task without a task_id skipped", self.source.name)
                continue
            if only is not None and task_id not in only:
                continue
            try:
                yield task_id, self.normalize(task_id, item)
            except FetchError as exc:
                yield task_id, exc

    def _filtered(self, query: str | None) -> Iterator[NormalizedTask]:
        keep = task_filter(query)
        for task_id, task in self.scan():
            if isinstance(task, FetchError):
                log.warning(
                    "source %s: listed task %r skipped: %s", self.source.name, task_id, task
                )
            elif keep(task):
                yield task

    # -- reading answers -------------------------------------------------------------------------
    def normalize(self, task_id: str, payload: Any) -> NormalizedTask:
        task = validate_payload(
            NclueTask, payload, "task object has no string 'status'", zone=self.source.zone
        )
        mapping = map_status(STATUSES, task.status, source=self.source.name, provider=self.name)
        details: dict[str, Any] = {
            "auroc": task.auroc,
            # An AUROC that is not a number is shown as it came (the raw payload keeps it too).
            "auroc_raw": task.auroc_sent if task.auroc is None else None,
            "line_count": task.line_count,
            "disk_usage": task.disk_usage,
            "train_feature_id": task.train_feature_id,
            "train_feature_name": task.train_feature_name,
            "train_bucket": task.train_bucket,
            "train_file_path": task.train_file_path,
            "test_feature_id": task.test_feature_id,
            "test_feature_name": task.test_feature_name,
            "test_bucket": task.test_bucket,
            "test_file_path": task.test_file_path,
        }
        links: dict[str, str] = {"api": self.api_url(task_id)}
        if task.train_feature_id:
            links["train_feature_id"] = task.train_feature_id
        if task.test_feature_id:
            links["test_feature_id"] = task.test_feature_id
        return NormalizedTask(
            task_id=task_id,
            state=mapping.state,
            upstream_status=task.status,
            terminal=mapping.terminal,
            raw=payload,
            # NCLUE builds one kind of thing: a task model.
            task_type="task-model",
            name=task.task_name,
            created_at=task.created_at,
            updated_at=task.completed_at,
            finished_at=task.completed_at,
            error=task.fail_message,
            links=links,
            details={k: v for k, v in details.items() if v not in (None, "", [], {})},
        )

    def error_for(self, response: httpx.Response) -> FetchError:
        """Classify an error answer by its layer: API Gateway envelope, else NCLUE's own."""
        try:
            body = response.json()
        except ValueError:
            body = None
        gateway = gateway_error(response, body)
        if gateway is None:
            error = self._nclue_error(response, body)
        else:
            kind, text = gateway
            error = self.status_error(response, message=text)
            # A documented gateway code says more than the HTTP status.
            error.kind = kind or error.kind
        return FetchError(
            error.kind,
            self._scrub(error.message, response.request),
            status_code=error.status_code,
            retry_after=error.retry_after,
        )

    def _nclue_error(self, response: httpx.Response, body: Any) -> FetchError:
        # NCLUE's own error body is unverified (PROVIDERS.md 4.5): look for a code and a
        # message at the top level or under "error", under the usual spellings.
        code: str | None = None
        message: str | None = None
        for container in (body, body.get("error") if isinstance(body, dict) else None):
            if not isinstance(container, dict):
                continue
            for key in ("code", "errorCode", "error_code", "status_code"):
                if container.get(key) is not None and code is None:
                    code = as_text(container[key])
            for key in ("message", "error_message", "errorMessage", "msg", "detail"):
                if isinstance(container.get(key), str) and message is None:
                    message = container[key]
        if isinstance(body, dict) and isinstance(body.get("error"), str) and message is None:
            message = body["error"]
        if code is None and message is None:
            excerpt = short_body(response)
            text = f"NCLUE HTTP {response.status_code}" + (f": {excerpt}" if excerpt else "")
        else:
            text = " ".join(filter(None, ("NCLUE", code, message)))
        return self.status_error(response, message=text)

    def _scrub(self, text: str, request: httpx.Request) -> str:
        """Never let the secret or the signature reach a message, even if an upstream echoes it."""
        for secret in (
            self.source.secret("secret_key_env"),
            request.headers.get(SIGNATURE_HEADER),
        ):
            if secret:
                text = text.replace(secret, "[redacted]")
        return text
