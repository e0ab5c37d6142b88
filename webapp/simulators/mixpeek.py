"""A Mixpeek tasks API on loopback (PROVIDERS.md section 2, seed 002).

Faithful points: ``GET /v1/tasks/{task_id}`` answers a ``TaskResponse`` with no times;
``POST /v1/tasks/list`` takes paging in the query string (``limit`` 1-1000, ``offset`` 0-10000,
``cursor``, ``include_total``) and filters in the JSON body (``status``, ``task_type``,
``filters``, ``sort``, ``search``), and bad parameters get FastAPI's 422 ``{detail: [...]}``;
``DELETE /v1/tasks/{task_id}`` kills a task and succeeds whether or not the task exists.
A missing or wrong bearer key gets the 401 envelope. Every authenticated answer carries
``X-RateLimit-*`` headers from a token bucket per key; an empty bucket answers 429
``TooManyRequestsError`` with ``Retry-After``. A task ``ttl_seconds`` old (by the simulator
clock) is gone from Redis and answers 404 ``NotFoundError``. A failed task carries its text in
``error``, ``error_message`` and ``additional_data.error`` (PROVIDERS.md trap 12).
"""

from __future__ import annotations

import base64
import json
import math
import re
import threading
from dataclasses import dataclass
from importlib import resources
from typing import Any

from flask import Flask
from flask import Response
from flask import g
from flask import jsonify
from flask import request

from webapp.simulators.core import Fault
from webapp.simulators.core import Phase
from webapp.simulators.core import SimTask
from webapp.simulators.core import SimulatorState
from webapp.simulators.core import demo_source_entry
from webapp.simulators.core import fault_response
from webapp.simulators.core import new_simulator_app
from webapp.simulators.core import sim_state

PREFIX = "/v1/tasks"
#: The enum docstring's four terminal words, plus SKIPPED and ARCHIVED, which never move on.
TERMINAL = frozenset(
    {"COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED", "CANCELED", "SKIPPED", "ARCHIVED"}
)
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
LIMIT_RANGE = (1, 1000)
OFFSET_RANGE = (0, 10_000)
#: Page size when ``limit`` is not given (not documented; 10 is FastAPI-typical).
DEFAULT_LIMIT = 10
#: Redis keeps a task about a day (TaskModel docstring, ``processing/tasks.mdx``).
DEFAULT_TTL_SECONDS = 86_400.0
#: Pro tier: 600 requests per minute (``operations/rate-limits-quotas.mdx``).
DEFAULT_RATE_LIMIT = 600
DEFAULT_RATE_WINDOW = 60.0


def seed_examples() -> dict[str, Any]:
    """The seed document's examples (``seeds/mixpeek.json``)."""
    text = resources.files("webapp.simulators").joinpath("seeds/mixpeek.json").read_text()
    return json.loads(text)


TASK_TYPES: tuple[str, ...] = tuple(seed_examples()["task_types"]) + _MORE_TASK_TYPES


def load_seed_tasks(state: SimulatorState) -> list[str]:
    """Serve the seed's two example responses under their own ``task_id``; returns the ids.

    The response example (PROCESSING) is ``task_abc123def456``; the FAILED example from the
    ``TaskResponse`` prose is ``task_abc123``. Both are served exactly as written.
    """
    seeds = seed_examples()
    ids: list[str] = []
    for name in ("get_example", "failed_example"):
        payload = seeds[name]
        state.add_fixed(payload["task_id"], payload, "status")
        ids.append(payload["task_id"])
    return ids


# -- rendering ---------------------------------------------------------------------------------


