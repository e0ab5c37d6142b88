"""A Mixpeek tasks API on loopback (PROVIDERS.md section 2 and part 3, seed 002).

Faithful points: ``GET /v1/tasks/{task_id}`` answers a ``TaskResponse`` with no times, and a
QUEUED task says where it waits (``queue_position``, ``estimated_wait_minutes``);
``POST /v1/tasks/list`` takes paging in the query string and filters (by ``task_id`` too) in
the JSON body (:mod:`webapp.simulators.mixpeek_search`), and a request it refuses gets a 422
``ErrorResponse`` envelope listing ``details.validation_errors``; ``DELETE /v1/tasks/{task_id}``
kills a task and succeeds whether or not the task exists (SDK ``kill_task``: "idempotent"): an
active task turns ``CANCELED`` where it stands and moves no more, a finished one stays as it
ended, an unknown id gets the same ``GenericDeleteResponse``. A missing or wrong bearer key gets
the 401 envelope. Every authenticated answer carries ``X-RateLimit-*`` headers from a token
bucket per key; an empty bucket answers 429 ``TooManyRequestsError`` with ``Retry-After``. A
task ``ttl_seconds`` old (by the simulator clock) is gone from Redis: GET answers 404
``NotFoundError`` and the list leaves it out. A failed task carries its text in ``error``,
``error_message`` and ``additional_data.error`` (PROVIDERS.md trap 12).
"""

from __future__ import annotations

import json
import math
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
from webapp.simulators.core import before_upstream
from webapp.simulators.core import demo_source_entry
from webapp.simulators.core import json_response
from webapp.simulators.core import new_simulator_app
from webapp.simulators.core import read_seed
from webapp.simulators.core import simulated
from webapp.simulators.mixpeek_search import Invalid
from webapp.simulators.mixpeek_search import ListRequest
from webapp.simulators.mixpeek_tokens import TokenBucket
from webapp.simulators.mixpeek_tokens import window_text

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
    position, wait = queue_figures(task, now)
    doc: dict[str, Any] = {
        "task_id": task.task_id,
        "task_type": fields.get("task_type", "api_buckets_batches_process"),
        "status": status,
        "inputs": fields.get("inputs", []),
        "outputs": outputs,
        "additional_data": extra or None,
        "error": error,
        "error_message": error,
        "queue_position": position,
        "estimated_wait_minutes": wait,
    }
    if description:
        doc["description"] = description
    return doc


def queue_figures(task: SimTask, now: float) -> tuple[int | None, float | None]:
    """``(queue_position, estimated_wait_minutes)``: set only while the task is QUEUED.

    The position counts the average runs still ahead of it (its phase's time left over the
    ``average_run_seconds`` field, a minute unless set); the estimate is that many average runs,
    as Mixpeek estimates from the position and the average batch duration.
    """
    index, began = task.progress(now)
    phase = task.phases[index]
    if phase.status != "QUEUED":
        return None, None
    average = max(1.0, float(task.fields.get("average_run_seconds") or 60.0))
    left = average if phase.seconds is None else max(0.0, began + phase.seconds - now)
    position = max(1, math.ceil(left / average))
    return position, round(position * average / 60, 2)


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
    """A 422 in the ``ErrorResponse`` envelope (the SDK: FastAPI's ``HTTPValidationError`` is
    "not sent by this API"), each problem in ``details.validation_errors``."""
    details = {"validation_errors": problems}
    return error_envelope(422, "ValidationError", "Validation error", details)


def too_many_requests(limit: int, window: float, retry_after: int) -> Response:
    response = error_envelope(
        429,
        "TooManyRequestsError",
        "Rate limit exceeded",
        {"limit": limit, "window": window_text(window), "retry_after": retry_after},
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
    @simulated("list", scope=list_scope)
    def list_tasks() -> Response:
        query = list_request()
        start = query.start
        if start is None:
            return error_envelope(400, "BadRequestError", "Invalid pagination cursor")
        now = state.clock.now()
        tasks = query.candidates(state.visible_tasks())
        live = [task for task in tasks if not expired(task, now)]
        return jsonify(query.page([(task, document(task, now)) for task in live], start))

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
    """The list request; one the server refuses is a 422 before anything else happens."""
    try:
        return ListRequest.parse(request.args, request.get_data())
    except Invalid as exc:
        raise Refused(validation_error(exc.problems)) from None


def list_scope() -> list[str] | None:
    """The ids a list request's filters select, so a per-task fault hits a batched fetch too."""
    return list_request().named_ids()


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
    details.setdefault("window", window_text(bucket.window))
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
        "descriptions": {
            "QUEUED": "Waiting for a processing slot",
            "PROCESSING": running,
            "IN_PROGRESS": running,
        },
    }
    if final == "failed":
        fields["error"] = rng.choice(_ERRORS)
    return fields


#: Task types of batch processing, which Mixpeek accepts and queues for a Ray slot (QUEUED,
#: with a place in the queue) before PROCESSING; other tasks start PENDING.
QUEUED_TYPES = frozenset({"api_buckets_batches_process", "engine_feature_extractor_run"})


def add_demo_task(
    state: SimulatorState,
    rng: Any,
    *,
    task_id: str | None = None,
    final: str = "succeeded",
    queued_seconds: float = 3.0,
    running_seconds: float = 10.0,
) -> SimTask:
    """A task that waits, runs, then ends in the final word for ``final``: a batch goes
    QUEUED -> PROCESSING, anything else PENDING -> IN_PROGRESS or PROCESSING."""
    fields = _demo_fields(rng, final)
    running = rng.choice(["IN_PROGRESS", "PROCESSING"])
    waiting = "PENDING"
    if fields["task_type"] in QUEUED_TYPES:
        waiting, running = "QUEUED", "PROCESSING"
        fields["average_run_seconds"] = running_seconds
    return state.add(
        # The counter keeps ids unique when callers reuse one seed for every task.
        task_id or f"task_{_token(rng)}{state.next_id('')}",
        [(waiting, queued_seconds), (running, running_seconds), (FINAL_STATUS[final], None)],
        fields=fields,
    )
