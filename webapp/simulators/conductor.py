"""A Conductor (open-source or Orkes) tasks API on loopback (PROVIDERS.md section 3).

Faithful points:

- ``Task`` JSON as ``Task.java`` serializes it, laid out like the Orkes seed example: epoch-ms
  times where 0 means unset (``startTime`` 0 while SCHEDULED, ``endTime`` 0 until terminal),
  ``workflowInstanceId``, ``reasonForIncompletion`` only once something went wrong,
  ``outputData`` filled once done, the computed ``queueWaitTime``.
- ``GET /api/tasks/search`` answers ``{totalHits, results: [TaskSummary]}``: ISO times in GMT
  (1970-01-01 for unset), ``workflowId`` (not ``workflowInstanceId``), ``input``/``output`` as
  JSON strings, ``executionTime`` only once ended. ``query`` is read by a port of the real
  parser and run as an Elasticsearch/OpenSearch-indexed server runs it (``=``, ``!=``, ``<``,
  ``>``, ``IN``, ``IS``, ``BETWEEN``, ``STARTS_WITH`` with ``AND``/``OR`` and parentheses;
  ``IN`` values keep their quotes, so ``taskId IN ('a')`` finds nothing); a query it cannot
  parse or run (``NOT``, ``NOT IN``, a date in quotes...) is a 500 ErrorResponse, as the
  server's TransientException is (:mod:`webapp.simulators.conductor_query`). ``freeText``
  takes ``*``, words and ``field:value`` (:mod:`webapp.simulators.conductor_search`).
- ``GET /api/tasks/{taskId}/log`` answers 204 when there are no log entries (also for an
  unknown id, as Conductor's log index does); entries accumulate as the task runs.
- "Not found" in the four shapes the versions use (``not_found_style``): 404 with an
  ErrorResponse (OSS >= 3.21.20), 404 empty (older 3.x), 204 (2.x), 400 (Orkes).
- Auth ``keys`` (Orkes): ``POST /api/token`` exchanges keyId/keySecret for a token that expires
  by the simulator clock; requests carry it in ``X-Authorization``; an expired one gets 401
  ``{"error": "EXPIRED_TOKEN"}``, an unknown one ``INVALID_TOKEN``, as is every token issued
  before a restart (``POST /_control/restart`` or :func:`restart`;
  :mod:`webapp.simulators.conductor_tokens`). ``token``: one fixed token. ``none``:
  open-source Conductor, no auth and no ``/api/token``.
- Writes (terminate a workflow, retry its failed tasks, post to a task's log):
  :mod:`webapp.simulators.conductor_writes`.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from typing import Any
from typing import Literal

from flask import Flask
from flask import Response
from flask import jsonify
from flask import request

from webapp.simulators.conductor_query import QueryFailure
from webapp.simulators.conductor_search import Search
from webapp.simulators.conductor_tokens import EXPIRED_TOKEN
from webapp.simulators.conductor_tokens import INVALID_TOKEN
from webapp.simulators.conductor_tokens import TokenIssuer
from webapp.simulators.conductor_writes import TERMINAL
from webapp.simulators.conductor_writes import Workflows
from webapp.simulators.conductor_writes import register_writes
from webapp.simulators.conductor_writes import workflow_of
from webapp.simulators.core import CONTROL_PREFIX
from webapp.simulators.core import Fault
from webapp.simulators.core import Refused
from webapp.simulators.core import SimTask
from webapp.simulators.core import SimulatorState
from webapp.simulators.core import before_upstream
from webapp.simulators.core import demo_source_entry
from webapp.simulators.core import json_response
from webapp.simulators.core import new_simulator_app
from webapp.simulators.core import read_seed
from webapp.simulators.core import simulated

PREFIX = "/api/tasks"
#: Words under which a task has not started running (``startTime`` stays 0).
NOT_STARTED = frozenset({"SCHEDULED", "SKIPPED", "CANCELED"})
#: ``ErrorResponse.instance``: the answering server's host name.
INSTANCE = "conductor-simulator"
#: Seconds between the progress lines a running task adds to its log.
LOG_EVERY_SECONDS = 5.0

AuthMode = Literal["keys", "token", "none"]
NotFoundStyle = Literal["404-body", "404-empty", "204", "400"]


def seed_examples() -> dict[str, Any]:
    """The seed document's example answer (``seeds/conductor.json``)."""
    return read_seed("conductor")