def document(task: SimTask, now: float) -> dict[str, Any]:
    """The ``TaskResponse`` for a task now (FastAPI writes every field, ``null`` when unset)."""
    if task.fixed_payload is not None:
        return task.fixed_payload
    status = task.status(now)
    fields = task.fields
    extra: dict[str, Any] = dict(fields.get("additional_data") or {})
    outputs: Any = None
    error: str | None = None
    if status in ("COMPLETED", "COMPLETED_WITH_ERRORS"):
        outputs = fields.get("outputs") or []
    if status == "FAILED":
        error = fields.get("error") or "Task failed"
        extra["error"] = error
    description = (fields.get("descriptions") or {}).get(status)
    doc: dict[str, Any] = {
        "task_id": task.task_id,
        "task_type": fields.get("task_type", "api_buckets_batches_process"),
        "status": status,
        "inputs": fields.get("inputs", []),
        "outputs": outputs,
        "additional_data": extra or None,
        "error": error,
        "error_message": error,
    }
    if description:
        doc["description"] = description
    return doc


def error_envelope(
    status: int, error_type: str, message: str, details: dict[str, Any] | None = None
) -> Response:
    """The documented ``ErrorResponse``: ``{success: false, status, error: {type, message,
    details}}``."""
    response = jsonify(
        {
            "success": False,
            "status": status,
            "error": {"message": message, "type": error_type, "details": details},
        }
    )
    response.status_code = status
    return response


def not_found(task_id: str | None) -> Response:
    return error_envelope(
        404, "NotFoundError", "Task not found", {"resource": "task", "id": task_id}
    )


def validation_error(problems: list[dict[str, Any]]) -> Response:
    """FastAPI's ``HTTPValidationError`` (the shape the openapi declares for 422)."""
    response = jsonify({"detail": problems})
    response.status_code = 422
    return response


def too_many_requests(limit: int, window: float, retry_after: int) -> Response:
    response = error_envelope(
        429,
        "TooManyRequestsError",
        "Rate limit exceeded",
        {"limit": limit, "window": _window_text(window), "retry_after": retry_after},
    )
    response.headers["Retry-After"] = str(retry_after)
    response.headers["X-RateLimit-Remaining"] = "0"
    return response


def render_fault(fault: Fault, task_id: str | None) -> Response:
    if fault is Fault.NOT_FOUND:
        return not_found(task_id)
    if fault is Fault.UNAUTHORIZED:
        return error_envelope(401, "UnauthorizedError", "Invalid API key")
    if fault is Fault.RATE_LIMITED:
        # fault_response adds Retry-After from the rule; the after_request hook fills
        # details (limit, window, retry_after) from the bucket and that header.
        response = error_envelope(429, "TooManyRequestsError", "Rate limit exceeded", {})
        response.headers["X-RateLimit-Remaining"] = "0"
        return response
    return error_envelope(500, "InternalServerError", "An unexpected error occurred")


def _window_text(window: float) -> str:
    """``details.window`` as the docs write it (``"1m"``), in seconds when not whole minutes."""
    if window >= 60 and window % 60 == 0:
        return f"{int(window // 60)}m"
    return f"{window:g}s"


# -- the token bucket ----------------------------------------------------------------------------


_EPSILON = 1e-9


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBucket:
    """One bucket per API key: ``limit`` tokens, refilled at ``limit / window`` per second.

    Runs on the simulator clock, so a test empties it and advances the clock to refill it.
    """

    def __init__(self, limit: int, window: float) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("rate limit needs limit >= 1 and window > 0")
        self.limit = limit
        self.window = window
        self._rate = limit / window
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, key: str, now: float) -> tuple[bool, dict[str, str], int]:
        """Spend one token: (allowed, X-RateLimit-* headers, seconds until a token is back)."""
        with self._lock:
            bucket = self._buckets.setdefault(key, _Bucket(float(self.limit), now))
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(float(self.limit), bucket.tokens + elapsed * self._rate)
            bucket.updated = now
            # A hair of slack so float refill (19 x 0.05 + 0.05) does not miss a whole token.
            allowed = bucket.tokens >= 1.0 - _EPSILON
            if allowed:
                bucket.tokens = max(0.0, bucket.tokens - 1.0)
            missing = max(0.0, 1.0 - bucket.tokens)
            retry_after = 0 if allowed else max(1, math.ceil(missing / self._rate - _EPSILON))
            full_at = now + (self.limit - bucket.tokens) / self._rate
            headers = {
                "X-RateLimit-Limit": str(self.limit),
                "X-RateLimit-Remaining": str(int(bucket.tokens + _EPSILON)),
                "X-RateLimit-Reset": str(math.ceil(full_at)),
                "X-RateLimit-Window": f"{self.window:g}",
            }
            return allowed, headers, retry_after


