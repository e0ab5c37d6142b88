"""Mixpeek's ``POST /v1/tasks/list`` (PROVIDERS.md 2.1 and part 3): its request, filters, sort
and pages.

Paging comes in the query string, in any of three forms: ``limit``/``offset``,
``page``/``page_size``, or ``cursor`` (also spelled ``next_cursor`` or ``after``) from a previous
answer's ``pagination.next_cursor``; ``include_total`` comes in the query string or the body.
The JSON body filters by ``status``, ``task_type``, ``search`` (case-insensitive text matched
against ``task_id``, ``task_type`` and ``status``) and ``filters`` (AND/OR/NOT groups of
``{field, operator, value}``, e.g. ``task_id`` ``in`` a list), and sorts by ``sort``. A request
the server refuses is a 422 whose problems go into ``ErrorResponse``'s
``details.validation_errors``. The app in :mod:`webapp.simulators.mixpeek` serves it.
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
from webapp.simulators.mixpeek_enums import BODY_KEYS
from webapp.simulators.mixpeek_enums import FILTER_OPERATORS
from webapp.simulators.mixpeek_enums import STATUS_WORDS
from webapp.simulators.mixpeek_enums import TASK_TYPES

SIZE_RANGE = (1, 1000)
OFFSET_RANGE = (0, 10_000)
#: Page size when neither ``limit`` nor ``page_size`` is given (not documented).
DEFAULT_LIMIT = 10
#: The spellings of a cursor the list takes, the first one given winning.
CURSOR_PARAMS = ("cursor", "next_cursor", "after")
#: What the free-text ``search`` looks at (the list operation's description).
SEARCHED_FIELDS = ("task_id", "task_type", "status")

Row = tuple[SimTask, dict[str, Any]]
Problem = dict[str, Any]


class Invalid(Exception):
    """A request the server refuses: 422 with these problems."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(problems[0]["message"])
        self.problems = problems


@dataclass
class ListRequest:
    """One list request, validated."""

    size: int
    #: Where the page starts; ``None`` for a cursor this server did not write.
    start: int | None
    include_total: bool
    body: dict[str, Any]

    @classmethod
    def parse(cls, args: Mapping[str, str], data: bytes) -> ListRequest:
        """Raises :class:`Invalid` with every problem of the query string, then the body's."""
        problems: list[Problem] = []
        limit = _int_param(args, "limit", SIZE_RANGE, problems)
        page_size = _int_param(args, "page_size", SIZE_RANGE, problems)
        offset = _int_param(args, "offset", OFFSET_RANGE, problems)
        page = _int_param(args, "page", (1, None), problems)
        in_query = _bool(args.get("include_total"), ["query", "include_total"], problems)
        body = _list_body(data, problems)
        in_body = _bool(body.get("include_total"), ["body", "include_total"], problems)
        if problems:
            raise Invalid(problems)
        size = limit if limit is not None else page_size if page_size is not None else None
        size = DEFAULT_LIMIT if size is None else size
        cursor = next((args[name] for name in CURSOR_PARAMS if args.get(name)), None)
        start: int | None
        if cursor is not None:
            start = _decode_cursor(cursor)
        elif offset is not None:
            start = offset
        else:
            start = ((page or 1) - 1) * size
        return cls(size=size, start=start, include_total=in_query or in_body, body=body)

    def named_ids(self) -> list[str] | None:
        """The task ids the filters restrict the answer to (``None``: no such restriction)."""
        named = _named_ids(self.body.get("filters"))
        return None if named is None else sorted(named)

    def candidates(self, tasks: list[SimTask]) -> list[SimTask]:
        """The tasks that may match, found by id when the filters name ids (as the server's
        index on ``task_id`` would), so a by-id batch does not render every task."""
        named = _named_ids(self.body.get("filters"))
        if named is None:
            return tasks
        folded = {task_id.lower() for task_id in named}
        return [task for task in tasks if task.task_id.lower() in folded]

    def page(self, rows: list[Row], start: int) -> dict[str, Any]:
        """The ``{results, pagination}`` answer for the rows that match, from ``start``."""
        rows = _sort([row for row in rows if _matches(self.body, row[1])], self.body.get("sort"))
        size = self.size
        more = start + size < len(rows)
        pagination: dict[str, Any] = {
            "total": None,
            "page": start // size + 1,
            "page_size": size,
            "total_pages": None,
            "next_page": None,
            "previous_page": None,
            "next_cursor": _encode_cursor(start + size) if more else None,
        }
        if self.include_total:
            pagination["total"] = len(rows)
            pagination["total_pages"] = math.ceil(len(rows) / size)
        return {"results": [doc for _, doc in rows[start : start + size]], "pagination": pagination}


