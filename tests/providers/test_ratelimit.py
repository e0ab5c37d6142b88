"""The per-source request budget (webapp/ratelimit.py) and who takes from it: every provider."""

from __future__ import annotations

import threading

import httpx
import pytest

from webapp.config import build_source
from webapp.domain import FetchError
from webapp.domain import FetchErrorKind
from webapp.providers import PROVIDERS
from webapp.providers.ratelimit import TokenBucket
from webapp.providers.ratelimit import WaitTooLong
from webapp.providers.ratelimit import limiter_for


class FakeTime:
    """A monotonic clock that moves only when someone sleeps (or the test says so)."""

    def __init__(self, *, start: float = 50.0, sleeping_moves_time: bool = True) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self.moves = sleeping_moves_time
        self.lock = threading.Lock()

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.sleeps.append(seconds)
            if self.moves:
                self.now += seconds


def bucket(rate: float | None, burst: float = 1.0, **kwargs: bool) -> tuple[TokenBucket, FakeTime]:
    fake = FakeTime(**kwargs)
    return TokenBucket(rate, burst, monotonic=fake.monotonic, sleep=fake.sleep), fake


def test_burst_then_steady_rate():
    limiter, fake = bucket(4.0, burst=3)
    starts = []
    for _ in range(6):
        limiter.acquire()
        starts.append(fake.now)
    # Three at once, then one every quarter second.
    assert starts == [50.0, 50.0, 50.0, 50.25, 50.5, 50.75]
    fake.now += 100  # a long idle refills no more than the burst
    waits = [limiter.acquire() for _ in range(4)]
    assert waits == [0.0, 0.0, 0.0, 0.25]


def test_no_rate_means_no_waiting():
    limiter, fake = bucket(None)
    assert all(limiter.acquire() == 0.0 for _ in range(1000))
    assert fake.sleeps == []


def test_refused_reservation_takes_nothing():
    limiter, fake = bucket(1.0, sleeping_moves_time=False)
    assert [limiter.reserve(max_wait=1) for _ in range(2)] == [0.0, 1.0]
    with pytest.raises(WaitTooLong) as caught:
        limiter.reserve(max_wait=1)
    assert caught.value.wait == 2.0
    fake.now += 2
    assert limiter.reserve(max_wait=0) == 0.0


def test_rejects_a_nonsense_rate():
    with pytest.raises(ValueError):
        TokenBucket(0)


def _source(provider: str, name: str, **fields):  # type: ignore[no-untyped-def]
    from webapp.simulators import SIMULATORS

    entry, environ = SIMULATORS[provider].demo_source(name, "http://127.0.0.1:9")
    entry.update(fields)
    return build_source(entry, environ)


def test_one_bucket_per_source_replaced_when_the_rate_changes():
    first = limiter_for(_source("opensearch-ml", "rl-a", rate_limit=3.0))
    assert limiter_for(_source("opensearch-ml", "rl-a", rate_limit=3.0)) is first
    assert limiter_for(_source("opensearch-ml", "rl-b", rate_limit=3.0)) is not first
    changed = limiter_for(_source("opensearch-ml", "rl-a", rate_limit=5.0))
    assert changed is not first and changed.rate == 5.0
    # NCLUE's documented 1 request/s is the default; the others have no limit of their own.
    assert limiter_for(_source("nclue", "rl-nclue")).rate == 1.0
    assert limiter_for(_source("mixpeek", "rl-mixpeek")).rate is None


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_every_provider_request_takes_a_token(provider):
    """The budget is taken per real request by the provider layer, for every provider, so a
    call that pages or falls back to GETs spends what it really costs (ratelimit.py)."""
    fake = FakeTime()
    sent: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/api/token"):
            return httpx.Response(200, json={"token": "t"})
        sent.append(fake.now)
        return httpx.Response(503, json={})

    source = _source(provider, f"paced-{provider}", rate_limit=2.0)
    instance = PROVIDERS[provider].create(source, transport=httpx.MockTransport(handler))
    instance.limiter = TokenBucket(2.0, monotonic=fake.monotonic, sleep=fake.sleep)
    for task_id in ("a", "b", "c"):
        with pytest.raises(FetchError):
            instance.fetch(task_id)
    instance.close()
    assert sent == [50.0, 50.5, 51.0]


def test_a_slot_further_than_the_timeout_is_a_rate_limited_error():
    fake = FakeTime(sleeping_moves_time=False)
    source = _source("opensearch-ml", "impatient", rate_limit=1.0, timeout=1.5)
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"state": "RUNNING"}))
    provider = PROVIDERS["opensearch-ml"](
        source,
        httpx.Client(base_url=source.base_url, transport=transport),
        limiter=TokenBucket(1.0, monotonic=fake.monotonic, sleep=fake.sleep),
    )
    provider.fetch("a")
    provider.fetch("b")
    with pytest.raises(FetchError) as caught:
        provider.fetch("c")
    provider.close()
    assert caught.value.kind is FetchErrorKind.RATE_LIMITED
    assert caught.value.retry_after == 2.0