# -- the app -------------------------------------------------------------------------------------


def create_app(
    state: SimulatorState,
    *,
    api_key: str | None = None,
    rate_limit: int = DEFAULT_RATE_LIMIT,
    rate_window: float = DEFAULT_RATE_WINDOW,
    ttl_seconds: float = DEFAULT_TTL_SECONDS,
) -> Flask:
    """The simulator app. With ``api_key`` set, ``Authorization: Bearer <api_key>`` is enforced.

    ``rate_limit`` requests per ``rate_window`` seconds per key; tasks ``ttl_seconds`` old 404.
    """
    app = new_simulator_app("mixpeek", state, "status")
    bucket = TokenBucket(rate_limit, rate_window)

    def expired(task: SimTask, now: float) -> bool:
        return now - task.started_at >= ttl_seconds

    def live_task(task_id: str) -> SimTask | None:
        task = state.get(task_id)
        if task is None or expired(task, state.clock.now()):
            return None
        return task

    @app.before_request
    def check_access() -> Response | None:
        if request.path.startswith("/_control"):
            return None
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        if api_key is not None:
            if not header:
                return error_envelope(401, "UnauthorizedError", "Missing Authorization header")
            if scheme.lower() != "bearer" or presented.strip() != api_key:
                return error_envelope(401, "UnauthorizedError", "Invalid API key")
        # Limits are per API key (rate-limits-quotas.mdx); unauthenticated calls never get here
        # when a key is enforced.
        allowed, headers, retry_after = bucket.take(presented.strip() or "-", state.clock.now())
        g.rate_limit_headers = headers
        if not allowed:
            return too_many_requests(bucket.limit, bucket.window, retry_after)
        return None

    @app.after_request
    def add_rate_limit_headers(response: Response) -> Response:
        for name, value in (getattr(g, "rate_limit_headers", None) or {}).items():
            response.headers.setdefault(name, value)
        if response.status_code == 429 and response.is_json:
            _complete_429_details(response, bucket)
        return response

    @app.errorhandler(404)
    def route_not_found(_: Exception) -> Response:
        return error_envelope(404, "NotFoundError", "Route not found")

    @app.errorhandler(405)
    def method_not_allowed(_: Exception) -> Response:
        return error_envelope(405, "MethodNotAllowedError", "Method Not Allowed")

    @app.post(f"{PREFIX}/list")
    def list_tasks() -> Response:
        sim = sim_state()
        sim.count("list")
        paging, problems = _paging(request.args)
        body, body_problems = _list_body()
        problems += body_problems
        if problems:
            return validation_error(problems)
        faulty = fault_response(sim, None, render_fault)
        if faulty is not None:
            return faulty
        if paging["cursor"] is not None:
            start = _decode_cursor(paging["cursor"])
            if start is None:
                return error_envelope(400, "BadRequestError", "Invalid pagination cursor")
        else:
            start = paging["offset"]
        now = sim.clock.now()
        rows = [
            (task, document(task, now)) for task in sim.visible_tasks() if not expired(task, now)
        ]
        try:
            rows = [row for row in rows if _matches(body, row[1])]
        except _BadFilter as exc:
            return validation_error([exc.problem])
        rows = _sort(rows, body.get("sort"))
        limit = paging["limit"]
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
        if paging["include_total"]:
            pagination["total"] = len(rows)
            pagination["total_pages"] = math.ceil(len(rows) / limit)
        return jsonify({"results": [doc for _, doc in page], "pagination": pagination})

    @app.get(f"{PREFIX}/<path:task_id>")
    def get_task(task_id: str) -> Response:
        sim = sim_state()
        sim.count("get")
        faulty = fault_response(sim, [task_id], render_fault)
        if faulty is not None:
            return faulty
        task = live_task(task_id)
        if task is None:
            return not_found(task_id)
        return jsonify(document(task, sim.clock.now()))

    @app.delete(f"{PREFIX}/<path:task_id>")
    def kill_task(task_id: str) -> Response:
        sim = sim_state()
        sim.count("delete")
        faulty = fault_response(sim, [task_id], render_fault)
        if faulty is not None:
            return faulty
        task = live_task(task_id)
        if task is not None:
            with sim.lock:
                _kill(task, sim.clock.now())
        # Idempotent: the same answer for a missing or already finished task.
        return jsonify({"message": "Successfully deleted", "success": True})

    return app


