"""The Conductor provider against the simulator over loopback HTTP: a restarted server's
INVALID_TOKEN recovered with one retry, never more, and batched refreshes that really select
tasks by id through an unquoted ``taskId IN (...)``, with GETs only for the ids the list
syntax cannot carry (PROVIDERS.md part 3)."""

from __future__ import annotations

import random
from collections.abc import Iterator

import httpx
import pytest

from webapp.config import build_source
from webapp.domain import FetchError
from webapp.domain import FetchErrorKind
from webapp.domain import NormalizedTask
from webapp.domain import TaskState
from webapp.providers.conductor import ConductorProvider
from webapp.simulators import SimulatorSuite
from webapp.simulators import conductor as sim
from webapp.simulators.core import Fault
from webapp.simulators.core import ManualClock
from webapp.simulators.core import SimulatorState
from webapp.simulators.server import ServerThread


@pytest.fixture
def state(suite: SimulatorSuite) -> SimulatorState:
    return suite.states["conductor"]


@pytest.fixture
def provider(make_source) -> Iterator[ConductorProvider]:
    provider = ConductorProvider.create(make_source("conductor", rate_limit=1000.0))
    assert isinstance(provider, ConductorProvider)
    yield provider
    provider.close()


def calls(state: SimulatorState) -> tuple[int, int, int]:
    """(token exchanges, requests refused for their token, task GETs)."""
    return state.calls["token"], state.calls["refused"], state.calls["get"]


# -- tokens -----------------------------------------------------------------------------------


def test_restart_through_the_control_api_invalidates_issued_tokens(
    sim_server: ServerThread, state: SimulatorState
) -> None:
    root = SimulatorSuite.base_url(sim_server.url, "conductor")
    keys = sim.DEMO_CREDENTIALS
    task = sim.add_demo_task(state, random.Random(1))
    with httpx.Client(base_url=root, timeout=10) as http:
        body = {"keyId": keys["key_id"], "keySecret": keys["key_secret"], "expiration": -1}
        token = http.post("/api/token", json=body).json()["token"]
        headers = {"X-Authorization": token}
        assert http.get(f"/api/tasks/{task.task_id}", headers=headers).status_code == 200
        assert http.post("/_control/restart").json() == {"forgotten_tokens": 1}
        # Even a token issued never to expire: the restarted server does not know it.
        refused = http.get(f"/api/tasks/{task.task_id}", headers=headers)
    assert refused.status_code == 401
    assert refused.json()["error"] == "INVALID_TOKEN"


def test_invalid_token_after_a_restart_is_recovered_with_one_retry(
    sim_server: ServerThread, provider: ConductorProvider, state: SimulatorState
) -> None:
    task = sim.add_demo_task(state, random.Random(1), queued_seconds=3600)
    assert provider.fetch(task.task_id).state is TaskState.QUEUED
    assert calls(state) == (1, 0, 1)
    root = SimulatorSuite.base_url(sim_server.url, "conductor")
    httpx.post(f"{root}/_control/restart", timeout=10).raise_for_status()
    # Long before the 45-minute proactive refresh: the refused request gets a new token.
    assert provider.fetch(task.task_id).task_id == task.task_id
    assert calls(state) == (2, 1, 2)
    provider.fetch(task.task_id)
    assert calls(state) == (2, 1, 3)


def test_restart_during_a_batched_refresh_is_recovered(
    suite: SimulatorSuite, provider: ConductorProvider, state: SimulatorState
) -> None:
    rng = random.Random(2)
    ids = [sim.add_demo_task(state, rng).task_id for _ in range(3)]
    provider.fetch(ids[0])
    assert sim.restart(suite.apps["conductor"]) == 1
    results = provider.fetch_many(ids)
    assert all(isinstance(results[i], NormalizedTask) for i in ids)
    # One search refused, one new token, the search again; no GET per task.
    assert calls(state) == (2, 1, 1) and state.calls["search"] == 1


def test_expired_token_is_still_refreshed_and_retried_once(
    provider: ConductorProvider, state: SimulatorState, clock: ManualClock
) -> None:
    task = sim.add_demo_task(state, random.Random(3))
    provider.fetch(task.task_id)
    clock.advance(3601)  # past the simulator's token lifetime
    assert provider.fetch(task.task_id).task_id == task.task_id
    assert calls(state) == (2, 1, 2)


