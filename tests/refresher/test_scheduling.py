"""When a task is fetched next (webapp/scheduling.py): pure functions, no clock, no database."""

from __future__ import annotations

import random
from datetime import UTC
from datetime import datetime
from datetime import timedelta

import pytest

from webapp.domain import FetchErrorKind
from webapp.domain import TaskState
from webapp.refresher.scheduling import CIRCUIT_MAX_SECONDS
from webapp.refresher.scheduling import CIRCUIT_THRESHOLD
from webapp.refresher.scheduling import after_failure
from webapp.refresher.scheduling import after_success
from webapp.refresher.scheduling import align_up
from webapp.refresher.scheduling import circuit_delay
from webapp.refresher.scheduling import make_policy

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
PER_TASK = make_policy(5.0)
BATCHED = make_policy(5.0, batched=True)


def gaps(policy, changes):  # type: ignore[no-untyped-def]
    """The waits after a run of successful polls of a running task (``changes``: bools)."""
    unchanged = 0
    out = []
    for changed in changes:
        due, unchanged = after_success(
            policy,
            state=TaskState.RUNNING,
            terminal=False,
            changed=changed,
            unchanged_polls=unchanged,
            now=NOW,
        )
        out.append((due - NOW).total_seconds())
    return out


def test_backs_off_while_unchanged_up_to_a_cap_and_snaps_back_on_change():
    waits = gaps(PER_TASK, [True, False, False, False, False, False, False, True, False])
    assert waits[0] == 5.0
    assert waits[1:4] == [7.5, 11.25, 16.875]
    assert max(waits) == 30.0 == PER_TASK.max_backoff
    assert waits[7] == 5.0 and waits[8] == 7.5


def test_batched_sources_keep_the_interval_on_a_grid():
    # A task in a shared call costs nothing extra: no back-off, next polls on a 1 s grid.
    waits = gaps(BATCHED, [True] + [False] * 8)
    assert all(5.0 <= w < 6.0 for w in waits)
    later = NOW + timedelta(seconds=0.3)
    due, _ = after_success(
        BATCHED, state=TaskState.QUEUED, terminal=False, changed=False, unchanged_polls=3, now=later
    )
    assert due == NOW + timedelta(seconds=6)
    assert make_policy(0.2, batched=True).align_seconds == pytest.approx(0.05)


def test_batched_sources_on_a_tight_budget_poll_on_the_intervals_beat():
    beat = make_policy(5.0, batched=True, rate_limited=True)
    for offset, expected in [(0.2, 5.0), (4.9, 5.0), (5.0, 10.0), (7.5, 10.0)]:
        due, _ = after_success(
            beat,
            state=TaskState.RUNNING,
            terminal=False,
            changed=False,
            unchanged_polls=9,
            now=NOW + timedelta(seconds=offset),
        )
        assert due == NOW + timedelta(seconds=expected)
    # A GET per task: the budget changes nothing, back-off still pays.
    assert make_policy(5.0, rate_limited=True) == PER_TASK


def test_align_up_keeps_exact_multiples():
    assert align_up(NOW, 1.0) == NOW
    assert align_up(NOW + timedelta(microseconds=1), 1.0) == NOW + timedelta(seconds=1)
    assert align_up(NOW + timedelta(seconds=0.2), 0) == NOW + timedelta(seconds=0.2)


def test_terminal_gets_one_confirming_fetch_then_none():
    due, unchanged = after_success(
        PER_TASK, state=TaskState.SUCCEEDED, terminal=True, changed=True, unchanged_polls=4, now=NOW
    )
    assert due == NOW + timedelta(seconds=PER_TASK.terminal_grace) and unchanged == 0
    # The confirming fetch (or a forced "refresh now" later) schedules nothing more.
    due, _ = after_success(
        PER_TASK,
        state=TaskState.SUCCEEDED,
        terminal=True,
        changed=False,
        unchanged_polls=0,
        now=NOW,
    )
    assert due is None


def test_unknown_words_back_off_long():
    unchanged = 0
    waits = []
    for changed in [True, False, False, False, False, False, False, False]:
        due, unchanged = after_success(
            PER_TASK,
            state=TaskState.UNKNOWN,
            terminal=False,
            changed=changed,
            unchanged_polls=unchanged,
            now=NOW,
        )
        waits.append((due - NOW).total_seconds())
    assert waits[0] == 60.0  # twelve intervals from the start
    assert waits[1] == 120.0
    assert waits[-1] == PER_TASK.unknown_cap == 1800.0


def test_failures_back_off_exponentially_with_jitter():
    rng = random.Random(7)
    for failed in range(1, 12):
        step = min(5.0 * 2**failed, PER_TASK.error_cap)
        samples = {
            (
                after_failure(
                    PER_TASK,
                    kind=FetchErrorKind.UPSTREAM_ERROR,
                    failed_polls=failed,
                    retry_after=None,
                    gone_upstream=False,
                    now=NOW,
                    rng=rng,
                )
                - NOW
            ).total_seconds()
            for _ in range(20)
        }
        assert all(step / 2 <= s <= step for s in samples)
        assert len(samples) > 1  # jittered, so workers and tasks do not retry in step


@pytest.mark.parametrize(
    ("kind", "retry_after", "gone", "expected"),
    [
        (FetchErrorKind.RATE_LIMITED, 42.0, False, 42.0),
        (FetchErrorKind.RATE_LIMITED, None, False, 5.0),
        (FetchErrorKind.UNAUTHORIZED, None, False, 300.0),
        (FetchErrorKind.FORBIDDEN, None, False, 300.0),
        (FetchErrorKind.NOT_FOUND, None, True, 3600.0),
    ],
)
def test_failures_that_say_how_long_to_wait(kind, retry_after, gone, expected):
    due = after_failure(
        PER_TASK,
        kind=kind,
        failed_polls=1,
        retry_after=retry_after,
        gone_upstream=gone,
        now=NOW,
        rng=random.Random(1),
    )
    assert (due - NOW).total_seconds() == expected


def test_circuit_opens_at_the_threshold_and_waits_longer_each_time():
    rng = random.Random(3)
    assert circuit_delay(CIRCUIT_THRESHOLD - 1, rng) is None
    first = circuit_delay(CIRCUIT_THRESHOLD, rng)
    second = circuit_delay(CIRCUIT_THRESHOLD + 1, rng)
    assert first is not None and second is not None
    assert 15 * 0.75 <= first <= 15 * 1.25
    assert 30 * 0.75 <= second <= 30 * 1.25
    assert circuit_delay(CIRCUIT_THRESHOLD + 40, rng) <= CIRCUIT_MAX_SECONDS * 1.25
