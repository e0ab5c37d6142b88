"""The refresher against misbehaving upstreams: a fault-injection soak, 429 and Retry-After,
Mixpeek's rate-limit headers, the circuit breaker, and credentials that stop working.

The refresher here runs on the simulators' manual clock (``sim_time``), so pauses, back-offs
and upstream reset times all move when the test advances it; nothing waits on wall time.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
import sqlalchemy as sa
from bs4 import BeautifulSoup
from flask import Flask

from tests.integration.conftest import Upstreams
from tests.integration.conftest import sim_time
from tests.integration.conftest import track_at
from webapp.config import build_source
from webapp.db.models import Source
from webapp.db.models import Task
from webapp.db.models import db
from webapp.providers.mixpeek import MixpeekProvider
from webapp.refresher.engine import Refresher
from webapp.refresher.scheduling import CIRCUIT_THRESHOLD
from webapp.simulators import SIMULATORS
from webapp.simulators import SimulatorSuite
from webapp.simulators.core import Fault
from webapp.simulators.core import SimulatorState
from webapp.simulators.server import ServerThread
from webapp.sources.registry import registry


@pytest.fixture
def make_app(app_factory, upstreams: Upstreams) -> Callable[..., Flask]:  # type: ignore[no-untyped-def]
    """``make_app({"name": ("provider", {fields})})``: an app with those simulator sources."""

    def make(specs: dict[str, tuple[str, dict]], **config) -> Flask:  # type: ignore[no-untyped-def]
        sources = [
            build_source(*upstreams.source_entry(provider, name, **fields))
            for name, (provider, fields) in specs.items()
        ]
        return app_factory(sources, **config)

    return make


@pytest.fixture
def per_task_mixpeek(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mixpeek fetched a task a request, as a source is once the refresher stops batching it:
    the tests that use it watch how single requests are paced, paused and probed."""
    monkeypatch.setattr(MixpeekProvider, "batch_size", 1)


@pytest.fixture
def refreshers(clock) -> Iterator[Callable[[Flask], Refresher]]:  # type: ignore[no-untyped-def]
    made: list[Refresher] = []

    def make(app: Flask) -> Refresher:
        refresher = Refresher(app, clock=sim_time(clock), rng=random.Random(5))
        made.append(refresher)
        return refresher

    yield make
    for refresher in made:
        refresher.close()


def source_row(app: Flask, name: str) -> Source:
    with app.app_context():
        row = db.session.get(Source, name)
        db.session.expunge(row)
        return row


def tasks_of(app: Flask, source: str) -> list[Task]:
    with app.app_context():
        rows = db.session.scalars(sa.select(Task).where(Task.source == source)).all()
        for row in rows:
            row.events  # noqa: B018 - load the history before the session goes
            db.session.expunge(row)
        return list(rows)


# -- the soak -----------------------------------------------------------------------------------