# -- request validation ---------------------------------------------------------------------------


def _problem(kind: str, location: list[Any], message: str) -> Problem:
    """One entry of ``details.validation_errors`` (the error guide's ``type``, ``location``,
    ``message``; pydantic v2's words)."""
    return {"type": kind, "location": location, "message": message}


_OBJECT_EXPECTED = "Input should be a valid dictionary or object to extract fields from"
_TRUE = ("true", "1", "yes", "on", "t", "y")
_FALSE = ("false", "0", "no", "off", "f", "n")


def _bool(raw: Any, location: list[Any], problems: list[Problem]) -> bool:
    """A boolean the way pydantic reads one (``true``, ``"yes"``, ``1``...); absent is false."""
    if raw is None or isinstance(raw, bool):
        return bool(raw)
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str) and raw.strip().lower() in _TRUE + _FALSE:
        return raw.strip().lower() in _TRUE
    message = "Input should be a valid boolean, unable to interpret input"
    problems.append(_problem("bool_parsing", location, message))
    return False


def _int_param(
    args: Mapping[str, str],
    name: str,
    bounds: tuple[int, int | None],
    problems: list[Problem],
) -> int | None:
    raw = args.get(name)
    if raw is None:
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        message = "Input should be a valid integer, unable to parse string as an integer"
        problems.append(_problem("int_parsing", ["query", name], message))
        return None
    low, high = bounds
    if value < low:
        message = f"Input should be greater than or equal to {low}"
        problems.append(_problem("greater_than_equal", ["query", name], message))
    elif high is not None and value > high:
        message = f"Input should be less than or equal to {high}"
        problems.append(_problem("less_than_equal", ["query", name], message))
    return value


def _list_body(data: bytes, problems: list[Problem]) -> dict[str, Any]:
    """The ``ListTasksRequest`` body (all fields optional; an empty body is ``{}``)."""
    if not data:
        return {}
    try:
        body = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        location = ["body", getattr(exc, "pos", 0)]
        problems.append(_problem("json_invalid", location, "JSON decode error"))
        return {}
    if body is None:
        return {}
    if not isinstance(body, dict):
        problems.append(_problem("model_attributes_type", ["body"], _OBJECT_EXPECTED))
        return {}
    accepted = ", ".join(BODY_KEYS)
    for key in body:
        if key not in BODY_KEYS:
            message = f"Extra inputs are not permitted (accepted keys: {accepted})"
            problems.append(_problem("extra_forbidden", ["body", key], message))
    status = body.get("status")
    if status is not None and status not in STATUS_WORDS:
        problems.append(_enum_problem(["body", "status"], STATUS_WORDS))
    task_type = body.get("task_type")
    if task_type is not None:
        # The enum values are lower case; the docs' list examples use the upper-case names.
        # Which the server takes is unverified (PROVIDERS.md gaps), so both are accepted.
        if not isinstance(task_type, str) or task_type.lower() not in TASK_TYPES:
            problems.append(_enum_problem(["body", "task_type"], TASK_TYPES))
        else:
            body["task_type"] = task_type.lower()
    search = body.get("search")
    if search is not None and not isinstance(search, str):
        message = "Input should be a valid string"
        problems.append(_problem("string_type", ["body", "search"], message))
    sort = body.get("sort")
    if sort is not None:
        if not isinstance(sort, dict) or not isinstance(sort.get("field"), str):
            problems.append(_problem("missing", ["body", "sort", "field"], "Field required"))
        elif sort.get("direction", "asc") not in ("asc", "desc"):
            problems.append(_enum_problem(["body", "sort", "direction"], ("asc", "desc")))
    filters = body.get("filters")
    if filters is not None:
        _check_node(filters, ["body", "filters"], problems)
    return body


def _enum_problem(location: list[Any], allowed: tuple[str, ...]) -> Problem:
    expected = ", ".join(f"'{word}'" for word in allowed[:-1]) + f" or '{allowed[-1]}'"
    return _problem("enum", location, f"Input should be {expected}")