def load_seed_tasks(state: SimulatorState) -> list[str]:
    """Serve the Orkes get-task example exactly as written, under the id its request URL asks
    for (``6f207c78-…``); its own ``taskId`` (``0c658ed7-…``) differs, and also finds it."""
    example = seed_examples()["get_task"]
    task_id = example["request_task_id"]
    state.add_fixed(task_id, example["response"], "status")
    return [task_id]


# -- rendering -------------------------------------------------------------------------------


def _ms(seconds: float) -> int:
    return int(round(seconds * 1000))


def document(task: SimTask, now: float) -> dict[str, Any]:
    """The ``Task`` JSON of GET ``/api/tasks/{taskId}`` (a seed payload as written)."""
    if task.fixed_payload is not None:
        return task.fixed_payload
    fields = task.fields
    history = task.history(now)
    status, began = history[-1]
    terminal = status in TERMINAL
    scheduled = _ms(task.started_at)
    start = next((_ms(at) for word, at in history if word not in NOT_STARTED), 0)
    end = _ms(began) if terminal else 0
    # Set by the worker's poll and updates; a task nobody touched yet has none.
    update = _ms(began) if len(history) > 1 else 0
    task_type = fields.get("taskType", "SIMPLE")
    def_name = fields.get("taskDefName", "sim_task")
    ref_name = fields.get("referenceTaskName", f"{def_name}_ref")
    succeeded = status in ("COMPLETED", "COMPLETED_WITH_ERRORS")
    doc: dict[str, Any] = {
        "taskType": task_type,
        "status": status,
        "inputData": fields.get("inputData", {}),
        "referenceTaskName": ref_name,
        "retryCount": fields.get("retryCount", 0),
        "seq": fields.get("seq", 1),
    }
    if fields.get("correlationId"):
        doc["correlationId"] = fields["correlationId"]
    doc.update(
        {
            "pollCount": 1 if start else 0,
            "taskDefName": def_name,
            "scheduledTime": scheduled,
            "startTime": start,
            "endTime": end,
            "updateTime": update,
            "startDelayInSeconds": 0,
            "retried": bool(fields.get("retried")),
            "executed": terminal,
            "callbackFromWorker": True,
            "responseTimeoutSeconds": fields.get("responseTimeoutSeconds", 600),
            "workflowInstanceId": workflow_of(task),
            "workflowType": fields.get("workflowType", "sim_workflow"),
            "taskId": task.task_id,
        }
    )
    if fields.get("retriedTaskId"):
        doc["retriedTaskId"] = fields["retriedTaskId"]
    if status in TERMINAL and status != "COMPLETED" and fields.get("reasonForIncompletion"):
        doc["reasonForIncompletion"] = fields["reasonForIncompletion"]
    doc["callbackAfterSeconds"] = 0
    if start and fields.get("workerId"):
        doc["workerId"] = fields["workerId"]
    doc["outputData"] = fields.get("outputData", {}) if succeeded else {}
    doc["workflowTask"] = {
        "name": def_name,
        "taskReferenceName": ref_name,
        "inputParameters": {},
        "type": task_type,
        "decisionCases": {},
        "defaultCase": [],
        "forkTasks": [],
        "startDelay": 0,
        "joinOn": [],
        "optional": status == "COMPLETED_WITH_ERRORS",
        "rateLimited": False,
        "defaultExclusiveJoinTask": [],
        "asyncComplete": False,
        "loopOver": [],
        "onStateChange": {},
        "permissive": False,
    }
    if fields.get("domain"):
        doc["domain"] = fields["domain"]
    doc.update(
        {
            "rateLimitPerFrequency": 0,
            "rateLimitFrequencyInSeconds": 0,
            "workflowPriority": 0,
            "iteration": 0,
            "subworkflowChanged": False,
            "firstStartTime": start,
            # Task.getQueueWaitTime(): startTime - scheduledTime once started.
            "queueWaitTime": start - scheduled if start and scheduled else 0,
            "loopOverTask": False,
            "taskDefinition": None,
        }
    )
    return doc


