"""Every registered simulator is a :class:`Simulator`, and every upstream route it serves runs
the shared prologue (count, scope, fault), checked over real loopback HTTP through the control
API, as the demo and other processes drive it."""

from __future__ import annotations

import base64
import inspect
import random
import re
import time
from collections.abc import Callable
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from flask import Flask

from tests.conftest import PROVIDER_NAMES
from webapp.simulators import SIMULATORS
from webapp.simulators import SimulatorSuite
from webapp.simulators import nclue
from webapp.simulators.core import Fault
from webapp.simulators.core import SimulatorState
from webapp.simulators.protocol import Simulator
from webapp.simulators.server import ServerThread

#: Routes that are not the tasks API, so no task fault applies to them.
WITHOUT_PROLOGUE = {"conductor": {("POST", "/api/token")}}
#: A request each upstream refuses before anything else (the scope's ``Refused``): method,
#: path, its answer's status and the kind of call it is counted as.
REFUSED = {
    "opensearch-ml": (
        "GET",
        '/_plugins/_ml/tasks/_search?source={"query":{"fuzzy":{}}}',
        400,
        "search",
    ),
    "mixpeek": ("POST", "/v1/tasks/list?limit=0", 422, "list"),
    "conductor": ("GET", "/api/tasks/search?size=many", 400, "search"),
    "nclue": ("GET", "/api/v1/tasks?limit=0", 400, "list"),
}
MALFORMED_BODY = b'{"truncated": [1, 2,'
#: The upstream writes each simulator serves (PROVIDERS.md part 3): method, rule, counted kind.
WRITES = {
    "mixpeek": {("DELETE", "/v1/tasks/<path:task_id>", "delete")},
    "nclue": {("DELETE", "/api/v1/tasks/<path:task_id>", "delete")},
}

Authenticate = Callable[[httpx.Client, str, str, str], dict[str, str]]


# -- the protocol ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PROVIDER_NAMES)
def test_every_simulator_satisfies_the_protocol(name: str) -> None:
    simulator = SIMULATORS[name]
    assert isinstance(simulator, Simulator)
    assert simulator.PROVIDER == name
    assert {"succeeded", "failed"} <= set(simulator.FINAL_STATUS)
    # create_app takes a state and the demo's credentials as keywords.
    state = SimulatorState()
    inspect.signature(simulator.create_app).bind(state, **simulator.DEMO_CREDENTIALS)
    assert isinstance(simulator.create_app(state, **simulator.DEMO_CREDENTIALS), Flask)
    # add_demo_task's keywords are the protocol's, with its defaults.
    wanted = inspect.signature(Simulator.add_demo_task).parameters
    offered = inspect.signature(simulator.add_demo_task).parameters
    for keyword in ("task_id", "final", "queued_seconds", "running_seconds"):
        assert offered[keyword].kind is inspect.Parameter.KEYWORD_ONLY
        assert offered[keyword].default == wanted[keyword].default
    task = simulator.add_demo_task(state, random.Random(1), final="failed")
    assert state.get(task.task_id) is task
    assert task.phases[-1].status == simulator.FINAL_STATUS["failed"]
    assert simulator.load_seed_tasks(SimulatorState())
    entry, environ = simulator.demo_source("sim-demo", "http://127.0.0.1:1/x")
    assert (entry["name"], entry["provider"], entry["base_url"]) == (
        "sim-demo",
        name,
        "http://127.0.0.1:1/x",
    )
    secrets = {value for key, value in entry.items() if key.endswith("_env")}
    assert secrets and secrets == set(environ)


def test_something_else_is_not_a_simulator() -> None:
    class Partial:
        PROVIDER = "partial"
        DEMO_CREDENTIALS: dict[str, str] = {}
        FINAL_STATUS = {"succeeded": "OK"}

    assert not isinstance(Partial(), Simulator)


# -- the prologue over loopback ------------------------------------------------------------------


def _basic(client: httpx.Client, root: str, method: str, url: str) -> dict[str, str]:
    login = SIMULATORS["opensearch-ml"].DEMO_CREDENTIALS
    pair = f"{login['username']}:{login['password']}".encode()
    return {"Authorization": "Basic " + base64.b64encode(pair).decode()}


