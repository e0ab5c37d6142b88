"""The NAVER Cloud NCLUE task API behind the NCP API Gateway, on loopback (PROVIDERS.md section 4).

The gateway part: every request but ``/_control`` must carry ``x-ncp-apigw-timestamp``,
``x-ncp-iam-access-key`` and ``x-ncp-apigw-signature-v2``; the signature is recomputed here,
independently of the client, over the request URI *as received* (mount prefix, query order and
percent-encoding included), and the timestamp must be within ``max_skew_seconds`` of the
simulator's clock. Failures answer 401 in the gateway envelope
``{"error": {"errorCode": "200", "message": "Authentication Failed"}}``. An optional throttle
answers 429 ``errorCode "420" Rate Limited``.

The NCLUE part: GET ``/api/v1/tasks/<id>``, GET ``/api/v1/tasks?index=&limit=`` (newest first,
``limit`` 1-100, default 20) and DELETE ``/api/v1/tasks/<id>``. Tasks render like the seed
example: times ISO 8601 without a zone (in ``timezone``), ``completed_at`` null until the task
ends, ``AUROC`` a numeric *string* once completed, ``fail_message`` on failure else null.

Choices where the docs are silent (all [unverified], PROVIDERS.md "Gaps"):

* An unknown access key answers like a bad signature (401 / ``200`` Authentication Failed):
  ``210`` Permission Denied is for a key that authenticates but may not use the API.
* A rejected timestamp is also 401 / ``200``, with a ``details`` line naming the timestamp
  (the real gateway's wording is unknown; a client should also compare the ``Date`` header).
* NCLUE's own error body is ``{"message": ...}``, with ``"code"`` only where the docs give one
  (e.g. 10100 ACCESS_DENIED): an unknown task answers 404 ``{"message": "TASK_NOT_FOUND"}``
  and a bad ``index``/``limit`` 400 ``{"message": ...}``. The NCLUE code for an unknown task
  is not documented, so none is invented.
* DELETE of a ``pending`` or ``in_progress`` task is refused with 400 ``{"message": ...}``: the
  delete page says only that "you will receive an error message", so status and wording are
  [unverified] and follow this module's other NCLUE errors.

DELETE itself follows ``nclue-deletetask``: it is allowed in ``registered``, ``completed`` and
``failed`` (a ``registered`` task is thereby cancelled before it is built), answers 200
``{"task_id": ...}`` and removes the task, so a second DELETE is a 404 like any unknown task.
Writes pass the same gateway check and throttle as reads (PROVIDERS.md part 3).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import uuid
from collections import deque
from datetime import datetime
from typing import Any
from urllib.parse import quote
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from flask import Flask
from flask import Response
from flask import jsonify
from flask import request
from werkzeug.exceptions import NotFound

from webapp.simulators.core import CONTROL_PREFIX
from webapp.simulators.core import Fault
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

PREFIX = "/api/v1/tasks"
SUCCEEDED = frozenset({"completed", "complete"})
TERMINAL = SUCCEEDED | {"failed"}
#: ``nclue-deletetask``: a task being built cannot be deleted; every other state can.
UNDELETABLE = frozenset({"pending", "in_progress"})
MAX_LIST_LIMIT = 100
DEFAULT_LIST_LIMIT = 20


def seed_examples() -> dict[str, Any]:
    """The seed document's example answer (``seeds/nclue.json``)."""
    return read_seed("nclue")


def load_seed_tasks(state: SimulatorState) -> list[str]:
    """Serve the get-task example exactly as written, under its own ``task_id``."""
    payload = seed_examples()["get_task_example"]
    state.add_fixed(payload["task_id"], payload, "status")
    return [payload["task_id"]]


# -- rendering ------------------------------------------------------------------------------


def iso_local(epoch: float, zone: ZoneInfo) -> str:
    """``2024-11-26T11:48:16``: the seed's format, a wall time without a zone."""
    return datetime.fromtimestamp(epoch, zone).replace(tzinfo=None).isoformat(timespec="seconds")