def test_soak_random_faults_lose_nothing_and_record_every_change_once(
    make_app, upstreams, clock, refreshers, caplog
):
    """Thousands of polls while tasks progress, every upstream answering with random 429s,
    5xx, timeouts and malformed bodies: no crash, no lost task, every task ends in its final
    upstream state with exactly one event per real state change."""
    caplog.set_level(logging.ERROR, logger="webapp")
    rng = random.Random(20260301)
    specs = {
        f"{p}-soak": (p, {"poll_interval": 4.0, "timeout": 0.25, "rate_limit": 10_000.0})
        for p in SIMULATORS
    }
    app = make_app(specs)
    expected = {}
    rules = []
    for provider, module in SIMULATORS.items():
        state = upstreams.state(provider)
        for _ in range(40):
            task = module.add_demo_task(
                state,
                rng,
                final=rng.choice(sorted(module.FINAL_STATUS)),
                queued_seconds=rng.uniform(15, 35),  # NCLUE splits it: every phase >= 6 s
                running_seconds=rng.uniform(6, 40),
            )
            expected[(f"{provider}-soak", task.task_id)] = task
            track_at(app, clock, f"{provider}-soak", task.task_id)
        # First hit wins: about 3% each of 429, 500, malformed, and 1.5% slower than the timeout.
        rules += [
            state.set_fault(Fault.RATE_LIMITED, probability=0.03, seconds=2),
            state.set_fault(Fault.SERVER_ERROR, probability=0.03),
            state.set_fault(Fault.MALFORMED, probability=0.03),
            state.set_fault(Fault.SLOW, probability=0.015, seconds=0.35),
        ]
    refresher = refreshers(app)

    def cached() -> dict[tuple[str, str], str | None]:
        with app.app_context():
            rows = db.session.execute(sa.select(Task.source, Task.task_id, Task.upstream_status))
            return {(source, task_id): status for source, task_id, status in rows}

    def force_all_due() -> None:
        # Every task each round, so no phase can pass unseen; pauses are the other tests' job.
        with app.app_context():
            now = refresher.clock()
            db.session.execute(
                sa.update(Task).where(Task.next_poll_at.is_not(None)).values(next_poll_at=now)
            )
            db.session.execute(sa.update(Source).values(blocked_until=None))
            db.session.commit()

    polls = failed = 0
    step = 4.0
    for _ in range(40):
        now = clock.advance(step)
        for _attempt in range(40):
            force_all_due()
            report = refresher.run_once()
            polls += report.fetched
            failed += report.failed
            wanted = {key: task.status(now) for key, task in expected.items()}
            if cached() == wanted:
                break
        else:
            pytest.fail("the cache did not catch up with the upstreams within 40 rounds")
        if all(task.status(now) == task.phases[-1].status for task in expected.values()):
            break
    # The terminal tasks' confirming fetches (which may meet a fault too).
    clock.advance(20)

    def polling() -> int:
        with app.app_context():
            return db.session.scalar(
                sa.select(sa.func.count()).where(Task.next_poll_at.is_not(None))
            )

    for _attempt in range(40):
        if not polling():
            break
        force_all_due()
        refresher.run_once()

    # Thousands, though fewer than while Mixpeek cost a request a task: every upstream now
    # batches, so a batch meets one fault where forty GETs met a few, and fewer rounds are
    # needed to catch up. The faults the simulators served are counted where they happen.
    assert polls > 2000, polls
    assert sum(rule.hits for rule in rules) >= 10, "the faults did not bite"
    assert failed > 0
    now = clock.now()
    for source in specs:
        rows = tasks_of(app, source)
        assert len(rows) == 40
        for row in rows:
            sim = expected[(source, row.task_id)]
            assert row.upstream_status == sim.phases[-1].status and row.terminal
            assert row.next_poll_at is None
            history = [status for status, _ in sim.history(now)]
            assert [e.upstream_status for e in row.events] == history, row.task_id
    assert [r.getMessage() for r in caplog.records] == []


# -- rate limits ---------------------------------------------------------------------------------


def test_429_pauses_the_source_for_retry_after(
    per_task_mixpeek, make_app, upstreams, clock, refreshers
):
    app = make_app({"mx": ("mixpeek", {"poll_interval": 5.0, "max_concurrency": 1})})
    state = upstreams.state("mixpeek")
    for i in range(4):
        SIMULATORS["mixpeek"].add_demo_task(state, random.Random(i), task_id=f"t{i}")
        track_at(app, clock, "mx", f"t{i}")
    state.set_fault(Fault.RATE_LIMITED, times=1, seconds=30)
    refresher = refreshers(app)

    report = refresher.run_once()
    assert state.calls["get"] == 1  # the others were given back unfetched, not hammered
    assert report.failed == 1 and report.deferred >= 1
    paused = source_row(app, "mx").blocked_until
    assert paused == refresher.clock() + timedelta(seconds=30)

    clock.advance(29)
    assert refresher.run_once().skipped_sources == ["mx"]
    assert state.calls["get"] == 1
    clock.advance(2)
    refresher.run_once()
    assert state.calls["get"] == 5  # t0 again, after its Retry-After, and the three others
    assert all(t.fetch_error is None for t in tasks_of(app, "mx"))


@contextmanager
def budgeted_mixpeek(
    suite: SimulatorSuite, app_factory: Callable[..., Flask], requests_a_minute: int
) -> Iterator[tuple[Flask, SimulatorState]]:
    """A Mixpeek simulator that allows ``requests_a_minute`` and says so in X-RateLimit-*
    headers, served on loopback, and an app with one source ``mx`` on it (one request at a
    time, polled rarely so only the test's passes fetch)."""
    mixpeek = SIMULATORS["mixpeek"]
    suite.apps["mixpeek"] = mixpeek.create_app(
        suite.states["mixpeek"],
        **mixpeek.DEMO_CREDENTIALS,
        rate_limit=requests_a_minute,
        rate_window=60,
    )
    with ServerThread(suite.wsgi_app()) as server:
        entry, environ = mixpeek.demo_source("mx", suite.base_url(server.url, "mixpeek"))
        fields = {"max_concurrency": 1, "poll_interval": 100.0}
        yield app_factory([build_source({**entry, **fields}, environ)]), suite.states["mixpeek"]


