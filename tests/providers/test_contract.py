"""What every provider shares, checked against its simulator over real loopback HTTP.

Each case runs for all four providers: not found, unauthorized, server error, timeout,
malformed JSON, an unknown status word, an id that needs URL-encoding, progress over time,
rate limiting.
"""

from __future__ import annotations

import random

import pytest

from tests.conftest import PROVIDER_NAMES
from webapp.domain import FetchError
from webapp.domain import FetchErrorKind
from webapp.domain import TaskState
from webapp.providers import PROVIDERS
from webapp.simulators import SIMULATORS
from webapp.simulators.core import Fault
from webapp.simulators.core import Phase

pytestmark = pytest.mark.parametrize("provider_name", PROVIDER_NAMES)


@pytest.fixture
def provider(provider_name, make_source):
    source = make_source(provider_name, timeout=2.0, rate_limit=1000.0)
    provider = PROVIDERS[provider_name].create(source)
    yield provider
    provider.close()


@pytest.fixture
def state(provider_name, suite):
    return suite.states[provider_name]


def add_task(provider_name, state, task_id=None, **kwargs):
    return SIMULATORS[provider_name].add_demo_task(
        state, random.Random(7), task_id=task_id, **kwargs
    )


def fetch_error(provider, task_id) -> FetchError:
    with pytest.raises(FetchError) as caught:
        provider.fetch(task_id)
    return caught.value


def test_progresses_through_states(provider_name, provider, state, clock):
    task = add_task(provider_name, state, queued_seconds=5, running_seconds=10, final="succeeded")
    first = provider.fetch(task.task_id)
    assert first.task_id == task.task_id
    assert first.state is TaskState.QUEUED and not first.terminal
    clock.advance(6)
    assert provider.fetch(task.task_id).state is TaskState.RUNNING
    clock.advance(10)
    done = provider.fetch(task.task_id)
    assert done.state is TaskState.SUCCEEDED and done.terminal
    assert done.upstream_status == state.get(task.task_id).status(clock.now())
    assert done.raw


def test_failures_carry_an_error(provider_name, provider, state, clock):
    finals = [f for f in ("failed", "partial") if f in SIMULATORS[provider_name].FINAL_STATUS]
    assert "failed" in finals
    tasks = {
        f: add_task(provider_name, state, queued_seconds=1, running_seconds=1, final=f)
        for f in finals
    }
    clock.advance(5)
    for final, task in tasks.items():
        result = provider.fetch(task.task_id)
        assert result.state is TaskState(final) and result.terminal
        if final == "failed":
            assert result.error


def test_not_found(provider, state):
    error = fetch_error(provider, "no-such-task")
    assert error.kind is FetchErrorKind.NOT_FOUND


def test_unauthorized_names_no_secret(provider_name, make_source, state):
    module = SIMULATORS[provider_name]
    entry, environ = module.demo_source("bad-creds", "http://unused")
    wrong = {key: "wrong-" + value for key, value in environ.items()}
    source = make_source(provider_name, name="bad-creds", environ_overrides=wrong)
    provider = PROVIDERS[provider_name].create(source)
    task = add_task(provider_name, state)
    error = fetch_error(provider, task.task_id)
    provider.close()
    assert error.kind is FetchErrorKind.UNAUTHORIZED
    for secret in wrong.values():
        assert secret not in error.describe()
        assert secret not in repr(error.raw)


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (Fault.SERVER_ERROR, FetchErrorKind.UPSTREAM_ERROR),
        (Fault.NOT_FOUND, FetchErrorKind.NOT_FOUND),
        (Fault.MALFORMED, FetchErrorKind.BAD_PAYLOAD),
    ],
)
def test_faults_become_fetch_errors(provider_name, provider, state, fault, kind):
    task = add_task(provider_name, state)
    state.set_fault(fault, task_id=task.task_id, times=1)
    assert fetch_error(provider, task.task_id).kind is kind
    # The fault was for one request: the next fetch works.
    assert provider.fetch(task.task_id).task_id == task.task_id


def test_rate_limited_reports_retry_after(provider_name, provider, state):
    task = add_task(provider_name, state)
    state.set_fault(Fault.RATE_LIMITED, task_id=task.task_id, times=1, seconds=7)
    error = fetch_error(provider, task.task_id)
    assert error.kind is FetchErrorKind.RATE_LIMITED
    assert error.retry_after == pytest.approx(7, abs=1)


def test_timeout(provider_name, make_source, state):
    source = make_source(provider_name, timeout=0.2, rate_limit=1000.0)
    provider = PROVIDERS[provider_name].create(source)
    task = add_task(provider_name, state)
    state.set_fault(Fault.SLOW, task_id=task.task_id, times=1, seconds=1.0)
    error = fetch_error(provider, task.task_id)
    provider.close()
    assert error.kind is FetchErrorKind.TIMEOUT


def test_unknown_status_word_is_kept(provider, provider_name, state):
    task = add_task(provider_name, state)
    task.phases = [Phase("BRAND_NEW_WORD")]
    result = provider.fetch(task.task_id)
    assert result.state is TaskState.UNKNOWN
    assert result.terminal is False
    assert result.upstream_status == "BRAND_NEW_WORD"


@pytest.mark.parametrize("task_id", ["with/slash", "what?now", "100%", "has space", "ünï"])
def test_ids_round_trip(provider_name, provider, state, task_id):
    add_task(provider_name, state, task_id=task_id)
    result = provider.fetch(task_id)
    assert result.task_id == task_id
    assert result.state is TaskState.QUEUED