def document(task: SimTask, now: float, zone: ZoneInfo) -> dict[str, Any]:
    """The task object as gettask / gettasklist return it (field order as in the seed)."""
    if task.fixed_payload is not None:
        return task.fixed_payload
    status = task.status(now)
    finished = task.finished_at(now, TERMINAL)
    fields = task.fields
    done = status in SUCCEEDED
    auroc = fields.get("auroc")
    if auroc is not None and not isinstance(auroc, str):
        auroc = repr(float(auroc))
    failure = fields.get("fail_message", "Task model creation failed.")
    return {
        "task_id": task.task_id,
        "task_name": fields.get("task_name", f"task-{task.task_id[:8]}"),
        "status": status,
        "created_at": iso_local(task.started_at, zone),
        "completed_at": iso_local(finished, zone) if finished is not None else None,
        "train_feature_id": fields.get("train_feature_id"),
        "train_feature_name": fields.get("train_feature_name"),
        "train_bucket": fields.get("train_bucket"),
        "train_file_path": fields.get("train_file_path"),
        "test_feature_id": fields.get("test_feature_id"),
        "test_feature_name": fields.get("test_feature_name"),
        "test_bucket": fields.get("test_bucket"),
        "test_file_path": fields.get("test_file_path"),
        # A string holding a number, as in the seed; known only once the model is built.
        "AUROC": auroc if done else None,
        "line_count": fields.get("line_count"),
        "disk_usage": fields.get("disk_usage") if done else None,
        "fail_message": failure if status == "failed" else None,
    }


def gateway_error(status: int, code: str, message: str, details: str | None = None) -> Response:
    """The API Gateway envelope; ``errorCode`` is a string, as in the docs' examples."""
    error: dict[str, Any] = {"errorCode": code, "message": message}
    if details:
        error["details"] = details
    return json_response({"error": error}, status)


def nclue_error(status: int, message: str, code: int | None = None) -> Response:
    """NCLUE's own error (shape unverified): ``{"code": 10100, "message": "ACCESS_DENIED"}``."""
    body: dict[str, Any] = {} if code is None else {"code": code}
    body["message"] = message
    return json_response(body, status)


def authentication_failed(details: str | None = None) -> Response:
    return gateway_error(401, "200", "Authentication Failed", details)


def render_fault(fault: Fault, task_id: str | None) -> Response:
    if fault is Fault.NOT_FOUND:
        return gateway_error(404, "300", "Not Found Exception")
    if fault is Fault.UNAUTHORIZED:
        return authentication_failed()
    if fault is Fault.RATE_LIMITED:
        return gateway_error(429, "420", "Rate Limited")
    return gateway_error(503, "500", "Endpoint Error")


# -- the gateway's signature check ------------------------------------------------------------