def logs(
    task: SimTask, now: float, posted: Sequence[tuple[float, str]] = ()
) -> list[dict[str, Any]]:
    """``TaskExecLog`` entries written so far: the pick-up, progress lines, the outcome, and
    the ``posted`` ones (``POST /api/tasks/{taskId}/log``), oldest first."""
    entries: list[tuple[float, str]] = list(posted)
    if task.fixed_payload is not None:
        return _exec_logs(task.task_id, entries)
    history = task.history(now)
    worker = task.fields.get("workerId", "sim-worker")
    for position, (word, began) in enumerate(history):
        if word == "IN_PROGRESS":
            entries.append((began, f"Polled by worker {worker}"))
            until = history[position + 1][1] if position + 1 < len(history) else now
            step = 1
            while began + step * LOG_EVERY_SECONDS <= until:
                entries.append((began + step * LOG_EVERY_SECONDS, f"Still working (step {step})"))
                step += 1
        elif word in TERMINAL:
            reason = task.fields.get("reasonForIncompletion")
            text = f"Task {word}" + (f": {reason}" if reason and word != "COMPLETED" else "")
            entries.append((began, text))
    return _exec_logs(task.task_id, entries)


def _exec_logs(task_id: str, entries: list[tuple[float, str]]) -> list[dict[str, Any]]:
    ordered = sorted(entries, key=lambda entry: entry[0])
    return [{"log": text, "taskId": task_id, "createdTime": _ms(at)} for at, text in ordered]


def error_response(
    status: int, message: str | None, *, retryable: bool = False, **extra: Any
) -> Response:
    """Conductor's ``ErrorResponse`` (nulls left out, as its ObjectMapper does); ``retryable``
    is true for a TransientException."""
    body: dict[str, Any] = {"status": status, "message": message, "instance": INSTANCE}
    body["retryable"] = retryable
    body.update(extra)
    return json_response({k: v for k, v in body.items() if v is not None}, status)


def not_found(style: NotFoundStyle, task_id: str | None) -> Response:
    if style == "404-empty":
        return Response(b"", status=404)
    if style == "204":
        return Response(status=204)
    if style == "400":
        return error_response(400, f"Invalid task execution ID: {task_id}")
    return error_response(404, f"Task not found for taskId: {task_id}")


def token_failure(word: str, message: str) -> Response:
    # The body the Orkes SDKs parse: its "error" word decides whether to refresh and retry.
    return error_response(401, message, error=word)


def render_fault_for(style: NotFoundStyle) -> Callable[[Fault, str | None], Response]:
    def render(fault: Fault, task_id: str | None) -> Response:
        if fault is Fault.NOT_FOUND:
            return not_found(style, task_id)
        if fault is Fault.UNAUTHORIZED:
            return token_failure(INVALID_TOKEN, "Invalid token")
        if fault is Fault.RATE_LIMITED:
            return error_response(429, "Too many requests")
        return error_response(500, "Internal error on the simulated Conductor server")

    return render


# -- the app ---------------------------------------------------------------------------------