def test_a_server_that_keeps_refusing_the_token_gets_exactly_two_attempts(
    provider: ConductorProvider, state: SimulatorState
) -> None:
    task = sim.add_demo_task(state, random.Random(4))
    state.set_fault(Fault.UNAUTHORIZED)  # 401 {"error": "INVALID_TOKEN"}, whatever the token
    with pytest.raises(FetchError) as caught:
        provider.fetch(task.task_id)
    assert caught.value.kind is FetchErrorKind.UNAUTHORIZED
    assert "INVALID_TOKEN" in caught.value.message
    assert (state.calls["get"], state.calls["token"]) == (2, 2)


def test_a_batch_against_a_server_that_keeps_refusing_gets_exactly_two_attempts(
    provider: ConductorProvider, state: SimulatorState
) -> None:
    rng = random.Random(5)
    ids = [sim.add_demo_task(state, rng).task_id for _ in range(3)]
    state.set_fault(Fault.UNAUTHORIZED)
    results = provider.fetch_many(ids)
    assert all(
        isinstance(r, FetchError) and r.kind is FetchErrorKind.UNAUTHORIZED
        for r in results.values()
    )
    assert (state.calls["search"], state.calls["get"], state.calls["token"]) == (2, 0, 2)


def test_a_fixed_token_is_never_retried(clock: ManualClock) -> None:
    state = SimulatorState(clock)
    task = sim.add_demo_task(state, random.Random(6))
    app = sim.create_app(state, auth="token", token="right-token")
    with ServerThread(app) as server:
        source = build_source(
            {"name": "fixed", "provider": "conductor", "base_url": server.url, "token_env": "T"},
            {"T": "wrong-token"},
        )
        provider = ConductorProvider.create(source)
        with pytest.raises(FetchError) as caught:
            provider.fetch(task.task_id)
        provider.close()
    # A ready token cannot be renewed: one attempt, no exchange.
    assert caught.value.kind is FetchErrorKind.UNAUTHORIZED
    assert (state.calls["refused"], state.calls["token"]) == (1, 0)


# -- batched refreshes --------------------------------------------------------------------------


def test_a_batch_is_one_unquoted_search_that_selects_by_id(
    provider: ConductorProvider, state: SimulatorState, clock: ManualClock
) -> None:
    rng = random.Random(7)
    finals = {"succeeded": TaskState.SUCCEEDED, "failed": TaskState.FAILED}
    wanted = {
        sim.add_demo_task(
            state, rng, final=final, queued_seconds=0, running_seconds=1
        ).task_id: normalized
        for final, normalized in finals.items()
    }
    queued = sim.add_demo_task(state, rng, queued_seconds=600).task_id
    other = sim.add_demo_task(state, rng, final="failed").task_id  # not asked for
    clock.advance(5)
    wanted[queued] = TaskState.QUEUED
    results = provider.fetch_many([*wanted, "not-there"])
    assert set(results) == {*wanted, "not-there"} and other not in results
    for task_id, expected in wanted.items():
        task = results[task_id]
        assert isinstance(task, NormalizedTask) and task.state is expected
        # From the search: a TaskSummary (workflowId), not a Task (workflowInstanceId).
        assert "workflowId" in task.raw and "workflowTask" not in task.raw
    missing = results["not-there"]
    assert isinstance(missing, FetchError) and missing.kind is FetchErrorKind.NOT_FOUND
    # One search for all; one GET, for the id the search did not return.
    assert (state.calls["search"], state.calls["get"]) == (1, 1)


@pytest.mark.parametrize(
    "odd", ["has,comma", "has(paren", "has)paren", "it's", 'say"hi', "two words", "naïve"]
)
def test_ids_the_list_cannot_carry_are_fetched_one_by_one(
    provider: ConductorProvider, state: SimulatorState, odd: str
) -> None:
    rng = random.Random(8)
    plain = [sim.add_demo_task(state, rng).task_id for _ in range(2)]
    sim.add_demo_task(state, rng, task_id=odd, final="failed")
    results = provider.fetch_many([*plain, odd])
    for task_id in [*plain, odd]:
        assert isinstance(results[task_id], NormalizedTask), results[task_id]
    # The odd id came from its own GET (a full Task), the plain ones from the search.
    assert "workflowTask" in results[odd].raw  # type: ignore[union-attr]
    assert all("workflowTask" not in results[i].raw for i in plain)  # type: ignore[union-attr]
    assert (state.calls["search"], state.calls["get"]) == (1, 1)


def test_a_batch_of_only_odd_ids_sends_no_search(
    provider: ConductorProvider, state: SimulatorState
) -> None:
    rng = random.Random(9)
    odd = ["a,b", "c(d"]
    for task_id in odd:
        sim.add_demo_task(state, rng, task_id=task_id)
    results = provider.fetch_many(odd)
    assert all(isinstance(results[i], NormalizedTask) for i in odd)
    assert (state.calls["search"], state.calls["get"]) == (0, 2)