def test_mixpeek_stops_when_its_budget_is_spent_until_the_reset(
    per_task_mixpeek, app_factory, make_source, suite, clock, refreshers
):
    # A simulator that allows 5 requests a minute and says so in X-RateLimit-* headers.
    mixpeek = SIMULATORS["mixpeek"]
    with budgeted_mixpeek(suite, app_factory, requests_a_minute=5) as (app, state):
        for i in range(8):
            mixpeek.add_demo_task(state, random.Random(i), task_id=f"t{i}")
            track_at(app, clock, "mx", f"t{i}")
        refresher = refreshers(app)
        refresher.run_once()
        # Remaining hit 0 on the fifth answer: the source waits for the reset, no 429 taken.
        assert state.calls["get"] == 5
        assert all(t.fetch_error_kind != "rate_limited" for t in tasks_of(app, "mx"))
        assert source_row(app, "mx").blocked_until == refresher.clock() + timedelta(seconds=60)
        clock.advance(30)
        refresher.run_once()
        assert state.calls["get"] == 5
        clock.advance(31)
        refresher.run_once()
        assert state.calls["get"] == 8
        assert all(t.last_success_at is not None for t in tasks_of(app, "mx"))


def test_a_429_on_a_batch_pauses_the_source_and_fails_no_more_calls(
    make_app, upstreams, clock, refreshers
):
    app = make_app({"mx": ("mixpeek", {"poll_interval": 5.0, "max_concurrency": 1})})
    state = upstreams.state("mixpeek")
    for i in range(4):
        SIMULATORS["mixpeek"].add_demo_task(state, random.Random(i), task_id=f"t{i}")
        track_at(app, clock, "mx", f"t{i}")
    state.set_fault(Fault.RATE_LIMITED, times=1, seconds=30)
    refresher = refreshers(app)

    report = refresher.run_once()
    assert state.calls == {"list": 1}  # one call for the four, and no GET after its 429
    assert report.failed == 4
    assert source_row(app, "mx").blocked_until == refresher.clock() + timedelta(seconds=30)
    clock.advance(29)
    assert refresher.run_once().skipped_sources == ["mx"]
    clock.advance(2)
    refresher.run_once()
    assert state.calls == {"list": 2}
    assert all(t.fetch_error is None for t in tasks_of(app, "mx"))


def test_mixpeek_batches_stop_when_the_budget_is_spent_until_the_reset(
    app_factory, make_source, suite, clock, refreshers
):
    # Two requests a minute: two list calls of 100 tasks, then the wait for the reset.
    mixpeek = SIMULATORS["mixpeek"]
    with budgeted_mixpeek(suite, app_factory, requests_a_minute=2) as (app, state):
        for i in range(250):
            mixpeek.add_demo_task(state, random.Random(i), task_id=f"t{i:03d}")
        track_at(app, clock, "mx", *(f"t{i:03d}" for i in range(250)))
        refresher = refreshers(app)
        refresher.run_once()
        assert state.calls == {"list": 2}
        assert all(t.fetch_error_kind != "rate_limited" for t in tasks_of(app, "mx"))
        assert source_row(app, "mx").blocked_until == refresher.clock() + timedelta(seconds=60)
        fetched = [t for t in tasks_of(app, "mx") if t.last_success_at is not None]
        assert len(fetched) == 200
        clock.advance(61)
        refresher.run_once()
        assert state.calls == {"list": 3}
        assert all(t.last_success_at is not None for t in tasks_of(app, "mx"))