def create_app(
    state: SimulatorState,
    *,
    auth: AuthMode = "keys",
    key_id: str | None = "demo-key-id",
    key_secret: str | None = "demo-key-secret",
    token: str | None = None,
    token_ttl_seconds: float = 3600.0,
    not_found_style: NotFoundStyle = "404-body",
) -> Flask:
    """The simulator app. ``auth="keys"`` needs ``key_id``/``key_secret``; ``"token"`` a
    ``token``; ``"none"`` is open-source Conductor without auth."""
    if auth not in ("keys", "token", "none"):
        raise ValueError(f"unknown auth mode {auth!r}")
    if not_found_style not in ("404-body", "404-empty", "204", "400"):
        raise ValueError(f"unknown not_found_style {not_found_style!r}")
    if auth == "token" and not token:
        raise ValueError("auth='token' needs a token")
    app = new_simulator_app("conductor", state, render_fault_for(not_found_style))
    issuer = TokenIssuer(state, token_ttl_seconds)
    app.extensions["conductor_tokens"] = issuer
    workflows = Workflows(state)
    register_writes(app, workflows, error_response)

    @before_upstream(app)
    def check_access() -> Response | None:
        if auth == "none" or request.path == "/api/token":
            return None
        refusal = _refusal(request.headers.get("X-Authorization"))
        if refusal is not None:
            state.count("refused")
        return refusal

    def _refusal(presented: str | None) -> Response | None:
        if not presented:
            return error_response(401, "Missing X-Authorization header")
        if auth == "token":
            return None if presented == token else token_failure(INVALID_TOKEN, "Invalid token")
        word = issuer.check(presented)
        if word == EXPIRED_TOKEN:
            return token_failure(word, "Token has expired")
        if word is not None:
            return token_failure(word, "Invalid token")
        return None

    if auth == "keys":

        @app.post("/api/token")
        def generate_token() -> Response:
            # Counted, but no task fault applies: the token service is not the tasks API.
            state.count("token")
            body = request.get_json(silent=True)
            if not isinstance(body, dict) or (body.get("keyId"), body.get("keySecret")) != (
                key_id,
                key_secret,
            ):
                # Never echo what was sent: it may be a real secret sent to the wrong place.
                return error_response(401, "Invalid key id or key secret")
            return jsonify({"token": issuer.issue(body.get("expiration"))})

    @app.post(f"{CONTROL_PREFIX}/restart")
    def restart_server() -> Response:
        # Not Conductor's API: what a restart or a rotated signing key does to issued tokens.
        return jsonify({"forgotten_tokens": issuer.forget_all()})

    @app.get(f"{PREFIX}/search")
    @simulated("search", scope=search_scope)
    def search_tasks() -> Response:
        return _search(full=False)

    @app.get(f"{PREFIX}/search-v2")
    @simulated("search", scope=search_scope)
    def search_tasks_v2() -> Response:
        return _search(full=True)

    def _search(*, full: bool) -> Response:
        search = Search.parse(request.args)
        now = state.clock.now()
        docs = [document(task, now) for task in state.visible_tasks()]
        return jsonify(search.answer(docs, full=full))

    @app.get(f"{PREFIX}/<path:task_id>/log")
    @simulated("log")
    def get_task_log(task_id: str) -> Response:
        task = _lookup(state, task_id)
        posted = workflows.posted_logs(task_id)
        now = state.clock.now()
        entries = logs(task, now, posted) if task is not None else _exec_logs(task_id, posted)
        if not entries:
            return Response(status=204)
        return jsonify(entries)

    @app.get(f"{PREFIX}/<path:task_id>")
    @simulated("get")
    def get_task(task_id: str) -> Response:
        task = _lookup(state, task_id)
        if task is None:
            return not_found(not_found_style, task_id)
        return jsonify(document(task, state.clock.now()))

    return app


def search_scope() -> list[str] | None:
    """The ids a search names; a request Conductor rejects is answered before anything else.

    The index DAO wraps what the query parser or the index rejects in a TransientException
    for ``/search`` and a NonTransientException for ``/search-v2``: a 500 either way
    (``ApplicationExceptionMapper``), retryable only for the first.
    """
    try:
        search = Search.parse(request.args)
    except QueryFailure as exc:
        retryable = not request.path.endswith("/search-v2")
        raise Refused(error_response(500, exc.message, retryable=retryable)) from None
    except ValueError as exc:
        raise Refused(error_response(400, str(exc))) from None
    return search.task_ids


def restart(app: Flask) -> int:
    """A server restart or signing-key rotation for the app :func:`create_app` built: every
    token issued so far is ``INVALID_TOKEN`` from now on. Returns how many were issued."""
    issuer: TokenIssuer = app.extensions["conductor_tokens"]
    return issuer.forget_all()


