"""An OpenSearch ML Commons tasks API on loopback (PROVIDERS.md section 1).

Faithful points: GET answers carry no ``task_id``; ``model_id`` appears once a task completes;
times are epoch milliseconds; unknown ids answer 404 "Failed to find task" in the OpenSearch
error envelope; with basic auth on, a bad login gets the security plugin's plain-text 401; with
multi-tenancy on, a missing ``x-tenant-id`` gets 403. ``_search`` is
:mod:`webapp.simulators.opensearch_ml_search` (the query DSL, ``sort``, ``search_after``,
``_source``, the 10,000-hit result window). ``BATCH_PREDICTION`` tasks of remote models carry
``remote_job`` and move only when a GET (or ML Commons' minutely update job) asks the remote
service (:mod:`webapp.simulators.opensearch_ml_remote`). Writes: ``DELETE`` a task (not while
its stored state is ``RUNNING``) and ``_cancel`` a remote batch job (the service stops it).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from flask import Flask
from flask import Response
from flask import g
from flask import jsonify
from flask import request

from webapp.simulators import opensearch_ml_remote as remote
from webapp.simulators.core import Fault
from webapp.simulators.core import Refused
from webapp.simulators.core import SimTask
from webapp.simulators.core import SimulatorState
from webapp.simulators.core import before_upstream
from webapp.simulators.core import demo_source_entry
from webapp.simulators.core import json_response
from webapp.simulators.core import new_simulator_app
from webapp.simulators.core import read_seed
from webapp.simulators.core import sim_state
from webapp.simulators.core import simulated
from webapp.simulators.opensearch_ml_query import ids_in
from webapp.simulators.opensearch_ml_search import MAX_RESULT_WINDOW
from webapp.simulators.opensearch_ml_search import Hit
from webapp.simulators.opensearch_ml_search import Search
from webapp.simulators.opensearch_ml_search import SearchError
from webapp.simulators.opensearch_ml_search import rest_error

PREFIX = "/_plugins/_ml/tasks"
TASK_INDEX = ".plugins-ml-task"
RUNNING_NOT_DELETED = "Task cannot be deleted in running state. Try after some time."
NO_BATCH_JOB = "The task ID you provided does not have any associated batch job"
TERMINAL = frozenset(
    {"COMPLETED", "COMPLETED_WITH_ERROR", "FAILED", "CANCELLED", "EXPIRED", "UNREACHABLE"}
)


def seed_examples() -> dict[str, Any]:
    """The seed documents' example answers (``seeds/opensearch_ml.json``)."""
    return read_seed("opensearch_ml")


def load_seed_tasks(state: SimulatorState) -> list[str]:
    """Serve every seed example under an id; returns the ids.

    The get examples in the seed all answer the request for ``MsBi1YsB0jLkkocYjD5f``; the first
    (in progress) keeps that id and the others get ``seed-…`` ids. Search hits keep their ``_id``.
    """
    seeds = seed_examples()
    ids: list[str] = []
    for name, payload in seeds["get_examples"].items():
        task_id = "MsBi1YsB0jLkkocYjD5f" if name == "in-progress" else f"seed-{name}"
        state.add_fixed(task_id, payload, "state")
        ids.append(task_id)
    state.add_fixed("seed-get-training", seeds["get_example_2"], "state")
    ids.append("seed-get-training")
    for hit in seeds["search_response"]["hits"]["hits"]:
        state.add_fixed(hit["_id"], hit["_source"], "state")
        ids.append(hit["_id"])
    return ids


def document(task: SimTask, now: float) -> dict[str, Any]:
    """The task document as ``MLTask.toXContent`` writes it (no ``task_id``)."""
    if task.fixed_payload is not None:
        return task.fixed_payload
    job = remote_job(task)
    if job is not None:
        return _remote_document(task, job)
    index, began = task.progress(now)
    status = task.phases[index].status
    fields = task.fields
    doc: dict[str, Any] = {}
    if fields.get("model_id") and (status in TERMINAL or fields.get("model_id_early")):
        doc["model_id"] = fields["model_id"]
    doc["task_type"] = fields.get("task_type", "DEPLOY_MODEL")
    doc["function_name"] = fields.get("function_name", "TEXT_EMBEDDING")
    doc["state"] = status
    if "input_type" in fields:
        doc["input_type"] = fields["input_type"]
    doc["worker_node"] = _worker_node(fields)
    doc["create_time"] = int(task.started_at * 1000)
    doc["last_update_time"] = int(began * 1000)
    if status in ("FAILED", "COMPLETED_WITH_ERROR") and fields.get("error"):
        doc["error"] = fields["error"]
    if fields.get("tenant_id"):
        doc["tenant_id"] = fields["tenant_id"]
    doc["is_async"] = fields.get("is_async", True)
    return doc


