"""A lane's queue: how much one pass claims, and when the next pass claims again."""

from __future__ import annotations

from webapp.refresher.lanes import SourceLane


def test_a_pass_claims_for_every_thread_and_a_queue_behind_them(make_source):
    lane = SourceLane(make_source("mixpeek", name="mx", max_concurrency=4), batch_size=1)
    try:
        # Four threads, and twelve jobs queued behind them: a pass fills all sixteen.
        assert (lane.concurrency, lane.room()) == (4, 16)
        assert lane.wants_refill()
        lane.in_flight = 16
        assert not lane.wants_refill()
        # Not for every finished job: once half the queue has drained.
        lane.in_flight = 9
        assert not lane.wants_refill()
        lane.in_flight = 8
        assert lane.wants_refill() and lane.room() == 8
    finally:
        lane.shutdown()


def test_a_rate_limited_lane_claims_only_what_its_budget_sends(make_source):
    lane = SourceLane(
        make_source("mixpeek", name="mx", max_concurrency=8, rate_limit=2.0), batch_size=100
    )
    try:
        # More would only wait behind the provider's bucket while their leases age.
        assert (lane.concurrency, lane.room()) == (2, 2)
        lane.in_flight = 1
        assert lane.wants_refill()
        lane.in_flight = 2
        assert not lane.wants_refill()
    finally:
        lane.shutdown()