def _bearer(client: httpx.Client, root: str, method: str, url: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {SIMULATORS['mixpeek'].DEMO_CREDENTIALS['api_key']}"}


def _orkes_token(client: httpx.Client, root: str, method: str, url: str) -> dict[str, str]:
    keys = SIMULATORS["conductor"].DEMO_CREDENTIALS
    answer = client.post(
        f"{root}/api/token", json={"keyId": keys["key_id"], "keySecret": keys["key_secret"]}
    )
    return {"X-Authorization": answer.json()["token"]}


def _gateway_signature(client: httpx.Client, root: str, method: str, url: str) -> dict[str, str]:
    keys = SIMULATORS["nclue"].DEMO_CREDENTIALS
    parts = urlsplit(url)
    uri = (parts.path + (f"?{parts.query}" if parts.query else "")).encode()
    timestamp = str(int(time.time() * 1000))
    signature = nclue.expected_signature(
        method, uri, timestamp, keys["access_key"], keys["secret_key"]
    )
    return {
        "x-ncp-apigw-timestamp": timestamp,
        "x-ncp-iam-access-key": keys["access_key"],
        "x-ncp-apigw-signature-v2": signature,
    }


AUTHENTICATE: dict[str, Authenticate] = {
    "opensearch-ml": _basic,
    "mixpeek": _bearer,
    "conductor": _orkes_token,
    "nclue": _gateway_signature,
}


class Upstream:
    """One simulator over HTTP: its routes with the prologue, authenticated requests, and the
    control API."""

    def __init__(self, suite: SimulatorSuite, server: ServerThread, name: str) -> None:
        self.name = name
        self.root = suite.base_url(server.url, name)
        self.app = suite.apps[name]
        self.http = httpx.Client(timeout=10)

    def routes(self) -> list[tuple[str, str, str]]:
        """(method, rule, counted kind) of every route carrying the prologue."""
        return [(method, rule, kind) for method, rule, kind in self._all() if kind is not None]

    def upstream_routes(self) -> set[tuple[str, str]]:
        """(method, rule) of every route but the control API's."""
        return {
            (method, rule) for method, rule, _ in self._all() if not rule.startswith("/_control")
        }

    def _all(self) -> list[tuple[str, str, str | None]]:
        out = []
        for rule in self.app.url_map.iter_rules():
            if rule.endpoint == "static":
                continue
            kind = getattr(self.app.view_functions[rule.endpoint], "counts_as", None)
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                out.append((method, rule.rule, kind))
        return out

    def send(self, method: str, path: str) -> httpx.Response:
        url = f"{self.root}{path}"
        headers = AUTHENTICATE[self.name](self.http, self.root, method, url)
        return self.http.request(method, url, headers=headers)

    def fault(self, fault: Fault, **rule: object) -> None:
        answer = self.http.post(f"{self.root}/_control/faults", json={"fault": fault, **rule})
        answer.raise_for_status()

    def calls(self) -> dict[str, int]:
        return self.http.get(f"{self.root}/_control/stats").json()["calls"]


@pytest.fixture(params=PROVIDER_NAMES)
def upstream(
    request: pytest.FixtureRequest, suite: SimulatorSuite, sim_server: ServerThread
) -> Iterator[Upstream]:
    upstream = Upstream(suite, sim_server, request.param)
    yield upstream
    upstream.http.close()


def concrete(rule: str, task_id: str) -> str:
    """The rule with ``task_id`` for its one variable (a task's, or a workflow's)."""
    return re.sub(r"<[^>]+>", task_id, rule)


def test_every_upstream_route_has_the_prologue(upstream: Upstream) -> None:
    with_prologue = {(method, rule) for method, rule, _ in upstream.routes()}
    assert with_prologue
    exempt = WITHOUT_PROLOGUE.get(upstream.name, set())
    assert with_prologue == upstream.upstream_routes() - exempt


@pytest.mark.parametrize("upstream", list(WRITES), indirect=True)
def test_every_write_is_served_with_the_prologue(upstream: Upstream) -> None:
    assert WRITES[upstream.name] <= set(upstream.routes())


def test_a_fault_set_through_the_control_api_answers_on_every_route(upstream: Upstream) -> None:
    for method, rule, kind in upstream.routes():
        path = concrete(rule, "probe-1")
        before = upstream.calls().get(kind, 0)

        upstream.fault(Fault.MALFORMED, times=1)
        garbled = upstream.send(method, path)
        assert (garbled.status_code, garbled.content) == (200, MALFORMED_BODY), (method, rule)
        # Used up: the route answers for itself again.
        assert upstream.send(method, path).content != MALFORMED_BODY, (method, rule)

        upstream.fault(Fault.RATE_LIMITED, times=1, seconds=7)
        limited = upstream.send(method, path)
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "7", (method, rule)

        upstream.fault(Fault.SERVER_ERROR, times=1)
        assert upstream.send(method, path).status_code >= 500, (method, rule)

        upstream.fault(Fault.UNAUTHORIZED, times=1)
        assert upstream.send(method, path).status_code == 401, (method, rule)

        # Every request was counted, the faulted ones included.
        assert upstream.calls()[kind] == before + 5, (method, rule)


def test_a_task_fault_answers_only_for_that_task(upstream: Upstream) -> None:
    per_task = [(method, rule) for method, rule, _ in upstream.routes() if "<" in rule]
    assert per_task
    for method, rule in per_task:
        upstream.fault(Fault.MALFORMED, task_id="probe-1", times=1)
        other = upstream.send(method, concrete(rule, "probe-2"))
        assert other.content != MALFORMED_BODY, (method, rule)
        hit = upstream.send(method, concrete(rule, "probe-1"))
        assert hit.content == MALFORMED_BODY, (method, rule)


@pytest.mark.parametrize("upstream", list(REFUSED), indirect=True)
def test_a_refused_request_is_counted_but_takes_no_fault(upstream: Upstream) -> None:
    method, path, status, kind = REFUSED[upstream.name]
    before = upstream.calls().get(kind, 0)
    upstream.fault(Fault.MALFORMED, times=1)
    assert upstream.send(method, path).status_code == status
    # The rule is still there for the next request the upstream takes.
    assert upstream.send(method, path.partition("?")[0]).content == MALFORMED_BODY
    assert upstream.calls()[kind] == before + 2