def _check_node(node: Any, location: list[Any], problems: list[Problem]) -> None:
    """``LogicalOperator``: AND/OR/NOT lists of conditions or nested operators, ``case_sensitive``,
    and the ``{"field": value}`` equality shorthand for any other key."""
    if not isinstance(node, dict):
        problems.append(_problem("model_attributes_type", location, _OBJECT_EXPECTED))
        return
    for key, value in node.items():
        if key in ("AND", "OR", "NOT"):
            if not isinstance(value, list):
                problems.append(_problem("list_type", [*location, key], "Input should be a list"))
                continue
            for index, item in enumerate(value):
                where = [*location, key, index]
                if isinstance(item, dict) and "field" in item:
                    _check_condition(item, where, problems)
                else:
                    _check_node(item, where, problems)
        elif key == "case_sensitive" and not isinstance(value, bool):
            message = "Input should be a valid boolean"
            problems.append(_problem("bool_type", [*location, key], message))


def _check_condition(item: dict[str, Any], location: list[Any], problems: list[Problem]) -> None:
    if not isinstance(item["field"], str):
        message = "Input should be a valid string"
        problems.append(_problem("string_type", [*location, "field"], message))
    if item.get("operator", "eq") not in FILTER_OPERATORS:
        problems.append(_enum_problem([*location, "operator"], FILTER_OPERATORS))


# -- filtering and sorting -----------------------------------------------------------------------


def _matches(body: dict[str, Any], doc: dict[str, Any]) -> bool:
    if body.get("status") is not None and doc.get("status") != body["status"]:
        return False
    if body.get("task_type") is not None and doc.get("task_type") != body["task_type"]:
        return False
    search = body.get("search")
    if search:
        needle = search.lower()
        fields = (doc.get(key) for key in SEARCHED_FIELDS)
        if not any(isinstance(value, str) and needle in value.lower() for value in fields):
            return False
    filters = body.get("filters")
    return not filters or _logical(filters, doc, bool(filters.get("case_sensitive", False)))


def _logical(node: dict[str, Any], doc: dict[str, Any], case_sensitive: bool) -> bool:
    results: list[bool] = []
    for key, value in node.items():
        if key == "case_sensitive":
            continue
        if key in ("AND", "OR", "NOT"):
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


def _condition(item: dict[str, Any], doc: dict[str, Any], case_sensitive: bool) -> bool:
    if "field" in item:
        operator = item.get("operator", "eq")
        return _compare(operator, _lookup(doc, item["field"]), item.get("value"), case_sensitive)
    return _logical(item, doc, case_sensitive)


def _named_ids(node: Any) -> set[str] | None:
    """The ids a ``filters`` node restricts ``task_id`` to: conditions ``eq`` a string or ``in``
    a list, intersected under AND, united under an OR made of nothing else."""
    if not isinstance(node, dict):
        return None
    restrictions: list[set[str]] = []
    for key, value in node.items():
        if key == "AND" and isinstance(value, list):
            restrictions += [ids for ids in map(_item_ids, value) if ids is not None]
        elif key == "OR" and isinstance(value, list) and value:
            branches = [_item_ids(item) for item in value]
            if all(ids is not None for ids in branches):
                restrictions.append(set().union(*(ids for ids in branches if ids is not None)))
        elif key == "task_id" and isinstance(value, str):
            restrictions.append({value})
    if not restrictions:
        return None
    return set.intersection(*restrictions)


def _item_ids(item: Any) -> set[str] | None:
    if not isinstance(item, dict):
        return None
    if "field" not in item:
        return _named_ids(item)
    if item["field"] != "task_id":
        return None
    operator, value = item.get("operator", "eq"), item.get("value")
    if operator == "eq" and isinstance(value, str):
        return {value}
    if operator == "in" and isinstance(value, list):
        return {v for v in value if isinstance(v, str)}
    return None


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
    if operator in ("contains", "text", "phrase"):
        if isinstance(a, list):
            return w in [fold(x) for x in a]
        return isinstance(a, str) and isinstance(w, str) and w in a
    if operator == "words":
        if not isinstance(a, str) or not isinstance(w, str):
            return False
        present = set(re.findall(r"\w+", a))
        return all(word in present for word in re.findall(r"\w+", w))
    if operator == "starts_with":
        return isinstance(a, str) and isinstance(w, str) and a.startswith(w)
    if operator == "ends_with":
        return isinstance(a, str) and isinstance(w, str) and a.endswith(w)
    if operator == "regex":
        flags = 0 if case_sensitive else re.IGNORECASE
        return isinstance(actual, str) and re.search(str(wanted), actual, flags) is not None
    if operator.startswith("geo_"):
        return False  # a task has no coordinates
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