def remote_job(task: SimTask) -> remote.RemoteJob | None:
    """The task's remote job, if ML Commons treats it as one: a ``BATCH_PREDICTION`` of a
    ``REMOTE`` model (``GetTaskTransportAction``)."""
    job = task.fields.get("remote")
    fields = task.fields
    if fields.get("task_type") != "BATCH_PREDICTION" or fields.get("function_name") != "REMOTE":
        return None
    return job if isinstance(job, remote.RemoteJob) else None


def _worker_node(fields: dict[str, Any]) -> Any:
    nodes = fields.get("worker_node", ["KfEEGG7_SsKZVFqI4ko2FA"])
    return ",".join(nodes) if fields.get("legacy_worker_node") else nodes


def _remote_document(task: SimTask, job: remote.RemoteJob) -> dict[str, Any]:
    """A remote batch task as the index last stored it (a batch task has its model from the
    start, runs synchronously on the cluster's side and carries ``remote_job``)."""
    doc: dict[str, Any] = {
        "model_id": task.fields["model_id"],
        "task_type": "BATCH_PREDICTION",
        "function_name": "REMOTE",
        "state": job.state,
        "input_type": "REMOTE",
        "worker_node": _worker_node(task.fields),
        "create_time": job.created_ms,
        "last_update_time": job.updated_ms,
        "is_async": False,
        "remote_job": remote.stored_remote_job(job),
    }
    if task.fields.get("tenant_id"):
        doc["tenant_id"] = task.fields["tenant_id"]
    return doc


def indexed(state: SimulatorState, task: SimTask, now: float) -> tuple[dict[str, Any], int]:
    """The document a search finds for ``task`` and its ``_version``; a remote batch task first
    gets the minutely update job's writes due by ``now``."""
    job = remote_job(task)
    if job is not None:
        with state.lock:
            remote.catch_up(task, job, now)
            return _remote_document(task, job), job.version
    if task.fixed_payload is not None:
        return task.fixed_payload, 1
    return document(task, now), len(task.history(now))


def error_envelope(status: int, error_type: str, reason: str) -> Response:
    body = {
        "error": {
            "root_cause": [{"type": error_type, "reason": reason}],
            "type": error_type,
            "reason": reason,
        },
        "status": status,
    }
    return json_response(body, status)


def unauthorized() -> Response:
    # The security plugin answers 401 with plain text, not the JSON envelope.
    return Response(
        "Unauthorized",
        status=401,
        mimetype="text/plain",
        headers={"WWW-Authenticate": 'Basic realm="OpenSearch Security"'},
    )


def render_fault(fault: Fault, task_id: str | None) -> Response:
    if fault is Fault.NOT_FOUND:
        return error_envelope(404, "status_exception", "Failed to find task")
    if fault is Fault.UNAUTHORIZED:
        return unauthorized()
    if fault is Fault.RATE_LIMITED:
        return error_envelope(
            429,
            "rejected_execution_exception",
            "rejected execution of coordinating operation [shard_detail=[.plugins-ml-task]]",
        )
    return error_envelope(500, "exception", "Internal failure on the simulated cluster")


