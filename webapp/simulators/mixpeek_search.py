"""Mixpeek's ``POST /v1/tasks/list`` (PROVIDERS.md 2.1): its request, filters, sort and pages.

Paging comes in the query string (``limit`` 1-1000, ``offset`` 0-10000, ``cursor``,
``include_total``) and filters in the JSON body (``status``, ``task_type``, ``filters``, ``sort``,
``search``); what FastAPI would refuse is a 422 with pydantic v2's wording. The app in
:mod:`webapp.simulators.mixpeek` serves it.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from webapp.simulators.core import SimTask
from webapp.simulators.core import read_seed

#: TaskStatusEnum (openapi 0.81: the seed's list plus COMPLETED_WITH_ERRORS).
STATUS_WORDS = (
    "PENDING",
    "IN_PROGRESS",
    "PROCESSING",
    "COMPLETED",
    "COMPLETED_WITH_ERRORS",
    "FAILED",
    "CANCELED",
    "UNKNOWN",
    "SKIPPED",
    "DRAFT",
    "ACTIVE",
    "ARCHIVED",
    "SUSPENDED",
)
#: TaskType values beyond the seed's list (python-sdk ``TaskType.md``; ``plugin_custom`` from
#: PROVIDERS.md 2.3), so a list filter on any of them is accepted.
_MORE_TASK_TYPES = (
    "api_namespaces_delete",
    "api_namespaces_migrations_run",
    "api_collections_documents_create",
    "api_collections_extraction_artifacts",
    "api_evaluations_run",
    "api_evaluations_dataset_create",
    "api_retrievers_publish",
    "video_segment",
    "audio_segment",
    "plugin_custom",
)
TASK_TYPES: tuple[str, ...] = tuple(read_seed("mixpeek")["task_types"]) + _MORE_TASK_TYPES
LIMIT_RANGE = (1, 1000)
OFFSET_RANGE = (0, 10_000)
#: Page size when ``limit`` is not given (not documented; 10 is FastAPI-typical).
DEFAULT_LIMIT = 10

Row = tuple[SimTask, dict[str, Any]]


class Invalid(Exception):
    """A request FastAPI refuses: 422 with these pydantic problems."""

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        super().__init__(problems[0]["msg"])
        self.problems = problems


@dataclass
class ListRequest:
    """One list request, validated."""

    limit: int
    offset: int
    cursor: str | None
    include_total: bool
    body: dict[str, Any]

    @classmethod
    def parse(cls, args: Mapping[str, str], data: bytes) -> ListRequest:
        """Raises :class:`Invalid` with every problem of the query string, then the body's."""
        problems: list[dict[str, Any]] = []
        limit = _int_param(args, "limit", LIMIT_RANGE, problems)
        offset = _int_param(args, "offset", OFFSET_RANGE, problems)
        include_total = _bool_param(args, "include_total", problems)
        body = _list_body(data, problems)
        if problems:
            raise Invalid(problems)
        return cls(
            limit=DEFAULT_LIMIT if limit is None else limit,
            offset=0 if offset is None else offset,
            cursor=args.get("cursor"),
            include_total=include_total,
            body=body,
        )

    def start(self) -> int | None:
        """Where the page starts: the cursor's position, else ``offset``; ``None`` for a cursor
        this server did not write."""
        return self.offset if self.cursor is None else _decode_cursor(self.cursor)

    def page(self, rows: list[Row], start: int) -> dict[str, Any]:
        """The ``{results, pagination}`` answer; a filter FastAPI would refuse raises
        :class:`Invalid` (found while matching, so only once there is a row to match)."""
        rows = _sort([row for row in rows if _matches(self.body, row[1])], self.body.get("sort"))
        limit = self.limit
        page = rows[start : start + limit]
        more = start + limit < len(rows)
        pagination: dict[str, Any] = {
            "total": None,
            "page": start // limit + 1,
            "page_size": limit,
            "total_pages": None,
            "next_page": None,
            "previous_page": None,
            "next_cursor": _encode_cursor(start + limit) if more else None,
        }
        if self.include_total:
            pagination["total"] = len(rows)
            pagination["total_pages"] = math.ceil(len(rows) / limit)
        return {"results": [doc for _, doc in page], "pagination": pagination}


# -- request validation (FastAPI/pydantic v2 wording) --------------------------------------------


