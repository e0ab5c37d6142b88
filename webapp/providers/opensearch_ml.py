"""OpenSearch ML Commons tasks (PROVIDERS.md section 1).

GET ``/_plugins/_ml/tasks/{task_id}`` and POST ``/_plugins/_ml/tasks/_search``. Traps handled
here: the GET answer carries no ``task_id`` (we key by the id asked for; search hits by
``_id``), ``worker_node`` is a string before 2.5 and an array after, times are epoch
milliseconds, the security plugin's 401 is not JSON, and multi-tenant clusters need
``x-tenant-id`` on every call.
"""

from __future__ import annotations

import json
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
from webapp.providers.base import status_table

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


class MLTask(BaseModel):
    """``MLTask.toXContent``: every field but ``is_async`` is written only when set.

    Only ``state`` must be a string; the rest are read tolerantly in :func:`normalize` so that a
    field of an unexpected type is shown as it came rather than rejecting the task.
    """

    model_config = ConfigDict(extra="allow")

    state: str
    task_id: Any = None
    model_id: Any = None
    task_type: Any = None
    function_name: Any = None
    input_type: Any = None
    progress: Any = None
    output_index: Any = None
    worker_node: Any = None
    create_time: Any = None
    last_update_time: Any = None
    error: Any = None
    user: Any = None
    is_async: Any = None
    remote_job: Any = None
    response: Any = None
    tenant_id: Any = None


class SearchHit(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    source: dict[str, Any]

    @classmethod
    def from_raw(cls, hit: Any) -> SearchHit:
        if not isinstance(hit, dict):
            raise ValueError("hit is not an object")
        return cls(id=hit.get("_id"), source=hit.get("_source"))


def worker_nodes(value: Any) -> list[str]:
    """``worker_node`` as a list: arrays (2.5+) as they are, strings (older) split on commas."""
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return []


class OpenSearchMLProvider(Provider):
    name = "opensearch-ml"
    label = "OpenSearch ML Commons"
    api_prefix = "/_plugins/_ml/tasks"
    can_search = True
    max_page_size = 100
    #: One ``ids`` search answers this many tasks (well inside ``index.max_result_window``).
    batch_size = 100

    @classmethod
    def client_auth(cls, source: SourceConfig) -> httpx.Auth | None:
        username = source.secret("username_env")
        if username is None:
            return None
        return httpx.BasicAuth(username, source.secret("password_env") or "")

    @classmethod
    def client_headers(cls, source: SourceConfig) -> dict[str, str]:
        return {"x-tenant-id": source.tenant_id} if source.tenant_id else {}

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
            return parsed.get("query", parsed)
        return {"query_string": {"query": text}}

    def _search(self, query: dict[str, Any], offset: int, limit: int) -> SearchPage:
        # POST, not GET: some HTTP stacks drop GET bodies (PROVIDERS.md trap 23).
        body = {
            "query": query,
            "from": offset,
            "size": limit,
            "sort": [{"create_time": {"order": "desc"}}],
        }
        response = self.request("POST", f"{self.api_prefix}/_search", json=body)
        if response.status_code != 200:
            raise self.error_for(response)
        payload = self.json_body(response)
        try:
            hits_block = payload["hits"]
            hits = [SearchHit.from_raw(hit) for hit in hits_block["hits"]]
            total = hits_block.get("total")
            total_value = total.get("value") if isinstance(total, dict) else total
        except (KeyError, TypeError, ValueError, ValidationError) as exc:
            raise FetchError(
                FetchErrorKind.BAD_PAYLOAD,
                "search answer is not an OpenSearch search response",
                raw=payload,
            ) from exc
        tasks = [self.normalize(hit.id, hit.source) for hit in hits]
        return SearchPage(tasks, total_value if isinstance(total_value, int) else None)

    # -- reading answers ---------------------------------------------------------------------
    def normalize(self, task_id: str, payload: Any) -> NormalizedTask:
        try:
            task = MLTask.model_validate(payload)
        except ValidationError as exc:
            raise FetchError(
                FetchErrorKind.BAD_PAYLOAD,
                "task document has no string 'state'",
                raw=payload,
            ) from exc
        mapping = map_status(STATUSES, task.state, source=self.source.name, provider=self.name)
        updated = epoch_ms(task.last_update_time)
        links: dict[str, str] = {"api": self.api_url(task_id)}
        if isinstance(task.model_id, str):
            links["model_id"] = task.model_id
        details: dict[str, Any] = {
            "function_name": task.function_name,
            "input_type": task.input_type,
            "worker_nodes": worker_nodes(task.worker_node),
            "progress": task.progress,
            "output_index": task.output_index,
            "is_async": task.is_async,
            "tenant_id": task.tenant_id,
            "user": task.user.get("name") if isinstance(task.user, dict) else task.user,
            "remote_job": task.remote_job,
        }
        return NormalizedTask(
            task_id=task_id,
            state=mapping.state,
            upstream_status=task.state,
            terminal=mapping.terminal,
            raw=payload,
            task_type=as_text(task.task_type),
            name=None,
            created_at=epoch_ms(task.create_time),
            updated_at=updated,
            finished_at=updated if mapping.terminal else None,
            error=as_text(task.error),
            links=links,
            details={k: v for k, v in details.items() if v not in (None, [], {})},
        )

    def error_for(self, response: httpx.Response) -> FetchError:
        """Classify an error answer; OpenSearch's envelope gives the reason, a 401 is plain text."""
        reason: str | None = None
        if response.status_code != 401:
            try:
                body = response.json()
            except ValueError:
                body = None
            if isinstance(body, dict) and isinstance(body.get("error"), dict):
                reason = as_text(body["error"].get("reason"))
                error_type = body["error"].get("type")
                if reason and error_type:
                    reason = f"{reason} ({error_type})"
        elif not response.text.strip():
            reason = "Unauthorized"
        return self.status_error(response, message=reason)