def create_app(
    state: SimulatorState,
    *,
    username: str | None = None,
    password: str | None = None,
    multi_tenant: bool = False,
    max_result_window: int = MAX_RESULT_WINDOW,
    id_field_data: bool = True,
) -> Flask:
    """The simulator app. With ``username`` set, basic auth is enforced.

    ``max_result_window`` is the task index's ``index.max_result_window``; ``id_field_data`` is
    the cluster setting ``indices.id_field_data.enabled`` (on by default in OpenSearch, off in
    some hardened clusters), without which sorting on ``_id`` fails. Both can be changed while
    the app runs (``app.config``), as a cluster's settings can.
    """
    app = new_simulator_app("opensearch_ml", state, render_fault)
    app.config["ML_MAX_RESULT_WINDOW"] = max_result_window
    app.config["ML_ID_FIELD_DATA"] = id_field_data

    @before_upstream(app)
    def check_access() -> Response | None:
        if username is not None and not _basic_auth_ok(username, password or ""):
            return unauthorized()
        if multi_tenant and not request.headers.get("x-tenant-id"):
            return error_envelope(
                403, "status_exception", "Tenant ID header is missing or has no value"
            )
        return None

    @app.route(f"{PREFIX}/_search", methods=["GET", "POST"])
    @simulated("search", scope=_read_search)
    def search_tasks() -> Response:
        search: Search = g.ml_search
        now = state.clock.now()
        hits = []
        for seq_no, task in enumerate(state.visible_tasks()):
            doc, version = indexed(state, task, now)
            hits.append(Hit(task.task_id, doc, version, seq_no))
        try:
            answer = search.answer(
                hits,
                max_result_window=app.config["ML_MAX_RESULT_WINDOW"],
                id_field_data=app.config["ML_ID_FIELD_DATA"],
            )
        except SearchError as exc:
            return json_response(exc.body, exc.status)
        return jsonify(answer)

    @app.get(f"{PREFIX}/<path:task_id>")
    @simulated("get")
    def get_task(task_id: str) -> Response:
        task = state.get(task_id)
        if task is None:
            return error_envelope(404, "status_exception", "Failed to find task")
        now = state.clock.now()
        job = remote_job(task)
        if job is not None:
            # The GET itself asks the remote service and writes the task back.
            with state.lock:
                remote.catch_up(task, job, now)
                remote.refresh(task, job, now)
                return jsonify(_remote_document(task, job))
        return jsonify(document(task, now))

    @app.delete(f"{PREFIX}/<path:task_id>")
    @simulated("delete")
    def delete_task(task_id: str) -> Response:
        # DeleteTaskTransportAction reads the stored task first; only RUNNING is refused, by a
        # plain Exception, which the REST layer answers as a 500 of type "exception".
        task = state.get(task_id)
        if task is None:
            return error_envelope(404, "status_exception", "Failed to find task")
        with state.lock:
            doc, version = indexed(state, task, state.clock.now())
            if doc.get("state") == "RUNNING":
                return error_envelope(500, "exception", RUNNING_NOT_DELETED)
            task.gone = True
        return jsonify(
            {
                "_index": TASK_INDEX,
                "_id": task_id,
                "_version": version + 1,
                "result": "deleted",
                "_shards": {"total": 2, "successful": 2, "failed": 0},
                "_seq_no": int(state.next_id("")),
                "_primary_term": 1,
            }
        )

    @app.post(f"{PREFIX}/<path:task_id>/_cancel")
    @simulated("cancel")
    def cancel_batch_job(task_id: str) -> Response:
        # CancelBatchJobTransportAction: only a remote model's BATCH_PREDICTION has a job to
        # stop; the task's own state is not checked, the service answers for the job.
        task = state.get(task_id)
        if task is None:
            return error_envelope(404, "status_exception", "Fail to find task")
        job = remote_job(task)
        if job is None:
            return error_envelope(400, "illegal_argument_exception", NO_BATCH_JOB)
        with state.lock:
            refusal = remote.cancel(task, job, state.clock.now())
        if refusal is not None:
            status, body = refusal
            reason = "Error from remote service: " + json.dumps(body, separators=(",", ":"))
            return error_envelope(status, "status_exception", reason)
        return jsonify({"status": "OK"})

    return app


def _read_search() -> list[str] | None:
    """The ``_search`` prologue's scope: the body read as the REST layer reads it (the JSON
    body, else the ``source`` parameter); a body it refuses is answered before any fault. The
    ids of an ``ids`` query are the task ids the request is about."""
    raw = request.get_data(as_text=True) or request.args.get("source", "")
    try:
        body = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError as exc:
        error = rest_error("json_parse_exception", f"Unexpected character: {exc.msg}")
        raise Refused(json_response(error.body, error.status)) from None
    now_ms = int(sim_state().clock.now() * 1000)
    try:
        g.ml_search = Search.parse(body, raw, now_ms)
    except SearchError as exc:
        raise Refused(json_response(exc.body, exc.status)) from None
    return ids_in(body.get("query"))


def _basic_auth_ok(username: str, password: str) -> bool:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Basic "):
        return False
    try:
        decoded = base64.b64decode(header[6:]).decode()
    except (ValueError, UnicodeDecodeError):
        return False
    return decoded == f"{username}:{password}"


# -- what the demo, the CLI and the tests use ---------------------------------------------

PROVIDER = "opensearch-ml"
#: Keyword arguments of :func:`create_app` for the demo and ``taskdeck simulate``.
DEMO_CREDENTIALS: dict[str, Any] = {"username": "admin", "password": "demo-password"}

