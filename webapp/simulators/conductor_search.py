"""Conductor's task search (PROVIDERS.md 3.1, 3.3): ``GET /api/tasks/search`` and ``search-v2``.

``TaskSummary`` rows as Conductor indexes them, the SQL-like ``query``
(:mod:`webapp.simulators.conductor_query`), ``freeText``, ``sort`` and ``start``/``size``
paging. The app in :mod:`webapp.simulators.conductor` serves it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from typing import Any

from werkzeug.datastructures import MultiDict

from webapp.simulators.conductor_query import Matcher
from webapp.simulators.conductor_query import compile_query
from webapp.simulators.conductor_query import named_task_ids


@dataclass
class Search:
    """One search request, parsed; :meth:`answer` runs it over the tasks' ``Task`` JSON."""

    start: int
    size: int
    matcher: Matcher
    free_text: str
    sort: list[str]
    #: The task ids the query compares ``taskId`` with, as written (``None``: none).
    task_ids: list[str] | None

    @classmethod
    def parse(cls, args: MultiDict[str, str]) -> Search:
        """Raises ``ValueError`` for paging that is not a number and
        :class:`~webapp.simulators.conductor_query.QueryFailure` for a query the parser or the
        index rejects."""
        start = int(args.get("start", 0))
        size = int(args.get("size", 100))
        query = args.get("query", "")
        return cls(
            start,
            size,
            compile_query(query),
            args.get("freeText", "*"),
            args.getlist("sort"),
            named_task_ids(query),
        )

    def answer(self, docs: list[dict[str, Any]], *, full: bool) -> dict[str, Any]:
        """``{totalHits, results}``: summaries, or the full documents for ``search-v2``."""
        hits: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for doc in docs:
            row = summary(doc)
            if self.matcher(row) and free_text_matches(self.free_text, row):
                hits.append((doc, row))
        for spec in reversed(self.sort):
            field, _, order = spec.partition(":")
            hits.sort(key=_by_field(field), reverse=order.upper() == "DESC")
        page = hits[max(0, self.start) : max(0, self.start) + max(0, self.size)]
        return {"totalHits": len(hits), "results": [doc if full else row for doc, row in page]}


def _by_field(field: str) -> Callable[[tuple[dict[str, Any], dict[str, Any]]], tuple[bool, str]]:
    """A sort key on one summary field; rows without it go last."""
    return lambda hit: (hit[1].get(field) is None, str(hit[1].get(field, "")))


# -- TaskSummary ----------------------------------------------------------------------------


def _iso(epoch_ms: Any) -> str:
    """``TaskSummary``'s ``yyyy-MM-dd'T'HH:mm:ss.SSS'Z'`` in GMT; 0 becomes 1970-01-01."""
    value = epoch_ms if isinstance(epoch_ms, int) and not isinstance(epoch_ms, bool) else 0
    moment = datetime.fromtimestamp(value / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value % 1000:03d}Z"


def _compact(value: Any) -> str | None:
    """A map serialized as Jackson writes it (no spaces); ``None`` stays null."""
    return None if value is None else json.dumps(value, separators=(",", ":"))


def summary(doc: dict[str, Any]) -> dict[str, Any]:
    """``new TaskSummary(task)``, in its field order; null fields are left out (NON_NULL)."""
    out: dict[str, Any] = {
        "workflowId": doc.get("workflowInstanceId"),
        "workflowType": doc.get("workflowType"),
        "correlationId": doc.get("correlationId"),
        "scheduledTime": _iso(doc.get("scheduledTime")),
        "startTime": _iso(doc.get("startTime")),
        "updateTime": _iso(doc.get("updateTime")),
        "endTime": _iso(doc.get("endTime")),
        "status": doc.get("status"),
        "reasonForIncompletion": doc.get("reasonForIncompletion"),
        "executionTime": 0,
        "queueWaitTime": doc.get("queueWaitTime", 0),
        "taskDefName": doc.get("taskDefName"),
        "taskType": doc.get("taskType"),
        "input": _compact(doc.get("inputData")),
        "output": _compact(doc.get("outputData")),
        "taskId": doc.get("taskId"),
        "workflowPriority": doc.get("workflowPriority", 0),
        "domain": doc.get("domain"),
    }
    end, start = doc.get("endTime"), doc.get("startTime")
    if isinstance(end, int) and end > 0 and isinstance(start, int):
        out["executionTime"] = end - start
    return {key: value for key, value in out.items() if value is not None}


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value)


def free_text_matches(free_text: str, row: dict[str, Any]) -> bool:
    """A small slice of ES query-string syntax: ``*``, words (anywhere) and ``field:value``."""
    haystack = json.dumps(row).lower()
    for token in free_text.split():
        if token in ("*", "AND"):
            continue
        field, sep, wanted = token.partition(":")
        if sep:
            actual = _text(row.get(field))
            wanted = wanted.strip("'\"")
            if actual is None or (wanted != "*" and actual.lower() != wanted.lower()):
                return False
        elif token.lower() not in haystack:
            return False
    return True