def received_uri() -> bytes:
    """The request URI as it came over the wire: what the gateway signs.

    ``RAW_URI``/``REQUEST_URI`` (werkzeug, gunicorn, uWSGI) hold the request target untouched
    even behind ``DispatcherMiddleware``, so the mount prefix and every ``%xx`` are kept. A
    server without them leaves only the decoded path: rebuilding it cannot tell ``%2F`` from
    ``/``, so that fallback is best effort.
    """
    environ = request.environ
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        # WSGI strings carry bytes as latin-1 characters.
        uri = raw.encode("latin-1", "replace")
        if not uri.startswith(b"/"):
            # An absolute-form target (sent to a proxy): the gateway signs path and query.
            parts = urlsplit(uri)
            uri = (parts.path or b"/") + (b"?" + parts.query if parts.query else b"")
        return uri
    path = (environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")).encode("latin-1")
    query = environ.get("QUERY_STRING", "")
    return quote(path, safe="/-._~!$&'()*+,;=:@").encode("ascii") + (
        b"?" + query.encode("latin-1") if query else b""
    )


def expected_signature(
    method: str, uri: bytes, timestamp: str, access_key: str, secret_key: str
) -> str:
    """HMAC-SHA256 over ``METHOD URI\\nTIMESTAMP\\nACCESSKEY``, standard Base64."""
    message = b"%s %s\n%s\n%s" % (
        method.upper().encode("ascii"),
        uri,
        timestamp.encode("utf-8"),
        access_key.encode("utf-8"),
    )
    digest = hmac.new(secret_key.encode("utf-8"), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def check_signature(
    state: SimulatorState, access_key: str, secret_key: str, max_skew_seconds: float | None
) -> Response | None:
    """``None`` when the request passes the gateway's authentication, else its 401 answer."""
    timestamp = request.headers.get("x-ncp-apigw-timestamp", "")
    given_key = request.headers.get("x-ncp-iam-access-key", "")
    signature = request.headers.get("x-ncp-apigw-signature-v2", "")
    if not timestamp or not given_key or not signature:
        return authentication_failed()
    if not timestamp.isdigit():
        return authentication_failed()
    if max_skew_seconds is not None:
        skew = int(timestamp) / 1000 - state.clock.now()
        if abs(skew) > max_skew_seconds:
            return authentication_failed(
                f"The timestamp is more than {max_skew_seconds:g} seconds away from the "
                "gateway's time."
            )
    # Unknown key and wrong signature look alike from outside (see the module docstring).
    if not hmac.compare_digest(given_key.encode("utf-8"), access_key.encode("utf-8")):
        return authentication_failed()
    wanted = expected_signature(request.method, received_uri(), timestamp, access_key, secret_key)
    if not hmac.compare_digest(signature.encode("utf-8"), wanted.encode("ascii")):
        return authentication_failed()
    return None


class Throttle:
    """The gateway's per-second rate limit, by the simulator clock: at most
    ``max(1, floor(rate))`` accepted requests in any one-second window."""

    def __init__(self, rate_per_second: float) -> None:
        self.capacity = max(1, math.floor(rate_per_second))
        self.accepted: deque[float] = deque()

    def allow(self, now: float) -> bool:
        while self.accepted and self.accepted[0] <= now - 1.0:
            self.accepted.popleft()
        if len(self.accepted) >= self.capacity:
            return False
        self.accepted.append(now)
        return True


# -- the app --------------------------------------------------------------------------------


def create_app(
    state: SimulatorState,
    *,
    access_key: str,
    secret_key: str,
    max_skew_seconds: float | None = 300.0,
    rate_limit_per_second: float | None = None,
    timezone: str = "UTC",
) -> Flask:
    """The simulator app.

    ``max_skew_seconds=None`` turns the timestamp check off: needed when the simulator runs on
    a simulated clock that the client cannot know (tests on a ``ManualClock``).
    ``rate_limit_per_second`` turns the gateway throttle on. ``timezone`` is the zone of the
    zone-less times the simulator writes.
    """
    app = new_simulator_app(PROVIDER, state, render_fault)
    zone = ZoneInfo(timezone)
    throttle = Throttle(rate_limit_per_second) if rate_limit_per_second else None

    @before_upstream(app)
    def gateway() -> Response | None:
        rejected = check_signature(state, access_key, secret_key, max_skew_seconds)
        if rejected is not None:
            return rejected
        if throttle is not None:
            with state.lock:
                allowed = throttle.allow(state.clock.now())
            if not allowed:
                return gateway_error(429, "420", "Rate Limited")
        return None

    @app.errorhandler(404)
    def no_such_resource(error: NotFound) -> Response | NotFound:
        # A path the gateway has no route for (not an unknown task: NCLUE answers those).
        if request.path.startswith(CONTROL_PREFIX):
            return error
        return gateway_error(404, "300", "Not Found Exception")

    @app.get(PREFIX)
    @simulated("list", scope=any_task_after(list_window))
    def list_tasks() -> Response:
        index, limit = list_window()
        now = state.clock.now()
        # Newest first; among tasks created at the same instant, the one added last.
        tasks = list(reversed(state.visible_tasks()))
        tasks.sort(key=lambda task: task.started_at, reverse=True)
        page = tasks[index : index + limit]
        return jsonify(
            {
                "index": index,
                "limit": limit,
                "total": len(tasks),
                "tasks": [document(task, now, zone) for task in page],
            }
        )

    @app.get(f"{PREFIX}/<path:task_id>")
    @simulated("get")
    def get_task(task_id: str) -> Response:
        task = state.get(task_id)
        if task is None:
            return nclue_error(404, "TASK_NOT_FOUND")
        return jsonify(document(task, state.clock.now(), zone))

    @app.delete(f"{PREFIX}/<path:task_id>")
    @simulated("delete")
    def delete_task(task_id: str) -> Response:
        with state.lock:
            task = state.get(task_id)
            if task is None:
                return nclue_error(404, "TASK_NOT_FOUND")
            status = task.status(state.clock.now())
            if status in UNDELETABLE:
                return nclue_error(400, f"The task cannot be deleted while it is {status}.")
            task.gone = True
        return jsonify({"task_id": task_id})

    return app


def list_window() -> tuple[int, int]:
    """``index`` and ``limit`` of a list request; NCLUE refuses bad ones before anything else."""
    try:
        index = int(request.args.get("index", 0))
        limit = int(request.args.get("limit", DEFAULT_LIST_LIMIT))
    except ValueError:
        raise Refused(nclue_error(400, "index and limit must be integers")) from None
    if index < 0 or not 1 <= limit <= MAX_LIST_LIMIT:
        raise Refused(
            nclue_error(400, f"index must be >= 0 and limit between 1 and {MAX_LIST_LIMIT}")
        )
    return index, limit


# -- what the demo, the CLI and the tests use ---------------------------------------------

PROVIDER = "nclue"
#: Keyword arguments of :func:`create_app` for the demo and ``taskdeck simulate``. They keep the
#: gateway's 5-minute timestamp check on: both run on the wall clock, as clients sign. The test
#: suite runs the simulators on a ``ManualClock`` while clients sign with the real time, so its
#: fixtures (tests/conftest.py) pass ``max_skew_seconds=None``; tests of the check pass a clock
#: that starts at the real time.
DEMO_CREDENTIALS: dict[str, Any] = {
    "access_key": "DEMOACCESSKEY",
    "secret_key": "demo-secret-key",
}

#: Final upstream word for each normalized outcome: NCLUE has only these two.
FINAL_STATUS = {"succeeded": "completed", "failed": "failed"}

_FAIL_MESSAGES = [
    "The train file could not be read from Object Storage.",
    "The feature applied to the train data has no valid lines.",
    "Task model creation failed due to an internal error. Please try again.",
]
_NAMES = ["churn", "fraud", "upsell", "retention", "click"]


def _rng_uuid(rng: Any) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def demo_source(name: str, base_url: str) -> tuple[dict[str, Any], dict[str, str]]:
    """A ``[[sources]]`` entry for this simulator and the environment holding its keys."""
    secrets = {
        "access_key_env": ("ACCESS_KEY", DEMO_CREDENTIALS["access_key"]),
        "secret_key_env": ("SECRET_KEY", DEMO_CREDENTIALS["secret_key"]),
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
    """A task that goes registered -> pending -> in_progress -> the final word for ``final``.

    Successes say ``completed``, as the get and list APIs do; ``complete`` appears only in the
    create-task docs (PROVIDERS.md part 3), so the simulator never serves it on its own.
    """
    word = FINAL_STATUS[final]
    if task_id is None:
        task_id = _rng_uuid(rng)
        while task_id in state.tasks:
            task_id = _rng_uuid(rng)
    train_lines = rng.randint(1_000, 100_000)
    fields: dict[str, Any] = {
        "task_name": f"{rng.choice(_NAMES)}-model-{rng.randint(1, 99):02d}",
        "train_feature_id": _rng_uuid(rng),
        "train_feature_name": f"features-{rng.randint(1, 9)}",
        "train_bucket": "demo-bucket",
        "train_file_path": f"train/labels-{rng.randint(1, 99):02d}.csv",
        "line_count": train_lines,
        "auroc": rng.uniform(0.55, 0.97),
        "disk_usage": train_lines * rng.randint(300, 600),
    }
    if rng.random() < 0.5:
        test_lines = rng.randint(100, 10_000)
        fields.update(
            {
                "test_feature_id": _rng_uuid(rng),
                "test_feature_name": f"features-{rng.randint(1, 9)}",
                "test_bucket": "demo-bucket",
                "test_file_path": f"test/labels-{rng.randint(1, 99):02d}.csv",
                "line_count": train_lines + test_lines,
            }
        )
    if final == "failed":
        fields["fail_message"] = rng.choice(_FAIL_MESSAGES)
    registered = queued_seconds * 0.4
    return state.add(
        task_id,
        [
            ("registered", registered),
            ("pending", queued_seconds - registered),
            ("in_progress", running_seconds),
            (word, None),
        ],
        fields=fields,
    )