def _kill(task: SimTask, now: float) -> None:
    """Stop a task where it is: the current phase ends now and CANCELED follows."""
    if task.fixed_payload is not None:
        if task.fixed_payload.get("status") not in TERMINAL:
            task.fixed_payload = {**task.fixed_payload, "status": "CANCELED"}
            task.phases = [Phase("CANCELED")]
        return
    index, began = task.progress(now)
    if task.phases[index].status in TERMINAL:
        return
    kept = task.phases[:index] + [Phase(task.phases[index].status, max(0.0, now - began))]
    task.phases = kept + [Phase("CANCELED")]


def _complete_429_details(response: Response, bucket: TokenBucket) -> None:
    """Give a 429 the documented ``details.{limit, window, retry_after}``, agreeing with its
    ``Retry-After`` header (a fault-injected 429 has only the header)."""
    body = response.get_json(silent=True)
    retry_after = response.headers.get("Retry-After")
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        return
    details = body["error"].get("details") or {}
    details.setdefault("limit", bucket.limit)
    details.setdefault("window", _window_text(bucket.window))
    if details.get("retry_after") is None and retry_after:
        details["retry_after"] = int(float(retry_after))
    body["error"]["details"] = details
    response.set_data(json.dumps(body))


# -- request validation (FastAPI/pydantic v2 wording) --------------------------------------------