def test_requests_are_spaced_by_the_rate_limit_across_parallel_jobs(
    per_task_mixpeek, make_app, upstreams, clock, refreshers
):
    # Four threads, one budget of 5 requests/s taken per request: spaced 0.2 s apart.
    app = make_app({"mx": ("mixpeek", {"rate_limit": 5.0, "max_concurrency": 4})})
    state = upstreams.state("mixpeek")
    for i in range(6):
        SIMULATORS["mixpeek"].add_demo_task(state, random.Random(i), task_id=f"t{i}")
        track_at(app, clock, "mx", f"t{i}")
    refreshers(app).run_once()
    times = sorted(t for times in upstreams.recorder.fetch_times().values() for t in times)
    assert len(times) == 6
    # Each request leaves at its slot or later (a busy machine delays a thread, never hastens
    # one), so one late arrival shortens the gap after it: any three arrivals still span at
    # least one whole slot and most of another; without the budget they would come together.
    spans = [later - earlier for earlier, later in zip(times, times[2:], strict=False)]
    assert min(spans) > 0.34, spans
    # Not limited twice over: six requests take five slots, not more.
    assert times[-1] - times[0] < 5 * 0.2 + 0.8


def test_nclue_is_one_request_a_second_by_default(make_app, upstreams, refreshers):
    app = make_app({"nc": ("nclue", {})})
    refresher = refreshers(app)
    with app.app_context():
        lane = refresher._lane(registry(app).get("nc"))
    assert lane.source.effective_rate_limit == 1.0
    assert lane.concurrency == 1  # more threads would only queue behind the budget


# -- the circuit breaker and credentials -------------------------------------------------------


def test_a_failing_source_opens_its_circuit_and_is_probed_now_and_then(
    per_task_mixpeek, make_app, upstreams, clock, refreshers
):
    app = make_app({"mx": ("mixpeek", {"poll_interval": 5.0})})
    state = upstreams.state("mixpeek")
    for i in range(8):
        SIMULATORS["mixpeek"].add_demo_task(
            state, random.Random(i), task_id=f"t{i}", queued_seconds=1000
        )
        track_at(app, clock, "mx", f"t{i}")
    refresher = refreshers(app)
    refresher.run_once()  # all healthy first
    state.set_fault(Fault.SERVER_ERROR)
    clock.advance(40)
    refresher.run_once()
    row = source_row(app, "mx")
    assert row.circuit == "open" and row.consecutive_failures >= CIRCUIT_THRESHOLD
    calls = state.calls["get"]
    client = app.test_client()
    status = BeautifulSoup(client.get("/sources").text, "html.parser")
    assert "degraded" in status.get_text()

    # While open: nothing is sent. Once the wait is over: one probe, which fails again.
    clock.advance(5)
    assert refresher.run_once().skipped_sources == ["mx"]
    assert state.calls["get"] == calls
    clock.advance(20)
    refresher.run_once()
    assert state.calls["get"] == calls + 1
    reopened = source_row(app, "mx")
    assert reopened.circuit == "open"
    wait = (reopened.blocked_until - refresher.clock()).total_seconds()
    assert 30 * 0.75 <= wait <= 30 * 1.25  # twice as long as the first time

    # The upstream recovers: the next probe closes the circuit and everything is fetched.
    state.clear_faults()
    clock.advance(400)
    refresher.run_once()
    healthy = source_row(app, "mx")
    assert healthy.circuit == "closed" and healthy.consecutive_failures == 0
    assert healthy.blocked_until is None
    assert all(t.fetch_error is None for t in tasks_of(app, "mx"))


def test_bad_credentials_mark_the_source_unauthorized_and_stop_the_requests(
    make_app, upstreams, clock, refreshers
):
    app = make_app({"ml": ("opensearch-ml", {"poll_interval": 5.0})})
    state = upstreams.state("opensearch-ml")
    for i in range(250):  # three batches
        SIMULATORS["opensearch-ml"].add_demo_task(state, random.Random(i), task_id=f"t{i}")
        track_at(app, clock, "ml", f"t{i}")
    state.set_fault(Fault.UNAUTHORIZED)
    refresher = refreshers(app)
    refresher.run_once()
    row = source_row(app, "ml")
    assert row.circuit == "unauthorized"
    sent = sum(state.calls.values())
    assert sent <= 3
    for _ in range(4):
        clock.advance(60)
        refresher.run_once()
    assert sum(state.calls.values()) == sent  # not hammered while it waits

    page = BeautifulSoup(app.test_client().get("/sources").text, "html.parser")
    assert "unauthorized" in page.get_text()
    # After the wait, one probe; good credentials again close the circuit.
    state.clear_faults()
    clock.advance(70)
    refresher.run_once()
    assert source_row(app, "ml").circuit == "closed"
    assert all(t.fetch_error is None for t in tasks_of(app, "ml"))
