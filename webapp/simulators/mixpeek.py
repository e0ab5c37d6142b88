"""A Mixpeek tasks API on loopback (PROVIDERS.md section 2, seed 002).

Faithful points: ``GET /v1/tasks/{task_id}`` answers a ``TaskResponse`` with no times;
``POST /v1/tasks/list`` takes paging in the query string and filters in the JSON body, and bad
parameters get FastAPI's 422 ``{detail: [...]}`` (:mod:`webapp.simulators.mixpeek_search`);
``DELETE /v1/tasks/{task_id}`` kills a task and succeeds whether or not the task exists.
A missing or wrong bearer key gets the 401 envelope. Every authenticated answer carries
``X-RateLimit-*`` headers from a token bucket per key; an empty bucket answers 429
``TooManyRequestsError`` with ``Retry-After``. A task ``ttl_seconds`` old (by the simulator
clock) is gone from Redis and answers 404 ``NotFoundError``. A failed task carries its text in
``error``, ``error_message`` and ``additional_data.error`` (PROVIDERS.md trap 12).
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass
from typing import Any

from flask import Flask
from flask import Response
from flask import g
from flask import jsonify
from flask import request

from webapp.simulators.core import Fault
from webapp.simulators.core import Phase
from webapp.simulators.core import Refused
from webapp.simulators.core import SimTask
from webapp.simulators.core import SimulatorState
from webapp.simulators.core import any_task_after
from webapp.simulators.core import before_upstream
from webapp.simulators.core import demo_source_entry
from webapp.simulators.core import json_response
from webapp.simulators.core import new_simulator_app
from webapp.simulators.core import read_seed
from webapp.simulators.core import simulated
from webapp.simulators.mixpeek_search import Invalid
from webapp.simulators.mixpeek_search import ListRequest

PREFIX = "/v1/tasks"
#: The enum docstring's four terminal words, plus SKIPPED and ARCHIVED, which never move on.
TERMINAL = frozenset(
    {"COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED", "CANCELED", "SKIPPED", "ARCHIVED"}
)
#: Redis keeps a task about a day (TaskModel docstring, ``processing/tasks.mdx``).
DEFAULT_TTL_SECONDS = 86_400.0
#: Pro tier: 600 requests per minute (``operations/rate-limits-quotas.mdx``).
DEFAULT_RATE_LIMIT = 600
DEFAULT_RATE_WINDOW = 60.0


def seed_examples() -> dict[str, Any]:
    """The seed document's examples (``seeds/mixpeek.json``)."""
    return read_seed("mixpeek")


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
    error = {"message": message, "type": error_type, "details": details}
    return json_response({"success": False, "status": status, "error": error}, status)


def not_found(task_id: str | None) -> Response:
    return error_envelope(
        404, "NotFoundError", "Task not found", {"resource": "task", "id": task_id}
    )


def validation_error(problems: list[dict[str, Any]]) -> Response:
    """FastAPI's ``HTTPValidationError`` (the shape the openapi declares for 422)."""
    return json_response({"detail": problems}, 422)


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
    app = new_simulator_app("mixpeek", state, render_fault)
    bucket = TokenBucket(rate_limit, rate_window)

    def expired(task: SimTask, now: float) -> bool:
        return now - task.started_at >= ttl_seconds

    def live_task(task_id: str) -> SimTask | None:
        task = state.get(task_id)
        if task is None or expired(task, state.clock.now()):
            return None
        return task

    @before_upstream(app)
    def check_access() -> Response | None:
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
    @simulated("list", scope=any_task_after(list_request))
    def list_tasks() -> Response:
        query = list_request()
        start = query.start()
        if start is None:
            return error_envelope(400, "BadRequestError", "Invalid pagination cursor")
        now = state.clock.now()
        tasks = [task for task in state.visible_tasks() if not expired(task, now)]
        try:
            return jsonify(query.page([(task, document(task, now)) for task in tasks], start))
        except Invalid as exc:
            return validation_error(exc.problems)

    @app.get(f"{PREFIX}/<path:task_id>")
    @simulated("get")
    def get_task(task_id: str) -> Response:
        task = live_task(task_id)
        if task is None:
            return not_found(task_id)
        return jsonify(document(task, state.clock.now()))

    @app.delete(f"{PREFIX}/<path:task_id>")
    @simulated("delete")
    def kill_task(task_id: str) -> Response:
        task = live_task(task_id)
        if task is not None:
            with state.lock:
                _kill(task, state.clock.now())
        # Idempotent: the same answer for a missing or already finished task.
        return jsonify({"message": "Successfully deleted", "success": True})

    return app


def list_request() -> ListRequest:
    """The list request; one FastAPI would refuse is a 422 before anything else happens."""
    try:
        return ListRequest.parse(request.args, request.get_data())
    except Invalid as exc:
        raise Refused(validation_error(exc.problems)) from None


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