def _paging(args: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    problems: list[dict[str, Any]] = []
    limit = _int_param(args, "limit", LIMIT_RANGE, problems)
    offset = _int_param(args, "offset", OFFSET_RANGE, problems)
    include_total = False
    raw_total = args.get("include_total")
    if raw_total is not None:
        lowered = raw_total.strip().lower()
        if lowered in ("true", "1", "yes", "on", "t", "y"):
            include_total = True
        elif lowered not in ("false", "0", "no", "off", "f", "n"):
            problems.append(
                {
                    "type": "bool_parsing",
                    "loc": ["query", "include_total"],
                    "msg": "Input should be a valid boolean, unable to interpret input",
                    "input": raw_total,
                }
            )
    paging = {
        "limit": DEFAULT_LIMIT if limit is None else limit,
        "offset": 0 if offset is None else offset,
        "cursor": args.get("cursor"),
        "include_total": include_total,
    }
    return paging, problems


def _int_param(
    args: Any, name: str, bounds: tuple[int, int], problems: list[dict[str, Any]]
) -> int | None:
    raw = args.get(name)
    if raw is None:
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        problems.append(
            {
                "type": "int_parsing",
                "loc": ["query", name],
                "msg": "Input should be a valid integer, unable to parse string as an integer",
                "input": raw,
            }
        )
        return None
    low, high = bounds
    if value < low:
        problems.append(
            {
                "type": "greater_than_equal",
                "loc": ["query", name],
                "msg": f"Input should be greater than or equal to {low}",
                "input": raw,
                "ctx": {"ge": low},
            }
        )
    elif value > high:
        problems.append(
            {
                "type": "less_than_equal",
                "loc": ["query", name],
                "msg": f"Input should be less than or equal to {high}",
                "input": raw,
                "ctx": {"le": high},
            }
        )
    return value


def _list_body() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The ``ListTasksRequest`` body (all fields optional; an empty body is ``{}``)."""
    if not request.get_data():
        return {}, []
    try:
        body = json.loads(request.get_data())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return {}, [
            {
                "type": "json_invalid",
                "loc": ["body", getattr(exc, "pos", 0)],
                "msg": "JSON decode error",
                "input": {},
                "ctx": {"error": getattr(exc, "msg", str(exc))},
            }
        ]
    if body is None:
        return {}, []
    if not isinstance(body, dict):
        return {}, [
            {
                "type": "model_attributes_type",
                "loc": ["body"],
                "msg": "Input should be a valid dictionary or object to extract fields from",
                "input": body,
            }
        ]
    problems: list[dict[str, Any]] = []
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
        problems.append(
            {
                "type": "string_type",
                "loc": ["body", "search"],
                "msg": "Input should be a valid string",
                "input": search,
            }
        )
    sort = body.get("sort")
    if sort is not None:
        if not isinstance(sort, dict) or not isinstance(sort.get("field"), str):
            problems.append(
                {
                    "type": "missing",
                    "loc": ["body", "sort", "field"],
                    "msg": "Field required",
                    "input": sort,
                }
            )
        elif sort.get("direction", "asc") not in ("asc", "desc"):
            problems.append(_enum_problem("sort.direction", sort.get("direction"), ("asc", "desc")))
    filters = body.get("filters")
    if filters is not None and not isinstance(filters, dict):
        problems.append(
            {
                "type": "model_attributes_type",
                "loc": ["body", "filters"],
                "msg": "Input should be a valid dictionary or object to extract fields from",
                "input": filters,
            }
        )
    return body, problems


def _enum_problem(name: str, value: Any, allowed: tuple[str, ...]) -> dict[str, Any]:
    expected = ", ".join(f"'{word}'" for word in allowed[:-1]) + f" or '{allowed[-1]}'"
    return {
        "type": "enum",
        "loc": ["body", *name.split(".")],
        "msg": f"Input should be {expected}",
        "input": value,
        "ctx": {"expected": expected},
    }


# -- filtering and sorting -----------------------------------------------------------------------


class _BadFilter(Exception):
    def __init__(self, problem: dict[str, Any]) -> None:
        super().__init__(problem["msg"])
        self.problem = problem


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
                raise _BadFilter(
                    {
                        "type": "list_type",
                        "loc": ["body", "filters", key],
                        "msg": "Input should be a valid list",
                        "input": value,
                    }
                )
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
            raise _BadFilter(_enum_problem("filters.operator", operator, _OPERATORS))
        return _compare(operator, _lookup(doc, item["field"]), item.get("value"), case_sensitive)
    if isinstance(item, dict):
        return _logical(item, doc, case_sensitive)
    raise _BadFilter(
        {
            "type": "model_attributes_type",
            "loc": ["body", "filters"],
            "msg": "Input should be a valid dictionary or object to extract fields from",
            "input": item,
        }
    )


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


def _sort(
    rows: list[tuple[SimTask, dict[str, Any]]], sort: dict[str, Any] | None
) -> list[tuple[SimTask, dict[str, Any]]]:
    """Default ``created_at`` ascending (the SortOption default direction is ``asc``)."""
    field = (sort or {}).get("field", "created_at")
    reverse = (sort or {}).get("direction", "asc") == "desc"

    def key(row: tuple[SimTask, dict[str, Any]]) -> tuple[int, str, float]:
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


# -- what the demo, the CLI and the tests use ---------------------------------------------------

PROVIDER = "mixpeek"
#: Keyword arguments of :func:`create_app` for the demo and ``taskdeck simulate``.
DEMO_CREDENTIALS: dict[str, Any] = {"api_key": "sk_test_demo_key"}

#: Final upstream word for each normalized outcome the demo and tests ask for.
FINAL_STATUS = {
    "succeeded": "COMPLETED",
    "failed": "FAILED",
    "partial": "COMPLETED_WITH_ERRORS",
    "cancelled": "CANCELED",
    "skipped": "SKIPPED",
}
_ERRORS = [
    "Failed to process batch: Object not found",
    "Failed to process object: Invalid file format",
    "Invalid file format: Expected PDF, got PNG",
    "Clustering failed: Insufficient data points",
]
_ALPHANUM = "abcdefghijklmnopqrstuvwxyz0123456789"


def demo_source(name: str, base_url: str) -> tuple[dict[str, Any], dict[str, str]]:
    """A ``[[sources]]`` entry for this simulator and the environment holding its key."""
    secrets = {"api_key_env": ("API_KEY", DEMO_CREDENTIALS["api_key"])}
    return demo_source_entry(PROVIDER, name, base_url, secrets)


def _token(rng: Any, length: int = 6) -> str:
    return "".join(rng.choice(_ALPHANUM) for _ in range(length))


def _demo_fields(rng: Any, final: str) -> dict[str, Any]:
    """Inputs, outputs and parent ids shaped like the seed's examples for a random task type."""
    kind = rng.choice(["batch", "objects", "cluster", "taxonomy", "extractor"])
    bucket_id = f"bkt_{_token(rng)}"
    failures = 2 if final == "partial" else 0
    if kind == "batch":
        batch_id = f"batch_{_token(rng)}"
        task_type = "api_buckets_batches_process"
        inputs: list[Any] = [batch_id]
        extra: dict[str, Any] = {
            "batch_id": batch_id,
            "bucket_id": bucket_id,
            "job_id": f"ray_job_{rng.randint(100, 999)}",
        }
        outputs: list[Any] = [
            {
                "failed_count": failures,
                "processed_count": 100,
                "success_rate": (100 - failures) / 100,
            }
        ]
        running = "Batch processing task in progress"
    elif kind == "objects":
        task_type = "api_buckets_objects_create"
        inputs = [f"obj_{rng.randint(100, 999)}" for _ in range(3)]
        extra = {"bucket_id": bucket_id}
        outputs = [f"document_{rng.randint(100, 999)}" for _ in range(2)]
        running = "Creating objects"
    elif kind == "cluster":
        cluster_id = f"cl_{_token(rng)}"
        task_type = "engine_cluster_build"
        inputs = [{"bucket_id": bucket_id, "collection_ids": ["col_1", "col_2"]}]
        extra = {
            "cluster_id": cluster_id,
            "collection_ids": ["col_1"],
            "job_id": str(rng.randint(100, 999)),
        }
        outputs = [{"cluster_id": cluster_id, "num_clusters": rng.randint(3, 9)}]
        running = "Building clusters"
    elif kind == "taxonomy":
        task_type = "api_taxonomies_execute"
        inputs = [{"taxonomy_id": f"tax_{_token(rng)}", "collection_ids": ["col_1"]}]
        extra = {"namespace_id": f"ns_{_token(rng)}"}
        outputs = [{"documents_enriched": 250, "failed_count": failures}]
        running = "Executing taxonomy"
    else:
        batch_id = f"batch_{_token(rng)}"
        task_type = "engine_feature_extractor_run"
        inputs = [batch_id]
        extra = {
            "batch_id": batch_id,
            "bucket_id": bucket_id,
            "job_id": f"ray_job_{rng.randint(100, 999)}",
            "object_count": 40,
        }
        outputs = [{"processed_count": 40, "failed_count": failures}]
        running = "Running feature extraction"
    fields: dict[str, Any] = {
        "task_type": task_type,
        "inputs": inputs,
        "outputs": outputs,
        "additional_data": extra,
        "descriptions": {"PROCESSING": running, "IN_PROGRESS": running},
    }
    if final == "failed":
        fields["error"] = rng.choice(_ERRORS)
    return fields


def add_demo_task(
    state: SimulatorState,
    rng: Any,
    *,
    task_id: str | None = None,
    final: str = "succeeded",
    queued_seconds: float = 3.0,
    running_seconds: float = 10.0,
) -> SimTask:
    """A task that goes PENDING -> IN_PROGRESS or PROCESSING -> the final word for ``final``."""
    fields = _demo_fields(rng, final)
    running = rng.choice(["IN_PROGRESS", "PROCESSING"])
    return state.add(
        # The counter keeps ids unique when callers reuse one seed for every task.
        task_id or f"task_{_token(rng)}{state.next_id('')}",
        [("PENDING", queued_seconds), (running, running_seconds), (FINAL_STATUS[final], None)],
        fields=fields,
    )
