"""OpenSearch ML Commons tasks (PROVIDERS.md section 1).

GET ``/_plugins/_ml/tasks/{task_id}`` and POST ``/_plugins/_ml/tasks/_search``. Traps handled
here: the GET answer carries no ``task_id`` (we key by the id asked for; search hits by
``_id``), ``worker_node`` is a string before 2.5 and an array after, times are epoch
milliseconds, the security plugin's 401 is not JSON, and multi-tenant clusters need
``x-tenant-id`` on every call. ``from + size`` cannot pass ``index.max_result_window``
(10,000), so an import pages with ``search_after`` instead. Remote ``BATCH_PREDICTION`` tasks
carry the remote service's job in ``remote_job`` and move only when asked by a GET.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx
from pydantic import JsonValue

from webapp.domain import FetchError
from webapp.domain import FetchErrorKind
from webapp.domain import NormalizedTask
from webapp.domain import SearchPage
from webapp.domain import Sibling
from webapp.domain import TaskState
from webapp.overdue.words import span
from webapp.providers.base import MAX_SIBLINGS
from webapp.providers.base import Provider
from webapp.providers.base import answer_message
from webapp.providers.base import map_status
from webapp.providers.base import status_table
from webapp.providers.opensearch_ml_payload import ErrorResponse
from webapp.providers.opensearch_ml_payload import MLTask
from webapp.providers.opensearch_ml_payload import SearchHit
from webapp.providers.opensearch_ml_payload import SearchResponse
from webapp.providers.opensearch_ml_payload import remote_job_summary
from webapp.providers.payload import read_json_as
from webapp.providers.payload import validate_payload
from webapp.providers.source import SourceSettings
from webapp.providers.spec import ActionSpec
from webapp.providers.spec import Credentials
from webapp.providers.spec import DetailField
from webapp.providers.spec import OverdueSignal
from webapp.providers.spec import ProviderSpec
from webapp.providers.spec import SignalFacts
from webapp.providers.spec import SourceSetting
from webapp.providers.spec import TaskUrl

API_PREFIX = "/_plugins/_ml/tasks"
#: The start of ML Commons' answer to deleting a RUNNING task (its wording varies after it).
RUNNING_REFUSAL = "cannot be deleted in running state"

#: A task still CREATED with no update for this long is overdue: no node has taken it up.
NOT_STARTED_AFTER_SECONDS = 600.0


def created_without_update(facts: SignalFacts, now: datetime) -> str | None:
    """CREATED and ``last_update_time`` (else ``create_time``) long ago: ML Commons writes
    RUNNING as soon as a node starts the work, so nothing has picked the task up."""
    since = facts.updated_at or facts.created_at
    if facts.upstream_status != "CREATED" or since is None:
        return None
    quiet = (now - since).total_seconds()
    if quiet < NOT_STARTED_AFTER_SECONDS:
        return None
    return f"created, no update for {span(quiet)}"


SPEC = ProviderSpec(
    name="opensearch-ml",
    label="OpenSearch ML Commons",
    short_name="ml",
    simulator="webapp.simulators.opensearch_ml",
    credentials=Credentials(
        fields=("username_env", "password_env"), pairs=(("username_env", "password_env"),)
    ),
    settings=(
        SourceSetting("tenant_id", "Tenant id", "multi-tenant clusters (sent as x-tenant-id)."),
    ),
    key_fields=(
        *("function_name", "remote_job_status", "remote_job_id"),
        *("worker_nodes", "progress", "input_type", "output_index"),
    ),
    field_formats=(
        DetailField("progress", kind="metric"),
        DetailField("remote_job_status", label="Remote job status"),
        DetailField("remote_job_id", label="Remote job"),
    ),
    related_link_keys=("model_id",),
    task_urls=(TaskUrl(API_PREFIX + "/{task_id}"),),
    search_help=(
        'query DSL as JSON (`{"term": {"function_name": "KMEANS"}}`) '
        "or query-string syntax (`state:FAILED AND function_name:KMEANS`; terms without `AND` "
        "are joined by OR)."
    ),
    actions=(
        # DeleteTaskTransportAction refuses a task stored as RUNNING, and only that.
        ActionSpec(
            "delete",
            "Delete",
            "The task record is removed from the cluster; this cannot be undone.",
            not_upstream=("RUNNING",),
        ),
        # CancelBatchJobTransportAction: a remote model's batch job, while the job still runs.
        ActionSpec(
            "cancel",
            "Cancel",
            "The remote batch job is asked to stop; its output so far may be lost.",
            upstream=("CREATED", "RUNNING"),
            task_types=("BATCH_PREDICTION",),
            details=(("function_name", "REMOTE"),),
            method="POST",
            path_suffix=("_cancel",),
        ),
    ),
    overdue_signals=(OverdueSignal(frozenset({"CREATED"}), created_without_update),),
)

STATUSES = status_table(
    {
        "CREATED": TaskState.QUEUED,
        "RUNNING": TaskState.RUNNING,
        "CANCELLING": TaskState.RUNNING,
        "COMPLETED": TaskState.SUCCEEDED,
        "COMPLETED_WITH_ERROR": TaskState.PARTIAL,
        "FAILED": TaskState.FAILED,
        "CANCELLED": TaskState.CANCELLED,
        "EXPIRED": TaskState.EXPIRED,
        # The upstream stops polling an UNREACHABLE remote job, so we do too.
        "UNREACHABLE": TaskState.UNKNOWN,
    },
    terminal_unknown={"UNREACHABLE"},
)


#: Hits per request of an import: large pages, well inside ``index.max_result_window``.
IMPORT_PAGE_SIZE = 1000
#: ``index.max_result_window``'s default: the most hits ``from + size`` can reach.
RESULT_WINDOW = 10_000
NEWEST_FIRST: list[dict[str, Any]] = [{"create_time": {"order": "desc"}}]
#: A total order ``search_after`` can resume from: ``_id`` breaks ties of the same millisecond.
STABLE_SORT: list[dict[str, Any]] = [*NEWEST_FIRST, {"_id": {"order": "asc"}}]
#: The cluster's refusal to sort on ``_id`` (``indices.id_field_data.enabled`` is off).
ID_SORT_REFUSED = "Fielddata access on the _id field is disallowed"
#: The sort value OpenSearch gives a task without ``create_time`` in a descending sort.
MISSING_DESC = -(2**63)


def _last_sort(hits: list[SearchHit]) -> list[JsonValue]:
    last = hits[-1].sort
    if not last:
        raise FetchError(
            FetchErrorKind.BAD_PAYLOAD, "sorted search hits carry no sort values to resume from"
        )
    return last


def _created_at(value: JsonValue) -> dict[str, Any]:
    """The tasks created in the millisecond ``value`` (a ``create_time`` sort value)."""
    if value == MISSING_DESC:
        return {"bool": {"must_not": [{"exists": {"field": "create_time"}}]}}
    return {"term": {"create_time": value}}


class OpenSearchMLProvider(Provider):
    spec = SPEC
    api_prefix = API_PREFIX
    can_search = True
    max_page_size = 100
    #: One ``ids`` search answers this many tasks (well inside ``index.max_result_window``).
    batch_size = 100

    @classmethod
    def client_auth(cls, source: SourceSettings) -> httpx.Auth | None:
        username = source.secret("username_env")
        if username is None:
            return None
        return httpx.BasicAuth(username, source.secret("password_env") or "")

    @classmethod
    def client_headers(cls, source: SourceSettings) -> dict[str, str]:
        tenant = source.setting("tenant_id")
        return {"x-tenant-id": tenant} if tenant else {}

    # -- fetching ----------------------------------------------------------------------------
    def fetch(self, task_id: str) -> NormalizedTask:
        response = self.request("GET", self.api_path(task_id))
        if response.status_code != 200:
            raise self.error_for(response)
        payload = self.json_body(response)
        return self.normalize(task_id, payload)

    def fetch_many(self, task_ids: list[str]) -> dict[str, NormalizedTask | FetchError]:
        """One ``ids`` search instead of N gets; ids the search does not return are not found.

        Remote batch-prediction tasks are fetched one by one: only a GET makes the cluster ask
        the remote job for its live status (PROVIDERS.md trap 22).
        """
        if len(task_ids) <= 1:
            return super().fetch_many(task_ids)
        try:
            page = self._search({"ids": {"values": task_ids}}, 0, len(task_ids))
        except FetchError as exc:
            return {task_id: exc for task_id in task_ids}
        found = {task.task_id: task for task in page.tasks}
        results: dict[str, NormalizedTask | FetchError] = {}
        refetch: list[str] = []
        for task_id in task_ids:
            task = found.get(task_id)
            if task is None or task.task_type == "BATCH_PREDICTION":
                refetch.append(task_id)
            else:
                results[task_id] = task
        results.update(super().fetch_many(refetch))
        return results

    def search_page(self, query: str | None, offset: int, limit: int) -> SearchPage:
        return self._search(self.parse_query(query), offset, limit)

    def siblings(self, task_id: str, links: Mapping[str, str]) -> list[Sibling] | None:
        """The model's other tasks, newest first (a ``term`` search on ``model_id``)."""
        if not links.get("model_id"):
            return None
        page = self._search({"term": {"model_id": links["model_id"]}}, 0, MAX_SIBLINGS + 1)
        others = [Sibling(t.task_id, "same model") for t in page.tasks if t.task_id != task_id]
        return others[:MAX_SIBLINGS]

    def search(
        self, query: str | None = None, limit: int | None = None
    ) -> Iterator[NormalizedTask]:
        """Every task the search finds, newest first, however many: ``from + size`` stops at
        ``index.max_result_window`` (10,000), so pages follow each other with ``search_after``
        on ``create_time`` then ``_id``, a total order that tasks created meanwhile (newer, so
        before the cursor) cannot shift.

        A cluster that refuses to sort on ``_id`` (``indices.id_field_data.enabled`` off; the
        task index has no other unique field) is paged on ``create_time`` alone, each page's
        last millisecond fetched whole by one more search.
        """
        clause = self.parse_query(query)
        count = 0
        for hits in self._pages(clause, limit):
            for hit in hits:
                if limit is not None and count >= limit:
                    return
                yield self.normalize(hit.id, hit.source)
                count += 1

    def search_newest(
        self, query: str | None, page_size: int | None = None
    ) -> Iterator[SearchPage]:
        """The matches newest first (``create_time`` desc, then ``_id``), page after page by
        ``search_after``, so the walk is not bound by ``index.max_result_window``; only the
        first page counts the matches. A cluster that refuses to sort on ``_id`` is walked
        by ``from``/``size`` instead (a follow rarely reads far)."""
        clause = self.parse_query(query)
        size = max(1, min(page_size or self.max_page_size, self.max_page_size))
        after: list[JsonValue] | None = None
        while True:
            body: dict[str, Any] = {"query": clause, "size": size, "sort": STABLE_SORT}
            body["track_total_hits"] = after is None
            if after is not None:
                body["search_after"] = after
            try:
                hits = self._post_search(body).hits
            except FetchError as exc:
                if after is None and ID_SORT_REFUSED in exc.message:
                    yield from super().search_newest(query, page_size)
                    return
                raise
            yield SearchPage(
                [self.normalize(hit.id, hit.source) for hit in hits.hits],
                hits.total if after is None else None,
            )
            if len(hits.hits) < size:
                return
            after = _last_sort(hits.hits)

    def _pages(self, clause: dict[str, Any], limit: int | None) -> Iterator[list[SearchHit]]:
        after: list[JsonValue] | None = None
        fetched = 0
        while limit is None or fetched < limit:
            size = IMPORT_PAGE_SIZE if limit is None else min(IMPORT_PAGE_SIZE, limit - fetched)
            try:
                hits = self._hits(clause, size, STABLE_SORT, after)
            except FetchError as exc:
                if after is None and ID_SORT_REFUSED in exc.message:
                    yield from self._pages_by_time(clause, limit)
                    return
                raise
            yield hits
            fetched += len(hits)
            if len(hits) < size:
                return
            after = _last_sort(hits)

    def _pages_by_time(
        self, clause: dict[str, Any], limit: int | None
    ) -> Iterator[list[SearchHit]]:
        """``search_after`` on ``create_time`` alone resumes *after* the last page's millisecond,
        skipping the tasks of that millisecond the page did not reach: so the page's tail is
        replaced by every task created in that millisecond."""
        after: list[JsonValue] | None = None
        fetched = 0
        while limit is None or fetched < limit:
            size = IMPORT_PAGE_SIZE if limit is None else min(IMPORT_PAGE_SIZE, limit - fetched)
            hits = self._hits(clause, size, NEWEST_FIRST, after)
            if len(hits) < size:
                yield hits
                return
            after = _last_sort(hits)
            head = [hit for hit in hits if hit.sort != after]
            same_time = {"bool": {"filter": [clause, _created_at(after[0])]}}
            tied = self._hits(same_time, RESULT_WINDOW, NEWEST_FIRST, None)
            if len(tied) >= RESULT_WINDOW:
                raise FetchError(
                    FetchErrorKind.UPSTREAM_ERROR,
                    f"{RESULT_WINDOW:,} tasks or more share one create_time and the cluster "
                    "refuses to sort on _id: the search cannot page past them",
                )
            yield head + tied
            fetched += len(head) + len(tied)

    def _hits(
        self,
        clause: dict[str, Any],
        size: int,
        sort: list[dict[str, Any]],
        after: list[JsonValue] | None,
    ) -> list[SearchHit]:
        body: dict[str, Any] = {"query": clause, "size": size, "sort": sort}
        # Counting every hit is work the cluster can skip: paging needs no total.
        body["track_total_hits"] = False
        if after is not None:
            body["search_after"] = after
        return self._post_search(body).hits.hits

    def _post_search(self, body: dict[str, Any]) -> SearchResponse:
        # POST, not GET: some HTTP stacks drop GET bodies (PROVIDERS.md trap 23).
        response = self.request("POST", f"{self.api_prefix}/_search", json=body)
        if response.status_code != 200:
            raise self.error_for(response)
        return validate_payload(
            SearchResponse,
            self.json_body(response),
            "search answer is not an OpenSearch search response",
        )

    @staticmethod
    def parse_query(query: str | None) -> dict[str, Any]:
        """``--query``: a JSON query-DSL object, or query-string syntax (``state:FAILED``)."""
        if not query or not query.strip():
            return {"match_all": {}}
        text = query.strip()
        if text.startswith("{"):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"--query is not valid JSON: {exc.msg}") from None
            if not isinstance(parsed, dict):
                raise ValueError("--query must be a JSON object (a query DSL clause)")
            clause: dict[str, Any] = parsed.get("query", parsed)
            return clause
        return {"query_string": {"query": text}}

    def _search(self, query: dict[str, Any], offset: int, limit: int) -> SearchPage:
        """One page by ``from``/``size`` (a preview, a batch of ids), with an exact total."""
        body = {
            "query": query,
            "from": offset,
            "size": limit,
            "sort": NEWEST_FIRST,
            "track_total_hits": True,
        }
        search = self._post_search(body)
        tasks = [self.normalize(hit.id, hit.source) for hit in search.hits.hits]
        return SearchPage(tasks, search.hits.total)

    # -- reading answers ---------------------------------------------------------------------
    def normalize(self, task_id: str, payload: Any) -> NormalizedTask:
        task = validate_payload(MLTask, payload, "task document has no string 'state'")
        mapping = map_status(STATUSES, task.state, source=self.source.name, provider=self.name)
        links: dict[str, str] = {"api": self.api_url(task_id)}
        if task.model_id:
            links["model_id"] = task.model_id
        details: dict[str, Any] = {
            "function_name": task.function_name,
            "input_type": task.input_type,
            "worker_nodes": task.worker_node,
            "progress": task.progress,
            "output_index": task.output_index,
            "is_async": task.is_async,
            "tenant_id": task.tenant_id,
            "user": task.user,
            "remote_job": task.remote_job,
        }
        remote = remote_job_summary(task.remote_job)
        details["remote_job_status"] = remote.get("remote_job_status")
        details["remote_job_id"] = remote.get("remote_job_id")
        # A failed remote job leaves the task's ``error`` empty: the service says why.
        error = task.error
        if error is None and mapping.state is TaskState.FAILED:
            error = remote.get("remote_job_error")
        return NormalizedTask(
            task_id=task_id,
            state=mapping.state,
            upstream_status=task.state,
            terminal=mapping.terminal,
            raw=payload,
            task_type=task.task_type,
            name=None,
            created_at=task.create_time,
            updated_at=task.last_update_time,
            finished_at=task.last_update_time if mapping.terminal else None,
            error=error,
            links=links,
            details={k: v for k, v in details.items() if v not in (None, [], {})},
        )

    def action_refusal(self, response: httpx.Response) -> str | None:
        # The RUNNING refusal is a plain Exception upstream, so it comes back as a 500.
        refused = super().action_refusal(response)
        if refused is None and RUNNING_REFUSAL in response.text:
            return answer_message(response)
        return refused

    def error_for(self, response: httpx.Response) -> FetchError:
        """Classify an error answer; OpenSearch's envelope gives the reason, a 401 is plain text."""
        reason: str | None = None
        if response.status_code != 401:
            body = read_json_as(ErrorResponse, response)
            if body is not None:
                reason = body.error.describe()
                # A search that failed on every shard says why only in its root cause.
                root = body.error.root_cause[0] if body.error.root_cause else None
                if root is not None and root.reason and root.reason != body.error.reason:
                    reason = f"{reason}: {root.describe()}" if reason else root.describe()
        elif not response.text.strip():
            reason = "Unauthorized"
        return self.status_error(response, message=reason)