#: Final upstream word for each normalized outcome the demo and tests ask for.
FINAL_STATUS = {
    "succeeded": "COMPLETED",
    "failed": "FAILED",
    "partial": "COMPLETED_WITH_ERROR",
    "cancelled": "CANCELLED",
    "expired": "EXPIRED",
}
_TASK_KINDS = [
    ("REGISTER_MODEL", "TEXT_EMBEDDING"),
    ("DEPLOY_MODEL", "TEXT_EMBEDDING"),
    ("DEPLOY_MODEL", "SPARSE_ENCODING"),
    ("TRAINING", "KMEANS"),
    ("BATCH_PREDICTION", "REMOTE"),
]


def demo_source(name: str, base_url: str) -> tuple[dict[str, Any], dict[str, str]]:
    """A ``[[sources]]`` entry for this simulator and the environment holding its secrets."""
    secrets = {
        "username_env": ("USER", DEMO_CREDENTIALS["username"]),
        "password_env": ("PASS", DEMO_CREDENTIALS["password"]),
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
    """A task that goes CREATED -> RUNNING -> the final word for ``final``; a batch prediction
    (remote models only, which never end ``COMPLETED_WITH_ERROR``) is a remote job instead
    (:func:`add_remote_batch_task`)."""
    kinds = _TASK_KINDS if FINAL_STATUS[final] in _REMOTE_FINALS else _TASK_KINDS[:-1]
    task_type, function_name = rng.choice(kinds)
    fields: dict[str, Any] = {
        "task_type": task_type,
        "function_name": function_name,
        "model_id": "".join(
            rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789") for _ in range(20)
        ),
        "worker_node": [f"node-{rng.randint(1, 3)}"],
    }
    if task_type == "BATCH_PREDICTION":
        return add_remote_batch_task(
            state,
            rng,
            task_id=task_id,
            final=final,
            queued_seconds=queued_seconds,
            running_seconds=running_seconds,
            fields=fields,
        )
    if task_type == "TRAINING":
        fields["input_type"] = "SEARCH_QUERY"
    if final in ("failed", "partial"):
        fields["error"] = rng.choice(
            [
                '{"node-2":"Model not found in local cache"}',
                "Memory Circuit Breaker is open, please check your resources!",
            ]
        )
    return state.add(
        task_id or state.next_id("ml-task-"),
        [("CREATED", queued_seconds), ("RUNNING", running_seconds), (FINAL_STATUS[final], None)],
        fields=fields,
    )


def starting_request(task: SimTask) -> tuple[str, str]:
    """The ML Commons request (method, path) that starts a task like ``task``, as a client that
    started it (a Conductor HTTP task in the demo) sent it; each answers ``{"task_id", "status"}``.
    """
    model = task.fields.get("model_id", "")
    paths = {
        "REGISTER_MODEL": "/_plugins/_ml/models/_register",
        "DEPLOY_MODEL": f"/_plugins/_ml/models/{model}/_deploy",
        "TRAINING": f"/_plugins/_ml/_train/{str(task.fields.get('function_name', '')).lower()}"
        "?async=true",
        "BATCH_PREDICTION": f"/_plugins/_ml/models/{model}/_batch_predict",
    }
    return "POST", paths.get(str(task.fields.get("task_type")), "/_plugins/_ml/models/_register")


#: Final states a remote job's status can map to (by ML Commons' default status regexes).
_REMOTE_FINALS = frozenset({"COMPLETED", "FAILED", "CANCELLED", "EXPIRED"})


def add_remote_batch_task(
    state: SimulatorState,
    rng: Any,
    *,
    task_id: str | None = None,
    service: str | None = None,
    final: str = "succeeded",
    queued_seconds: float = 3.0,
    running_seconds: float = 10.0,
    fields: dict[str, Any] | None = None,
) -> SimTask:
    """A ``BATCH_PREDICTION`` task whose job on ``service`` (``sagemaker``, ``bedrock``,
    ``openai``; one that has the final status if not given) is queued, runs, then ends with
    the service's word for ``final``. The task is indexed ``RUNNING`` and moves when asked."""
    status = FINAL_STATUS[final]
    offering = [name for name in remote.SERVICES if status in remote.WORDS[name]]
    service = service or rng.choice(offering)
    if service not in offering:
        raise ValueError(f"{service} jobs never end {status}")
    task_fields = dict(fields or {"model_id": f"remote-{rng.randrange(16**8):08x}"})
    task_fields.update(task_type="BATCH_PREDICTION", function_name="REMOTE")
    task = state.add(
        task_id or state.next_id("ml-task-"),
        [("RUNNING", queued_seconds + running_seconds), (status, None)],
        fields=task_fields,
    )
    task.fields["remote"] = remote.start(service, rng, task.started_at, queued_seconds)
    return task