def _lookup(sim: SimulatorState, task_id: str) -> SimTask | None:
    """The task stored under ``task_id``, or a seed payload whose own ``taskId`` it is."""
    task = sim.get(task_id)
    if task is not None:
        return task
    for candidate in sim.visible_tasks():
        payload = candidate.fixed_payload
        if payload is not None and payload.get("taskId") == task_id:
            return candidate
    return None


# -- what the demo, the CLI and the tests use ---------------------------------------------

PROVIDER = "conductor"
#: Keyword arguments of :func:`create_app` for the demo and ``taskdeck simulate``.
DEMO_CREDENTIALS: dict[str, Any] = {
    "auth": "keys",
    "key_id": "demo-key-id",
    "key_secret": "demo-key-secret",
}

#: Final upstream word for each normalized outcome the demo and tests ask for.
FINAL_STATUS = {
    "succeeded": "COMPLETED",
    "failed": "FAILED",
    "partial": "COMPLETED_WITH_ERRORS",
    "cancelled": "CANCELED",
    "skipped": "SKIPPED",
}
_TASK_KINDS = [
    ("SIMPLE", "encode_video", "order_fulfilment"),
    ("SIMPLE", "send_invoice", "order_fulfilment"),
    ("HTTP", "http_call", "payment_capture"),
    ("INLINE", "compute_totals", "payment_capture"),
    ("SIMPLE", "resize_images", "media_pipeline"),
]
_REASONS = [
    "java.net.SocketTimeoutException: Read timed out",
    "Worker reported failure: upstream API returned 503",
    "Task timed out after 300 seconds. Timeout configured as 300 seconds.",
]


def uuid_like(rng: Any, serial: int) -> str:
    """A time-based-looking UUID like Conductor's; ``serial`` keeps it unique."""
    low, mid, clock_seq = rng.getrandbits(32), rng.getrandbits(16), rng.getrandbits(16)
    return f"{low:08x}-{mid:04x}-11ef-{clock_seq:04x}-{serial:012x}"


def demo_source(name: str, base_url: str) -> tuple[dict[str, Any], dict[str, str]]:
    """A ``[[sources]]`` entry for this simulator and the environment holding its secrets."""
    secrets = {
        "key_id_env": ("KEY_ID", DEMO_CREDENTIALS["key_id"]),
        "key_secret_env": ("KEY_SECRET", DEMO_CREDENTIALS["key_secret"]),
    }
    return demo_source_entry(PROVIDER, name, base_url, secrets)


def add_demo_task(
    state: SimulatorState,
    rng: Any,
    *,
    task_id: str | None = None,
    final: str = "succeeded",
    queued_seconds: float = 3.0,
    running_seconds: float = 10.0,
) -> SimTask:
    """A task that goes SCHEDULED -> IN_PROGRESS -> the final word for ``final``."""
    task_type, def_name, workflow_type = rng.choice(_TASK_KINDS)
    serial = int(state.next_id(""))
    fields: dict[str, Any] = {
        "taskType": task_type,
        "taskDefName": def_name,
        "referenceTaskName": f"{def_name}_ref",
        "workflowType": workflow_type,
        "workflowInstanceId": uuid_like(rng, serial),
        "workerId": f"worker-{rng.randint(1, 4)}",
        "seq": rng.randint(1, 6),
        "inputData": {"orderId": f"ord-{rng.randint(1000, 9999)}", "priority": rng.randint(0, 3)},
        "outputData": {"result": "ok", "items": rng.randint(1, 40)},
    }
    if rng.random() < 0.5:
        fields["correlationId"] = f"corr-{rng.randint(10000, 99999)}"
    if final in ("failed", "partial"):
        fields["reasonForIncompletion"] = rng.choice(_REASONS)
    return state.add(
        task_id or uuid_like(rng, serial),
        [
            ("SCHEDULED", queued_seconds),
            ("IN_PROGRESS", running_seconds),
            (FINAL_STATUS[final], None),
        ],
        fields=fields,
    )
