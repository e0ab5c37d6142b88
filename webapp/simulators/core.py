"""What every upstream simulator shares: a clock, tasks that move through phases, fault switches.

A simulator is a small Flask app that speaks one upstream's API as PROVIDERS.md and the seed
documents describe it. Tests and the demo drive it through :class:`SimulatorState` directly
(same process) or through the ``/_control`` endpoints (another process). The clock is
injectable so a test decides when a task moves on; nothing here sleeps except the "slow"
fault, whose delay the caller sets.
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from enum import StrEnum
from importlib import resources
from typing import Any
from typing import ParamSpec

from flask import Blueprint
from flask import Flask
from flask import Response
from flask import abort
from flask import current_app
from flask import jsonify
from flask import request


class Clock:
    """Wall-clock time in epoch seconds; tests swap in :class:`ManualClock`."""

    def now(self) -> float:
        return time.time()


class ManualClock(Clock):
    """A clock that moves only when told to."""

    def __init__(self, start: float = 1_767_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        with self._lock:
            self._now += seconds
            return self._now

    def set(self, value: float) -> None:
        with self._lock:
            self._now = value


@dataclass
class Phase:
    """One upstream status held for ``seconds`` (``None``: held for ever)."""

    status: str
    seconds: float | None = None


@dataclass
class SimTask:
    """A task a simulator serves.

    ``phases`` move with the clock from ``started_at``. ``fields`` are provider-specific values
    the simulator renders (model id, names, inputs...). ``fixed_payload``, when set, is served
    exactly as written (the seed documents' examples) and never moves.
    """

    task_id: str
    phases: list[Phase]
    started_at: float
    fields: dict[str, Any] = field(default_factory=dict)
    fixed_payload: dict[str, Any] | None = None
    #: Set when the task was deleted upstream or aged out: the simulator answers "not found".
    gone: bool = False

    def progress(self, now: float) -> tuple[int, float]:
        """(index of the current phase, clock time it began)."""
        began = self.started_at
        for index, phase in enumerate(self.phases):
            if (
                phase.seconds is None
                or now < began + phase.seconds
                or index == len(self.phases) - 1
            ):
                return index, began
            began += phase.seconds
        return len(self.phases) - 1, began

    def status(self, now: float) -> str:
        return self.phases[self.progress(now)[0]].status

    def history(self, now: float) -> list[tuple[str, float]]:
        """Every (status, began) reached by ``now``, oldest first."""
        index, _ = self.progress(now)
        out: list[tuple[str, float]] = []
        began = self.started_at
        for phase in self.phases[: index + 1]:
            out.append((phase.status, began))
            began += phase.seconds or 0
        return out

    def finished_at(self, now: float, terminal: frozenset[str]) -> float | None:
        index, began = self.progress(now)
        return began if self.phases[index].status in terminal else None


class Fault(StrEnum):
    """Fault switches every simulator honours (per task or for the whole simulator)."""

    NOT_FOUND = "404"
    UNAUTHORIZED = "401"
    SERVER_ERROR = "500"
    RATE_LIMITED = "429"
    SLOW = "slow"
    MALFORMED = "malformed"


@dataclass
class FaultRule:
    fault: Fault
    task_id: str | None = None
    #: How many requests it still applies to; ``None`` until cleared.
    remaining: int | None = None
    #: Seconds of delay for ``slow``; seconds for ``Retry-After`` on ``429``.
    seconds: float = 1.0
    #: Chance (0..1) that a matching request is hit, for soak tests; seeded by the caller.
    probability: float = 1.0
    #: Requests it has answered so far (what a soak test checks really happened).
    hits: int = 0


class SimulatorState:
    """The tasks, faults, clock and call counts of one simulator. Thread-safe."""

    def __init__(self, clock: Clock | None = None, *, seed: int = 0) -> None:
        self.clock = clock or Clock()
        self.tasks: dict[str, SimTask] = {}
        self.faults: list[FaultRule] = []
        self.calls: Counter[str] = Counter()
        self.lock = threading.RLock()
        self.random = random.Random(seed)
        self._ids = itertools.count(1)

    # -- tasks ---------------------------------------------------------------------------
    def add(
        self,
        task_id: str,
        phases: list[Phase] | list[tuple[str, float | None]],
        *,
        started_at: float | None = None,
        fields: dict[str, Any] | None = None,
    ) -> SimTask:
        normalized = [p if isinstance(p, Phase) else Phase(*p) for p in phases]
        task = SimTask(
            task_id=task_id,
            phases=normalized,
            started_at=self.clock.now() if started_at is None else started_at,
            fields=dict(fields or {}),
        )
        with self.lock:
            self.tasks[task_id] = task
        return task

    def add_fixed(self, task_id: str, payload: dict[str, Any], status_key: str) -> SimTask:
        """Serve ``payload`` exactly as written for ``task_id`` (a seed example)."""
        task = SimTask(
            task_id=task_id,
            phases=[Phase(str(payload.get(status_key)))],
            started_at=self.clock.now(),
            fixed_payload=copy.deepcopy(payload),
        )
        with self.lock:
            self.tasks[task_id] = task
        return task

    def get(self, task_id: str) -> SimTask | None:
        with self.lock:
            task = self.tasks.get(task_id)
            return None if task is None or task.gone else task

    def visible_tasks(self) -> list[SimTask]:
        with self.lock:
            return [t for t in self.tasks.values() if not t.gone]

    def next_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}"

    # -- faults --------------------------------------------------------------------------
    def set_fault(
        self,
        fault: Fault | str,
        *,
        task_id: str | None = None,
        times: int | None = None,
        seconds: float = 1.0,
        probability: float = 1.0,
    ) -> FaultRule:
        rule = FaultRule(Fault(fault), task_id, times, seconds, probability)
        with self.lock:
            self.faults.append(rule)
        return rule

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def take_fault(self, task_ids: list[str] | None) -> FaultRule | None:
        """The first rule that applies to a request about ``task_ids`` (``None``: any task)."""
        with self.lock:
            for rule in self.faults:
                if rule.task_id is not None and (task_ids is None or rule.task_id not in task_ids):
                    continue
                if rule.remaining is not None and rule.remaining <= 0:
                    continue
                if rule.probability < 1.0 and self.random.random() >= rule.probability:
                    continue
                if rule.remaining is not None:
                    rule.remaining -= 1
                rule.hits += 1
                return rule
        return None

    def count(self, kind: str) -> None:
        with self.lock:
            self.calls[kind] += 1


# -- the Flask side --------------------------------------------------------------------------

ErrorRenderer = Callable[[Fault, str | None], Response]
#: Where no upstream route lives: the endpoints that drive a simulator from outside.
CONTROL_PREFIX = "/_control"


def json_response(body: Any, status: int) -> Response:
    """``body`` as JSON with ``status``: the shape of every upstream's error envelope."""
    response = jsonify(body)
    response.status_code = status
    return response


def read_seed(name: str) -> dict[str, Any]:
    """The seed document's examples for one upstream (``seeds/<name>.json``)."""
    text = resources.files("webapp.simulators").joinpath(f"seeds/{name}.json").read_text()
    seeds: dict[str, Any] = json.loads(text)
    return seeds


def fault_response(
    state: SimulatorState, task_ids: list[str] | None, render: ErrorRenderer
) -> Response | None:
    """Apply a matching fault: a provider-shaped error, garbage, or a delay before answering.

    Returns the response to send instead of the real one, or ``None`` to carry on (a ``slow``
    fault sleeps first, then lets the real answer through).
    """
    rule = state.take_fault(task_ids)
    if rule is None:
        return None
    task_id = task_ids[0] if task_ids else None
    if rule.fault is Fault.SLOW:
        time.sleep(rule.seconds)
        return None
    if rule.fault is Fault.MALFORMED:
        return Response('{"truncated": [1, 2,', status=200, mimetype="application/json")
    response = render(rule.fault, task_id)
    if rule.fault is Fault.RATE_LIMITED and "Retry-After" not in response.headers:
        response.headers["Retry-After"] = str(max(0, round(rule.seconds)))
    return response


class Refused(Exception):
    """Raised by a route's scope: the upstream's own answer to a request it will not take."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


#: The task ids a request is about, from the route's arguments (``None``: any task).
Scope = Callable[..., list[str] | None]
#: A check before every upstream route: its refusal, or ``None`` to go on.
Gate = Callable[[], Response | None]
P = ParamSpec("P")


def task_in_path(**view_args: Any) -> list[str] | None:
    """The default scope: the ``task_id`` in the URL, if the route has one."""
    task_id = view_args.get("task_id")
    return None if task_id is None else [task_id]


def any_task_after(check: Callable[[], object]) -> Scope:
    """The scope of a request about no task in particular (a list page) that the upstream
    validates first: ``check`` raises :class:`Refused` for a request it will not take."""

    def scope(**view_args: Any) -> None:
        check()
        return None

    return scope


def simulated(
    kind: str, scope: Scope = task_in_path
) -> Callable[[Callable[P, Response]], Callable[P, Response]]:
    """The prologue every upstream route shares, so the route itself states only its upstream.

    The call is counted as ``kind`` (``/_control/stats``, the tests' call counts), then the
    first matching fault rule answers instead of the route (:func:`fault_response`, with the
    renderer given to :func:`new_simulator_app`). ``scope`` runs between the two: it names the
    task ids the request is about, so a per-task fault hits a batched fetch too, and it may
    raise :class:`Refused` for a request the upstream rejects before any fault could apply.
    """

    def decorate(view: Callable[P, Response]) -> Callable[P, Response]:
        @functools.wraps(view)
        def route(*args: P.args, **kwargs: P.kwargs) -> Response:
            state = sim_state()
            state.count(kind)
            try:
                task_ids = scope(**kwargs)
            except Refused as refusal:
                return refusal.response
            faulty = fault_response(state, task_ids, current_app.config["SIMULATOR_FAULTS"])
            return view(*args, **kwargs) if faulty is None else faulty

        # Marks the route as having the prologue (the protocol tests find them by it).
        route.counts_as = kind  # type: ignore[attr-defined]
        return route

    return decorate


def before_upstream(app: Flask) -> Callable[[Gate], Gate]:
    """Register ``gate`` to run before every request but the control API's (an upstream's
    authentication, a gateway's throttle): it answers instead of the route, or ``None``."""

    def register(gate: Gate) -> Gate:
        def hook() -> Response | None:
            return None if request.path.startswith(CONTROL_PREFIX) else gate()

        app.before_request(hook)
        return gate

    return register


def control_blueprint(state: SimulatorState) -> Blueprint:
    """``/_control``: drive a simulator running in another process (the demo, manual tests).

    Not part of any upstream API; it sits under a path no upstream uses.
    """
    bp = Blueprint("control", __name__, url_prefix=CONTROL_PREFIX)

    @bp.post("/tasks")
    def add_task() -> Response:
        body = request.get_json(force=True)
        phases = [Phase(p["status"], p.get("seconds")) for p in body["phases"]]
        task = state.add(
            body.get("task_id") or state.next_id("sim-"), phases, fields=body.get("fields")
        )
        return jsonify({"task_id": task.task_id})

    @bp.delete("/tasks/<path:task_id>")
    def remove_task(task_id: str) -> Response:
        task = state.get(task_id)
        if task is None:
            abort(404)
        task.gone = True
        return jsonify({"task_id": task_id, "gone": True})

    @bp.post("/faults")
    def add_fault() -> Response:
        body = request.get_json(force=True)
        state.set_fault(
            body["fault"],
            task_id=body.get("task_id"),
            times=body.get("times"),
            seconds=float(body.get("seconds", 1.0)),
            probability=float(body.get("probability", 1.0)),
        )
        return jsonify({"faults": len(state.faults)})

    @bp.delete("/faults")
    def clear_faults() -> Response:
        state.clear_faults()
        return jsonify({"faults": 0})

    @bp.post("/clock")
    def move_clock() -> Response:
        body = request.get_json(force=True)
        if not isinstance(state.clock, ManualClock):
            abort(409, "this simulator runs on the wall clock")
        now = state.clock.advance(float(body.get("advance", 0)))
        return jsonify({"now": now})

    @bp.get("/stats")
    def stats() -> Response:
        now = state.clock.now()
        with state.lock:
            return jsonify(
                {
                    "calls": dict(state.calls),
                    "tasks": {t.task_id: t.status(now) for t in state.tasks.values()},
                }
            )

    return bp


def new_simulator_app(name: str, state: SimulatorState, render_fault: ErrorRenderer) -> Flask:
    """A bare Flask app for one simulator, with the control endpoints mounted.

    ``render_fault`` writes a fault (401, 404, 429, 500) in this upstream's own error shape.
    """
    app = Flask(f"taskdeck.simulators.{name}")
    app.config["SIMULATOR_STATE"] = state
    app.config["SIMULATOR_FAULTS"] = render_fault
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.register_blueprint(control_blueprint(state))
    return app


def demo_source_entry(
    provider: str, name: str, base_url: str, secrets: dict[str, tuple[str, str]]
) -> tuple[dict[str, Any], dict[str, str]]:
    """A ``[[sources]]`` entry and the environment holding its secrets.

    ``secrets`` maps each ``*_env`` field to (variable suffix, value): the variable is named
    after the source, e.g. ``ML_DEMO_PASS`` for source ``ml-demo``.
    """
    prefix = name.upper().replace("-", "_")
    entry: dict[str, Any] = {"name": name, "provider": provider, "base_url": base_url}
    environ: dict[str, str] = {}
    for env_field, (suffix, value) in secrets.items():
        variable = f"{prefix}_{suffix}"
        entry[env_field] = variable
        environ[variable] = value
    return entry, environ


def sim_state() -> SimulatorState:
    """The state of the simulator handling the current request."""
    state: SimulatorState = current_app.config["SIMULATOR_STATE"]
    return state
