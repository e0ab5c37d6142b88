"""An OpenSearch ML Commons tasks API on loopback (PROVIDERS.md section 1).

Faithful points: GET answers carry no ``task_id``; ``model_id`` appears once a task completes;
times are epoch milliseconds; unknown ids answer 404 "Failed to find task" in the OpenSearch
error envelope; with basic auth on, a bad login gets the security plugin's plain-text 401; with
multi-tenancy on, a missing ``x-tenant-id`` gets 403. ``_search`` takes query DSL (``match_all``,
``term``, ``terms``, ``ids``, ``bool``, a simple ``query_string``) with ``from``/``size``/``sort``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from flask import Flask
from flask import Response
from flask import jsonify
from flask import request

from webapp.simulators.core import Fault
from webapp.simulators.core import SimTask
from webapp.simulators.core import SimulatorState
from webapp.simulators.core import before_upstream
from webapp.simulators.core import demo_source_entry
from webapp.simulators.core import json_response
from webapp.simulators.core import new_simulator_app
from webapp.simulators.core import read_seed
from webapp.simulators.core import simulated

PREFIX = "/_plugins/_ml/tasks"
#: The query of a search that names none.
MATCH_ALL: dict[str, Any] = {"match_all": {}}
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
    nodes = fields.get("worker_node", ["KfEEGG7_SsKZVFqI4ko2FA"])
    doc["worker_node"] = ",".join(nodes) if fields.get("legacy_worker_node") else nodes
    doc["create_time"] = int(task.started_at * 1000)
    doc["last_update_time"] = int(began * 1000)
    if status in ("FAILED", "COMPLETED_WITH_ERROR") and fields.get("error"):
        doc["error"] = fields["error"]
    if fields.get("tenant_id"):
        doc["tenant_id"] = fields["tenant_id"]
    doc["is_async"] = fields.get("is_async", True)
    return doc


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
) -> Flask:
    """The simulator app. With ``username`` set, basic auth is enforced."""
    app = new_simulator_app("opensearch_ml", state, render_fault)

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
    @simulated("search", scope=lambda: _ids_in(_search_body().get("query", MATCH_ALL)))
    def search_tasks() -> Response:
        body = _search_body()
        query = body.get("query", MATCH_ALL)
        now = state.clock.now()
        hits = []
        for task in state.visible_tasks():
            doc = document(task, now)
            if _matches(query, task.task_id, doc):
                hits.append((task, doc))
        hits = _sort(hits, body.get("sort"))
        start = int(body.get("from", 0))
        size = int(body.get("size", 10))
        page = hits[start : start + size]
        return jsonify(
            {
                "took": 3,
                "timed_out": False,
                "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
                "hits": {
                    "total": {"value": len(hits), "relation": "eq"},
                    "max_score": 0.0 if page else None,
                    "hits": [
                        {
                            "_index": ".plugins-ml-task",
                            "_id": task.task_id,
                            "_version": len(task.history(now)),
                            "_seq_no": position,
                            "_primary_term": 1,
                            "_score": 0.0,
                            "_source": doc,
                        }
                        for position, (task, doc) in enumerate(page, start=start)
                    ],
                },
            }
        )

    @app.get(f"{PREFIX}/<path:task_id>")
    @simulated("get")
    def get_task(task_id: str) -> Response:
        task = state.get(task_id)
        if task is None:
            return error_envelope(404, "status_exception", "Failed to find task")
        return jsonify(document(task, state.clock.now()))

    return app


def _search_body() -> dict[str, Any]:
    """The search request's query DSL: the JSON body, else the ``source`` parameter."""
    body = request.get_json(silent=True) if request.data else None
    if body is None and request.args.get("source"):
        body = json.loads(request.args["source"])
    return body or {}


def _basic_auth_ok(username: str, password: str) -> bool:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Basic "):
        return False
    try:
        decoded = base64.b64decode(header[6:]).decode()
    except (ValueError, UnicodeDecodeError):
        return False
    return decoded == f"{username}:{password}"


# -- a small query DSL evaluator -----------------------------------------------------------


def _ids_in(query: dict[str, Any]) -> list[str] | None:
    """The ids an ``ids`` query names (so per-task faults apply to batched fetches)."""
    if "ids" in query:
        return list(query["ids"].get("values", []))
    return None


def _field(doc: dict[str, Any], task_id: str, name: str) -> Any:
    return task_id if name in ("_id", "task_id") else doc.get(name)


def _matches(query: dict[str, Any], task_id: str, doc: dict[str, Any]) -> bool:
    if not query or "match_all" in query:
        return True
    if "ids" in query:
        return task_id in query["ids"].get("values", [])
    if "term" in query:
        ((name, value),) = query["term"].items()
        if isinstance(value, dict):
            value = value.get("value")
        return _equal(_field(doc, task_id, name), value)
    if "terms" in query:
        ((name, values),) = query["terms"].items()
        return any(_equal(_field(doc, task_id, name), v) for v in values)
    if "match" in query:
        ((name, value),) = query["match"].items()
        if isinstance(value, dict):
            value = value.get("query")
        return _equal(_field(doc, task_id, name), value)
    if "bool" in query:
        clause = query["bool"]
        must = _as_list(clause.get("must")) + _as_list(clause.get("filter"))
        if not all(_matches(q, task_id, doc) for q in must):
            return False
        if any(_matches(q, task_id, doc) for q in _as_list(clause.get("must_not"))):
            return False
        should = _as_list(clause.get("should"))
        return not should or any(_matches(q, task_id, doc) for q in should)
    if "query_string" in query:
        for token in query["query_string"].get("query", "").split():
            if token.upper() in ("AND", "*"):
                continue
            name, _, value = token.partition(":")
            if not value:
                if token not in json.dumps(doc):
                    return False
            elif not _equal(_field(doc, task_id, name), value.strip('"')):
                return False
        return True
    return False


def _equal(actual: Any, wanted: Any) -> bool:
    if isinstance(actual, list):
        return any(_equal(a, wanted) for a in actual)
    return actual == wanted or (
        isinstance(actual, str) and isinstance(wanted, str) and actual.lower() == wanted.lower()
    )


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _sort(
    hits: list[tuple[SimTask, dict[str, Any]]], sort: Any
) -> list[tuple[SimTask, dict[str, Any]]]:
    for clause in reversed(_as_list(sort)):
        if isinstance(clause, str):
            name, order = clause, "asc"
        else:
            ((name, spec),) = clause.items()
            order = spec.get("order", "asc") if isinstance(spec, dict) else spec
        hits = sorted(hits, key=_by_field(name), reverse=order == "desc")
    return hits


def _by_field(name: str) -> Callable[[tuple[SimTask, dict[str, Any]]], tuple[bool, Any]]:
    """A sort key on one ``_source`` field; documents without it go last."""
    return lambda hit: (hit[1].get(name) is None, hit[1].get(name) or 0)


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
    """A task that goes CREATED -> RUNNING -> the final word for ``final``."""
    task_type, function_name = rng.choice(_TASK_KINDS)
    fields: dict[str, Any] = {
        "task_type": task_type,
        "function_name": function_name,
        "model_id": "".join(
            rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789") for _ in range(20)
        ),
        "worker_node": [f"node-{rng.randint(1, 3)}"],
    }
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