def _problem(
    kind: str, loc: list[Any], msg: str, value: Any, ctx: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One pydantic v2 error, keys in pydantic's order."""
    problem = {"type": kind, "loc": loc, "msg": msg, "input": value}
    if ctx is not None:
        problem["ctx"] = ctx
    return problem


_OBJECT_EXPECTED = "Input should be a valid dictionary or object to extract fields from"
_TRUE = ("true", "1", "yes", "on", "t", "y")
_FALSE = ("false", "0", "no", "off", "f", "n")


def _bool_param(args: Mapping[str, str], name: str, problems: list[dict[str, Any]]) -> bool:
    raw = args.get(name)
    if raw is None or raw.strip().lower() in _FALSE:
        return False
    if raw.strip().lower() in _TRUE:
        return True
    msg = "Input should be a valid boolean, unable to interpret input"
    problems.append(_problem("bool_parsing", ["query", name], msg, raw))
    return False


def _int_param(
    args: Mapping[str, str], name: str, bounds: tuple[int, int], problems: list[dict[str, Any]]
) -> int | None:
    raw = args.get(name)
    if raw is None:
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        msg = "Input should be a valid integer, unable to parse string as an integer"
        problems.append(_problem("int_parsing", ["query", name], msg, raw))
        return None
    low, high = bounds
    if value < low:
        msg = f"Input should be greater than or equal to {low}"
        problems.append(_problem("greater_than_equal", ["query", name], msg, raw, {"ge": low}))
    elif value > high:
        msg = f"Input should be less than or equal to {high}"
        problems.append(_problem("less_than_equal", ["query", name], msg, raw, {"le": high}))
    return value


def _list_body(data: bytes, problems: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``ListTasksRequest`` body (all fields optional; an empty body is ``{}``)."""
    if not data:
        return {}
    try:
        body = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        location = ["body", getattr(exc, "pos", 0)]
        error = {"error": getattr(exc, "msg", str(exc))}
        problems.append(_problem("json_invalid", location, "JSON decode error", {}, error))
        return {}
    if body is None:
        return {}
    if not isinstance(body, dict):
        problems.append(_problem("model_attributes_type", ["body"], _OBJECT_EXPECTED, body))
        return {}
    status = body.get("status")
    if status is not None and status not in STATUS_WORDS:
        problems.append(_enum_problem("status", status, STATUS_WORDS))
    task_type = body.get("task_type")
    if task_type is not None:
        # The enum values are lower case; the docs' list examples use the upper-case names.
        # Which the server takes is unverified (PROVIDERS.md gaps), so both are accepted.
        if not isinstance(task_type, str) or task_type.lower() not in TASK_TYPES:
            problems.append(_enum_problem("task_type", task_type, TASK_TYPES))
        else:
            body["task_type"] = task_type.lower()
    search = body.get("search")
    if search is not None and not isinstance(search, str):
        msg = "Input should be a valid string"
        problems.append(_problem("string_type", ["body", "search"], msg, search))
    sort = body.get("sort")
    if sort is not None:
        if not isinstance(sort, dict) or not isinstance(sort.get("field"), str):
            problems.append(_problem("missing", ["body", "sort", "field"], "Field required", sort))
        elif sort.get("direction", "asc") not in ("asc", "desc"):
            problems.append(_enum_problem("sort.direction", sort.get("direction"), ("asc", "desc")))
    filters = body.get("filters")
    if filters is not None and not isinstance(filters, dict):
        location = ["body", "filters"]
        problems.append(_problem("model_attributes_type", location, _OBJECT_EXPECTED, filters))
    return body


def _enum_problem(name: str, value: Any, allowed: tuple[str, ...]) -> dict[str, Any]:
    expected = ", ".join(f"'{word}'" for word in allowed[:-1]) + f" or '{allowed[-1]}'"
    location = ["body", *name.split(".")]
    return _problem("enum", location, f"Input should be {expected}", value, {"expected": expected})


# -- filtering and sorting -----------------------------------------------------------------------


_OPERATORS = (
    "eq", "ne", "gt", "lt", "gte", "lte", "in", "nin", "contains", "starts_with", "ends_with",
    "regex", "exists", "is_null", "text",
)  # fmt: skip


_SEARCHED_FIELDS = ("task_id", "task_type", "description", "inputs", "outputs", "additional_data")


def _matches(body: dict[str, Any], doc: dict[str, Any]) -> bool:
    if body.get("status") is not None and doc.get("status") != body["status"]:
        return False
    if body.get("task_type") is not None and doc.get("task_type") != body["task_type"]:
        return False
    search = body.get("search")
    if search:
        # Which fields the search term looks at is undocumented; ids, type, description and
        # the inputs/outputs/additional_data text is the useful guess.
        haystack = " ".join(
            value if isinstance(value, str) else json.dumps(value, default=str)
            for value in (doc.get(key) for key in _SEARCHED_FIELDS)
        ).lower()
        if search.lower() not in haystack:
            return False
    filters = body.get("filters")
    return not filters or _logical(filters, doc, bool(filters.get("case_sensitive", False)))


def _logical(node: dict[str, Any], doc: dict[str, Any], case_sensitive: bool) -> bool:
    """``LogicalOperator``: AND/OR/NOT lists of conditions or nested operators, or the
    ``{"field": value}`` equality shorthand."""
    results: list[bool] = []
    for key, value in node.items():
        if key == "case_sensitive":
            continue
        if key in ("AND", "OR", "NOT"):
            if not isinstance(value, list):
                msg = "Input should be a valid list"
                raise Invalid([_problem("list_type", ["body", "filters", key], msg, value)])
            parts = [_condition(item, doc, case_sensitive) for item in value]
            if key == "AND":
                results.append(all(parts))
            elif key == "OR":
                results.append(any(parts))
            else:
                results.append(not any(parts))
        else:
            results.append(_compare("eq", _lookup(doc, key), value, case_sensitive))
    return all(results)


def _condition(item: Any, doc: dict[str, Any], case_sensitive: bool) -> bool:
    if isinstance(item, dict) and "field" in item:
        operator = item.get("operator", "eq")
        if operator not in _OPERATORS:
            raise Invalid([_enum_problem("filters.operator", operator, _OPERATORS)])
        return _compare(operator, _lookup(doc, item["field"]), item.get("value"), case_sensitive)
    if isinstance(item, dict):
        return _logical(item, doc, case_sensitive)
    raise Invalid([_problem("model_attributes_type", ["body", "filters"], _OBJECT_EXPECTED, item)])


_MISSING = object()


def _lookup(doc: dict[str, Any], path: str) -> Any:
    value: Any = doc
    for part in str(path).split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _compare(operator: str, actual: Any, wanted: Any, case_sensitive: bool) -> bool:
    expected = True if wanted is None else bool(wanted)
    if operator == "exists":
        return (actual is not _MISSING) == expected
    if operator == "is_null":
        return (actual is _MISSING or actual is None) == expected
    if actual is _MISSING:
        return operator in ("ne", "nin")

    def fold(value: Any) -> Any:
        return value.lower() if isinstance(value, str) and not case_sensitive else value

    a, w = fold(actual), fold(wanted)
    if operator == "eq":
        return a == w or (isinstance(a, list) and w in [fold(x) for x in a])
    if operator == "ne":
        return a != w
    if operator in ("in", "nin"):
        found = isinstance(wanted, list) and a in [fold(x) for x in wanted]
        return found if operator == "in" else not found
    if operator in ("contains", "text"):
        if isinstance(a, list):
            return w in [fold(x) for x in a]
        return isinstance(a, str) and isinstance(w, str) and w in a
    if operator == "starts_with":
        return isinstance(a, str) and isinstance(w, str) and a.startswith(w)
    if operator == "ends_with":
        return isinstance(a, str) and isinstance(w, str) and a.endswith(w)
    if operator == "regex":
        flags = 0 if case_sensitive else re.IGNORECASE
        return isinstance(actual, str) and re.search(str(wanted), actual, flags) is not None
    try:
        if operator == "gt":
            return a > w
        if operator == "lt":
            return a < w
        if operator == "gte":
            return a >= w
        return a <= w
    except TypeError:
        return False


def _sort(rows: list[Row], sort: dict[str, Any] | None) -> list[Row]:
    """Default ``created_at`` ascending (the SortOption default direction is ``asc``)."""
    field = (sort or {}).get("field", "created_at")
    reverse = (sort or {}).get("direction", "asc") == "desc"

    def key(row: Row) -> tuple[int, str, float]:
        task, doc = row
        if field == "created_at":
            # Not in the TaskResponse, but the server keeps it (the sort examples use it).
            return (0, "", task.started_at)
        value = _lookup(doc, field)
        if value is _MISSING or value is None:
            return (1, "", task.started_at)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return (0, f"{value:030.6f}", task.started_at)
        return (0, json.dumps(value, default=str) if not isinstance(value, str) else value, 0.0)

    return sorted(rows, key=key, reverse=reverse)


def _encode_cursor(position: int) -> str:
    raw = json.dumps({"o": position}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int | None:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position = json.loads(raw)["o"]
    except (ValueError, KeyError, TypeError):
        return None
    return position if isinstance(position, int) and position >= 0 else None
