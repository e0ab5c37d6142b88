"""NCLUE: signature v2, parsing, both error layers, clock skew, rate limiting, list paging.

Unit tests run the provider against ``httpx.MockTransport``; integration tests run it over
loopback against the simulator, whose timestamp check is switched on here (the shared suite
switches it off, see ``webapp.simulators.nclue.DEMO_CREDENTIALS``) with the simulator clock
started at the real time, since the client signs with the real time.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from datetime import UTC
from datetime import datetime
from email.utils import formatdate
from typing import Any

import httpx
import pytest

from tests.providers.test_ratelimit import FakeTime
from webapp.config import SourceConfig
from webapp.config import build_source
from webapp.domain import FetchError
from webapp.domain import FetchErrorKind
from webapp.domain import TaskState
from webapp.providers import PROVIDERS
from webapp.providers.nclue import NclueProvider
from webapp.providers.nclue_gateway import NcpSignatureV2
from webapp.providers.nclue_gateway import sign
from webapp.providers.ratelimit import TokenBucket as RateLimiter
from webapp.providers.ratelimit import WaitTooLong as RateLimitWaitTooLong
from webapp.providers.ratelimit import limiter_for
from webapp.simulators import SimulatorSuite
from webapp.simulators import nclue as sim
from webapp.simulators.core import ManualClock
from webapp.simulators.core import SimulatorState
from webapp.simulators.server import ServerThread

ACCESS = "AKIDEXAMPLE0001"
SECRET = "s3cr3t-Key/with+chars="
NOW_MS = 1_700_000_000_000
SEED = sim.seed_examples()["get_task_example"]
SEED_ID = SEED["task_id"]


def openssl_signature(message: str, secret: str) -> str:
    """HMAC-SHA256 + Base64 computed by openssl, independently of the code under test."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    digest = subprocess.run(
        ["openssl", "dgst", "-sha256", "-hmac", secret, "-binary"],
        input=message.encode(),
        capture_output=True,
        check=True,
    ).stdout
    encoded = subprocess.run(
        ["openssl", "base64", "-A"], input=digest, capture_output=True, check=True
    ).stdout
    return encoded.decode().strip()


# -- signature v2 ---------------------------------------------------------------------------


def test_sign_matches_a_vector_checked_with_openssl() -> None:
    # Computed once with: printf 'GET /nclue/api/v1/tasks?index=0&limit=20\n1700000000000\nAKEY'
    #   | openssl dgst -sha256 -hmac secret -binary | base64
    expected = "pJ0ArublXSoSanljwvQ61Xo25n9lwV0/5RG25GsKvZA="
    assert sign("GET", "/nclue/api/v1/tasks?index=0&limit=20", 1700000000000, "AKEY", "secret") == (
        expected
    )
    assert (
        openssl_signature("GET /nclue/api/v1/tasks?index=0&limit=20\n1700000000000\nAKEY", "secret")
        == expected
    )


@pytest.mark.parametrize(
    "uri",
    [
        "/api/v1/tasks/f5aebc0c-b201bc64b1c9",
        "/prefix/deeper/api/v1/tasks?index=100&limit=100",
        "/api/v1/tasks/with%2Fslash%20%C3%BCn%C3%AF%3Fx%25",
    ],
)
def test_sign_agrees_with_openssl(uri: str) -> None:
    message = f"GET {uri}\n{NOW_MS}\n{ACCESS}"
    assert sign("get", uri, NOW_MS, ACCESS, SECRET) == openssl_signature(message, SECRET)


# -- unit tests over MockTransport ------------------------------------------------------------

Handler = Callable[[httpx.Request], httpx.Response]


def unit_source(**fields: Any) -> SourceConfig:
    entry = {
        "name": "nclue-unit",
        "provider": "nclue",
        "base_url": "https://nclue.apigw.example/prefix",
        "access_key_env": "NC_ACCESS",
        "secret_key_env": "NC_SECRET",
        "rate_limit": 1000.0,
        **fields,
    }
    return build_source(entry, {"NC_ACCESS": ACCESS, "NC_SECRET": SECRET})


def unit_provider(
    handler: Handler, *, limiter: RateLimiter | None = None, **fields: Any
) -> NclueProvider:
    return NclueProvider.create(
        unit_source(**fields),
        transport=httpx.MockTransport(handler),
        now_ms=lambda: NOW_MS,
        limiter=limiter or RateLimiter(None),
    )


def answer(body: Any, status: int = 200, **headers: str) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body, headers=headers)

    return handler


def error_of(provider: NclueProvider, task_id: str = "t-1") -> FetchError:
    with pytest.raises(FetchError) as caught:
        provider.fetch(task_id)
    return caught.value


def test_requests_are_signed_over_the_path_as_sent() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/tasks"):
            return httpx.Response(200, json={"index": 0, "limit": 100, "total": 0, "tasks": []})
        return httpx.Response(200, json=SEED)

    provider = unit_provider(handler)
    provider.fetch("with/slash ünï?x%")
    provider.search_page(None, 0, 100)
    get, listing = seen
    get_uri = "/prefix/api/v1/tasks/with%2Fslash%20%C3%BCn%C3%AF%3Fx%25"
    list_uri = "/prefix/api/v1/tasks?index=0&limit=100"
    assert get.url.raw_path.decode() == get_uri
    assert listing.url.raw_path.decode() == list_uri
    for request, uri in ((get, get_uri), (listing, list_uri)):
        assert request.headers["x-ncp-apigw-timestamp"] == str(NOW_MS)
        assert request.headers["x-ncp-iam-access-key"] == ACCESS
        assert request.headers["x-ncp-apigw-signature-v2"] == openssl_signature(
            f"GET {uri}\n{NOW_MS}\n{ACCESS}", SECRET
        )
    assert isinstance(provider.client.auth, NcpSignatureV2)
    assert SECRET not in repr(provider.client.auth)


def test_seed_example_parses() -> None:
    task = unit_provider(answer(SEED)).fetch(SEED_ID)
    assert task.task_id == SEED_ID
    assert task.state is TaskState.SUCCEEDED and task.terminal
    assert task.upstream_status == "completed"
    assert task.name == "YOUR_TASK_NAME"
    assert task.task_type == "task-model"
    assert task.error is None
    assert task.details["auroc"] == 0.7681659649879657
    assert task.raw["AUROC"] == "0.7681659649879657"
    assert task.details["line_count"] == 93734
    assert task.details["disk_usage"] == 42582684
    assert task.details["train_file_path"] == "path/filename"
    assert "test_feature_id" not in task.details
    assert task.links["train_feature_id"] == "0ccc59f9-****-****-****-7837ae76d046"
    assert "test_feature_id" not in task.links
    assert task.links["api"] == (
        "https://nclue.apigw.example/prefix/api/v1/tasks/f5aebc0c-%2A%2A%2A%2A-%2A%2A%2A%2A-"
        "%2A%2A%2A%2A-b201bc64b1c9"
    )
    # Zone-less times are read in UTC by default and stored timezone-aware.
    assert task.created_at == datetime(2024, 11, 26, 11, 48, 16, tzinfo=UTC)
    assert task.finished_at == datetime(2024, 11, 26, 11, 49, 55, tzinfo=UTC)


def test_zone_less_times_read_in_the_source_zone() -> None:
    task = unit_provider(answer(SEED), timezone="Asia/Seoul").fetch(SEED_ID)
    assert task.created_at == datetime(2024, 11, 26, 2, 48, 16, tzinfo=UTC)
    assert task.finished_at == datetime(2024, 11, 26, 2, 49, 55, tzinfo=UTC)


@pytest.mark.parametrize(
    ("word", "state", "terminal"),
    [
        ("registered", TaskState.QUEUED, False),
        ("pending", TaskState.QUEUED, False),
        ("in_progress", TaskState.RUNNING, False),
        ("completed", TaskState.SUCCEEDED, True),
        ("complete", TaskState.SUCCEEDED, True),
        ("failed", TaskState.FAILED, True),
        ("COMPLETED", TaskState.UNKNOWN, False),
        ("archived", TaskState.UNKNOWN, False),
    ],
)
def test_status_words(word: str, state: TaskState, terminal: bool) -> None:
    payload = {**SEED, "status": word}
    task = unit_provider(answer(payload)).fetch(SEED_ID)
    assert (task.state, task.terminal, task.upstream_status) == (state, terminal, word)


def test_failure_message_and_odd_metric_values() -> None:
    payload = {
        **SEED,
        "status": "failed",
        "AUROC": "n/a",
        "fail_message": "The train file could not be read.",
    }
    task = unit_provider(answer(payload)).fetch(SEED_ID)
    assert task.error == "The train file could not be read."
    assert "auroc" not in task.details
    assert task.details["auroc_raw"] == "n/a"
    numeric = unit_provider(answer({**SEED, "AUROC": 0.5})).fetch(SEED_ID)
    assert numeric.details["auroc"] == 0.5


def test_payload_without_status_is_bad_payload() -> None:
    error = error_of(unit_provider(answer({"task_id": "t-1"})))
    assert error.kind is FetchErrorKind.BAD_PAYLOAD
    assert error.raw == {"task_id": "t-1"}


@pytest.mark.parametrize(
    ("status", "code", "message", "kind"),
    [
        (401, "200", "Authentication Failed", FetchErrorKind.UNAUTHORIZED),
        (401, 210, "Permission Denied", FetchErrorKind.FORBIDDEN),
        (404, "300", "Not Found Exception", FetchErrorKind.NOT_FOUND),
        (429, "400", "Quota Exceeded", FetchErrorKind.RATE_LIMITED),
        (429, "410", "Throttle Limited", FetchErrorKind.RATE_LIMITED),
        (429, 420, "Rate Limited", FetchErrorKind.RATE_LIMITED),
        (503, "500", "Endpoint Error", FetchErrorKind.UPSTREAM_ERROR),
        (504, "510", "Endpoint Timeout", FetchErrorKind.TIMEOUT),
        (500, "900", "Unexpected Error", FetchErrorKind.UPSTREAM_ERROR),
        (418, "999", "Something New", FetchErrorKind.UPSTREAM_ERROR),
    ],
)
def test_gateway_errors(status: int, code: Any, message: str, kind: FetchErrorKind) -> None:
    body = {"error": {"errorCode": code, "message": message}}
    error = error_of(unit_provider(answer(body, status)))
    assert error.kind is kind
    assert error.status_code == status
    assert error.message.startswith(f"API Gateway {code} {message}")
    assert "clock" not in error.message


def test_gateway_429_keeps_retry_after() -> None:
    body = {"error": {"errorCode": "420", "message": "Rate Limited"}}
    error = error_of(unit_provider(answer(body, 429, **{"Retry-After": "3"})))
    assert error.retry_after == 3


@pytest.mark.parametrize(
    ("status", "body", "message", "kind"),
    [
        (
            401,
            {"code": 10100, "message": "ACCESS_DENIED"},
            "NCLUE 10100 ACCESS_DENIED",
            FetchErrorKind.UNAUTHORIZED,
        ),
        (
            404,
            {"error": {"code": "10106", "message": "PATH_NOT_FOUND"}},
            "NCLUE 10106 PATH_NOT_FOUND",
            FetchErrorKind.NOT_FOUND,
        ),
        (404, {"message": "TASK_NOT_FOUND"}, "NCLUE TASK_NOT_FOUND", FetchErrorKind.NOT_FOUND),
        (
            422,
            {"error_code": 10101, "error_message": "NAME_TOO_LONG"},
            "NCLUE 10101 NAME_TOO_LONG",
            FetchErrorKind.UPSTREAM_ERROR,
        ),
    ],
)
def test_nclue_errors(status: int, body: Any, message: str, kind: FetchErrorKind) -> None:
    error = error_of(unit_provider(answer(body, status)))
    assert (error.kind, error.message, error.status_code) == (kind, message, status)


def test_non_json_error_body() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>Bad gateway</html>")

    error = error_of(unit_provider(handler))
    assert error.kind is FetchErrorKind.UPSTREAM_ERROR
    assert error.message == "NCLUE HTTP 502: <html>Bad gateway</html>"


@pytest.mark.parametrize("offset", [600, -600])
def test_clock_skew_is_reported_from_the_date_header(offset: int) -> None:
    gateway_now = NOW_MS / 1000 + offset
    body = {"error": {"errorCode": "200", "message": "Authentication Failed"}}
    provider = unit_provider(answer(body, 401, Date=formatdate(gateway_now, usegmt=True)))
    error = error_of(provider)
    assert error.kind is FetchErrorKind.UNAUTHORIZED
    assert error.message.startswith("API Gateway 200 Authentication Failed")
    assert "clock" in error.message and "600 s" in error.message
    assert ("behind" in error.message) is (offset > 0)


def test_clock_skew_is_reported_from_the_gateway_details() -> None:
    body = {
        "error": {
            "errorCode": "200",
            "message": "Authentication Failed",
            "details": "Invalid timestamp.",
        }
    }
    error = error_of(unit_provider(answer(body, 401)))
    assert "clock" in error.message


def test_bad_signature_with_a_good_clock_does_not_blame_the_clock() -> None:
    body = {"error": {"errorCode": "200", "message": "Authentication Failed"}}
    date = formatdate(NOW_MS / 1000 + 2, usegmt=True)
    error = error_of(unit_provider(answer(body, 401, Date=date)))
    assert error.message == "API Gateway 200 Authentication Failed"


def test_errors_never_carry_the_secret_or_the_signature() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        # An upstream that echoes what it got must not leak it into our messages.
        echoed = f"{request.headers['x-ncp-apigw-signature-v2']} {SECRET}"
        return httpx.Response(
            401,
            json={
                "error": {"errorCode": "200", "message": "Authentication Failed", "details": echoed}
            },
        )

    provider = unit_provider(handler)
    error = error_of(provider)
    signature = sign("GET", "/prefix/api/v1/tasks/t-1", NOW_MS, ACCESS, SECRET)
    for text in (error.describe(), repr(error.raw), str(error), repr(error)):
        assert SECRET not in text
        assert signature not in text


def test_missing_credentials_fail_before_any_request() -> None:
    source = SourceConfig(
        name="no-keys",
        provider="nclue",
        base_url="https://nclue.example",
        access_key_env="A",
        secret_key_env="B",
    )
    calls: list[httpx.Request] = []
    provider = NclueProvider.create(
        source, transport=httpx.MockTransport(lambda r: calls.append(r) or httpx.Response(200))
    )
    with pytest.raises(FetchError) as caught:
        provider.fetch("t-1")
    assert caught.value.kind is FetchErrorKind.UNAUTHORIZED
    assert calls == []


# -- the rate limiter -------------------------------------------------------------------------


def test_limiter_spaces_requests() -> None:
    fake = FakeTime(start=100.0)
    limiter = RateLimiter(2.0, monotonic=fake.monotonic, sleep=fake.sleep)
    starts = []
    for _ in range(4):
        limiter.acquire()
        starts.append(fake.now)
    assert starts == [100.0, 100.5, 101.0, 101.5]
    fake.now += 10  # idle time is not banked as a burst
    limiter.acquire()
    limiter.acquire()
    assert fake.sleeps[-1] == pytest.approx(0.5)


def test_limiter_is_thread_safe() -> None:
    fake = FakeTime(start=100.0, sleeping_moves_time=False)
    limiter = RateLimiter(1.0, monotonic=fake.monotonic, sleep=fake.sleep)
    threads = [threading.Thread(target=limiter.acquire) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Six callers at one instant each got their own slot, one second apart.
    assert sorted(fake.sleeps) == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_limiter_wait_is_bounded() -> None:
    fake = FakeTime(start=100.0, sleeping_moves_time=False)
    limiter = RateLimiter(1.0, monotonic=fake.monotonic, sleep=fake.sleep)
    limiter.acquire(max_wait=2)
    limiter.acquire(max_wait=2)
    limiter.acquire(max_wait=2)
    with pytest.raises(RateLimitWaitTooLong) as caught:
        limiter.acquire(max_wait=2)
    assert caught.value.wait == 3.0
    fake.now += 3  # the refused caller reserved nothing
    assert limiter.acquire(max_wait=2) == 0.0


def test_provider_requests_follow_the_limit() -> None:
    fake = FakeTime(start=100.0)
    sent: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(fake.now)
        return httpx.Response(200, json=SEED)

    limiter = RateLimiter(1.0, monotonic=fake.monotonic, sleep=fake.sleep)
    provider = unit_provider(handler, limiter=limiter)
    for _ in range(3):
        provider.fetch(SEED_ID)
    assert sent == [100.0, 101.0, 102.0]


def test_provider_refuses_to_wait_longer_than_its_timeout() -> None:
    fake = FakeTime(start=100.0, sleeping_moves_time=False)
    limiter = RateLimiter(1.0, monotonic=fake.monotonic, sleep=fake.sleep)
    provider = unit_provider(answer(SEED), limiter=limiter, timeout=2.0, rate_limit=1.0)
    for _ in range(3):
        provider.fetch(SEED_ID)
    error = error_of(provider, SEED_ID)
    assert error.kind is FetchErrorKind.RATE_LIMITED
    assert error.retry_after == 3.0
    assert "client-side" in error.message


def test_one_limiter_per_source() -> None:
    source = unit_source(name="shared-budget", rate_limit=None)
    first = PROVIDERS["nclue"].create(source)
    second = PROVIDERS["nclue"].create(source)
    assert isinstance(first, NclueProvider) and isinstance(second, NclueProvider)
    assert first.limiter is second.limiter
    assert first.limiter.rate == 1.0  # NCLUE's default budget
    assert limiter_for(unit_source(name="other-source")) is not first.limiter
    first.close()
    second.close()


# -- list, search and fetch_many over MockTransport ------------------------------------------


def listing(count: int) -> tuple[Handler, list[str]]:
    """A fake upstream holding ``count`` tasks; records the request URIs it got."""
    tasks = [
        {
            **SEED,
            "task_id": f"t-{n:04d}",
            "task_name": f"model-{n}",
            "status": "failed" if n % 10 == 0 else "completed",
        }
        for n in range(count)
    ]
    uris: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        uris.append(request.url.raw_path.decode())
        if request.url.path.endswith("/tasks"):
            index = int(request.url.params["index"])
            limit = int(request.url.params["limit"])
            page = tasks[index : index + limit]
            return httpx.Response(
                200, json={"index": index, "limit": limit, "total": count, "tasks": page}
            )
        wanted = request.url.path.rsplit("/", 1)[1]
        for task in tasks:
            if task["task_id"] == wanted:
                return httpx.Response(200, json=task)
        return httpx.Response(404, json={"message": "TASK_NOT_FOUND"})

    return handler, uris


def test_search_pages_and_filters_on_the_client() -> None:
    handler, uris = listing(250)
    provider = unit_provider(handler)
    page = provider.search_page(None, 200, 100)
    assert page.total == 250 and len(page.tasks) == 50
    assert uris == ["/prefix/api/v1/tasks?index=200&limit=100"]
    assert len(list(provider.search())) == 250
    failed = list(provider.search("status:failed"))
    assert [t.task_id for t in failed] == [f"t-{n:04d}" for n in range(0, 250, 10)]
    assert [t.task_id for t in provider.search("model-24")] == ["t-0024"] + [
        f"t-{n:04d}" for n in range(240, 250)
    ]
    assert provider.search_page("state:succeeded", 0, 5).total == 225
    with pytest.raises(ValueError, match="no server-side search"):
        provider.search_page("owner:me", 0, 10)


def test_an_unreadable_listed_task_does_not_end_the_search() -> None:
    handler, _ = listing(150)
    broken = handler

    def handler_with_a_bad_item(request: httpx.Request) -> httpx.Response:
        response = broken(request)
        body = response.json()
        if request.url.params.get("index") == "0":
            del body["tasks"][5]["status"]
        return httpx.Response(200, json=body)

    provider = unit_provider(handler_with_a_bad_item)
    found = [task.task_id for task in provider.search()]
    assert len(found) == 149 and "t-0005" not in found and found[-1] == "t-0149"
    results = provider.fetch_many(["t-0005", "t-0006", "t-0007"])  # 2 list calls < 3 GETs
    bad = results["t-0005"]
    assert isinstance(bad, FetchError) and bad.kind is FetchErrorKind.BAD_PAYLOAD


def test_fetch_many_pages_the_list_when_cheaper() -> None:
    handler, uris = listing(250)
    provider = unit_provider(handler)
    wanted = ["t-0003", "t-0150", "t-0007", "t-0099", "t-0220", "t-0160", "gone-task"]
    results = provider.fetch_many(wanted)
    assert list(results) == wanted
    assert all(results[t].task_id == t for t in wanted[:-1])  # type: ignore[union-attr]
    missing = results["gone-task"]
    assert isinstance(missing, FetchError) and missing.kind is FetchErrorKind.NOT_FOUND
    # Three list calls (250 tasks) instead of seven GETs; the absent id is not in the list.
    assert len(uris) == 3 and all("?index=" in uri for uri in uris)


def test_fetch_many_stops_paging_once_everything_is_found() -> None:
    handler, uris = listing(1000)
    results = unit_provider(handler).fetch_many(["t-0001", "t-0002", "t-0003"])
    assert all(not isinstance(r, FetchError) for r in results.values())
    assert uris == ["/prefix/api/v1/tasks?index=0&limit=100"]


def test_fetch_many_uses_gets_when_the_list_is_longer() -> None:
    handler, uris = listing(1000)
    provider = unit_provider(handler)
    # First call: one list page finds nothing, 9 more pages would cost more than 2 GETs.
    results = provider.fetch_many(["t-0500", "t-0900"])
    assert all(not isinstance(r, FetchError) for r in results.values())
    assert uris == [
        "/prefix/api/v1/tasks?index=0&limit=100",
        "/prefix/api/v1/tasks/t-0500",
        "/prefix/api/v1/tasks/t-0900",
    ]
    # Now the total is known: straight to GETs.
    uris.clear()
    provider.fetch_many(["t-0500", "t-0900"])
    assert uris == ["/prefix/api/v1/tasks/t-0500", "/prefix/api/v1/tasks/t-0900"]


def test_fetch_many_list_failure_is_every_ids_error() -> None:
    body = {"error": {"errorCode": "420", "message": "Rate Limited"}}
    results = unit_provider(answer(body, 429)).fetch_many(["a", "b"])
    assert {r.kind for r in results.values() if isinstance(r, FetchError)} == {
        FetchErrorKind.RATE_LIMITED
    }
    assert len(results) == 2


# -- integration: the provider against the simulator over loopback ---------------------------


@pytest.fixture
def clock() -> ManualClock:
    """The simulator clock starts at the real time, so real signatures are within the window."""
    return ManualClock(start=time.time())


@pytest.fixture
def suite(clock: ManualClock) -> SimulatorSuite:
    """The simulators with NCLUE's gateway timestamp check on (5 minutes, as documented)."""
    return SimulatorSuite(
        clock=clock, credentials={"nclue": {**sim.DEMO_CREDENTIALS, "max_skew_seconds": 300}}
    )


@pytest.fixture
def nclue_state(suite: SimulatorSuite):
    return suite.states["nclue"]


@pytest.fixture
def connect(make_source) -> Iterator[Callable[..., NclueProvider]]:
    providers: list[NclueProvider] = []

    def factory(**fields: Any) -> NclueProvider:
        fields.setdefault("timeout", 5.0)
        source = make_source("nclue", **fields)
        provider = NclueProvider.create(source, limiter=RateLimiter(None))
        providers.append(provider)
        return provider

    yield factory
    for provider in providers:
        provider.close()


@pytest.fixture
def custom_simulator(clock: ManualClock) -> Iterator[Callable[..., tuple[SimulatorSuite, str]]]:
    """Start another simulator suite with other NCLUE settings; returns (suite, base_url)."""
    servers: list[ServerThread] = []

    def factory(**settings: Any) -> tuple[SimulatorSuite, str]:
        custom = SimulatorSuite(
            clock=clock, credentials={"nclue": {**sim.DEMO_CREDENTIALS, **settings}}
        )
        server = ServerThread(custom.wsgi_app()).start()
        servers.append(server)
        return custom, SimulatorSuite.base_url(server.url, "nclue")

    yield factory
    for server in servers:
        server.stop()


def source_for(base_url: str, **fields: Any) -> SourceConfig:
    entry, environ = sim.demo_source("custom-nclue", base_url)
    return build_source({**entry, **fields}, environ)


@pytest.mark.parametrize(
    "task_id",
    ["with/slash", "what?now", "100%", "has space", "ünï", "a%2Fb", "x+y&z=1;k", SEED_ID],
)
def test_signature_accepted_for_awkward_ids(connect, nclue_state, rng, task_id: str) -> None:
    sim.add_demo_task(nclue_state, rng, task_id=task_id)
    task = connect().fetch(task_id)
    assert task.task_id == task_id
    assert task.state is TaskState.QUEUED and task.upstream_status == "registered"


def test_seed_example_round_trips(connect, suite: SimulatorSuite) -> None:
    assert sim.load_seed_tasks(suite.states["nclue"]) == [SEED_ID]
    provider = connect()
    response = provider.request("GET", provider.api_path(SEED_ID))
    assert response.json() == SEED  # served exactly as written, key order included
    assert list(response.json()) == list(SEED)
    task = provider.fetch(SEED_ID)
    assert task.details["auroc"] == 0.7681659649879657
    assert task.created_at == datetime(2024, 11, 26, 11, 48, 16, tzinfo=UTC)


def test_simulated_task_lifecycle_and_payload(connect, nclue_state, clock, rng) -> None:
    task = sim.add_demo_task(nclue_state, rng, queued_seconds=5, running_seconds=10)
    provider = connect()
    first = provider.fetch(task.task_id)
    assert first.raw["completed_at"] is None and first.raw["AUROC"] is None
    assert first.created_at == datetime.fromtimestamp(int(task.started_at), UTC)
    clock.advance(3)
    assert provider.fetch(task.task_id).upstream_status == "pending"
    clock.advance(3)
    assert provider.fetch(task.task_id).upstream_status == "in_progress"
    clock.advance(10)
    done = provider.fetch(task.task_id)
    assert done.upstream_status == "completed" and done.terminal
    assert isinstance(done.raw["AUROC"], str)
    assert done.details["auroc"] == float(done.raw["AUROC"])
    assert done.finished_at == datetime.fromtimestamp(int(task.started_at + 15), UTC)
    assert done.raw["fail_message"] is None


def test_demo_tasks_are_deterministic_and_say_completed_as_get_and_list_do() -> None:
    def words(seed: int) -> list[str]:
        state = SimulatorState(ManualClock())
        rng = random.Random(seed)
        tasks = [sim.add_demo_task(state, rng) for _ in range(40)]
        return [t.task_id + t.phases[-1].status for t in tasks]

    first = words(3)
    assert first == words(3)
    finals = {entry[36:] for entry in first}
    assert finals == {"completed"}


def test_wrong_secret_is_unauthorized(make_source, nclue_state, rng) -> None:
    task = sim.add_demo_task(nclue_state, rng)
    source = make_source("nclue", environ_overrides={"NCLUE_TEST_SECRET_KEY": "not-the-secret"})
    provider = NclueProvider.create(source, limiter=RateLimiter(None))
    error = error_of(provider, task.task_id)
    provider.close()
    assert error.kind is FetchErrorKind.UNAUTHORIZED
    assert error.message == "API Gateway 200 Authentication Failed"
    assert "not-the-secret" not in error.describe()


@pytest.mark.parametrize("offset", [600, -600])
def test_simulator_clock_far_away_is_reported_as_clock_skew(
    connect, nclue_state, clock, rng, offset: int
) -> None:
    task = sim.add_demo_task(nclue_state, rng)
    provider = connect()
    assert provider.fetch(task.task_id).task_id == task.task_id
    clock.advance(offset)
    error = error_of(provider, task.task_id)
    assert error.kind is FetchErrorKind.UNAUTHORIZED
    assert error.message.startswith("API Gateway 200 Authentication Failed")
    assert "clock" in error.message


def test_signature_must_cover_the_query_as_sent(connect, nclue_state, rng) -> None:
    sim.add_demo_task(nclue_state, rng)
    provider = connect()
    client = provider.client
    # Correctly signed, but the query travels in another order than it was signed.
    request = client.build_request("GET", "/api/v1/tasks?limit=5&index=0")
    signed = next(client.auth.auth_flow(request))  # type: ignore[union-attr]
    signed.url = signed.url.copy_with(query=b"index=0&limit=5")
    response = client.send(signed, auth=None)
    assert response.status_code == 401
    assert response.json() == {"error": {"errorCode": "200", "message": "Authentication Failed"}}
    assert client.get("/api/v1/tasks?limit=5&index=0").status_code == 200
    unsigned = httpx.get(str(client.base_url).rstrip("/") + "/api/v1/tasks")
    assert unsigned.status_code == 401


def test_list_paging_newest_first(connect, nclue_state, clock, rng) -> None:
    for _ in range(230):
        sim.add_demo_task(nclue_state, rng)
        clock.advance(1)
    provider = connect()
    everything = list(provider.search())
    created = [t.created_at for t in everything]
    assert len(everything) == 230 and created == sorted(created, reverse=True)
    assert nclue_state.calls["list"] == 3
    page = provider.search_page(None, 200, 100)
    assert (len(page.tasks), page.total) == (30, 230)
    assert [t.task_id for t in page.tasks] == [t.task_id for t in everything[200:]]


def test_list_limits_are_enforced_by_the_simulator(connect, nclue_state) -> None:
    client = connect().client
    assert client.get("/api/v1/tasks").json()["limit"] == 20
    for query in ("limit=101", "limit=0", "index=-1", "limit=many"):
        response = client.get(f"/api/v1/tasks?{query}")
        assert response.status_code == 400
        assert "message" in response.json()


def test_fetch_many_via_the_list_costs_fewer_calls(connect, nclue_state, clock, rng) -> None:
    tasks = []
    for n in range(150):
        final = "failed" if n % 3 else "succeeded"
        tasks.append(sim.add_demo_task(nclue_state, rng, final=final, queued_seconds=1))
        clock.advance(1)
    wanted = [t.task_id for t in tasks[::15]] + ["no-such-task"]
    results = connect().fetch_many(wanted)
    assert nclue_state.calls["get"] == 0
    assert nclue_state.calls["list"] == 2 < len(wanted)
    missing = results.pop("no-such-task")
    assert isinstance(missing, FetchError) and missing.kind is FetchErrorKind.NOT_FOUND
    for task_id, result in results.items():
        assert not isinstance(result, FetchError)
        assert result.task_id == task_id
        assert result.upstream_status == nclue_state.get(task_id).status(clock.now())
        if result.state is TaskState.FAILED:
            assert result.error


def test_unknown_task_is_not_found(connect, nclue_state) -> None:
    error = error_of(connect(), "no-such-task")
    assert error.kind is FetchErrorKind.NOT_FOUND
    assert error.message == "NCLUE TASK_NOT_FOUND"


def test_delete_cancels_a_registered_task(connect, nclue_state, rng) -> None:
    task = sim.add_demo_task(nclue_state, rng)
    provider = connect()
    response = provider.request("DELETE", provider.api_path(task.task_id))
    assert (response.status_code, response.json()) == (200, {"task_id": task.task_id})
    assert error_of(provider, task.task_id).kind is FetchErrorKind.NOT_FOUND
    assert nclue_state.calls["delete"] == 1


def test_gateway_throttle(custom_simulator, clock, rng) -> None:
    custom, base_url = custom_simulator(rate_limit_per_second=1)
    task = sim.add_demo_task(custom.states["nclue"], rng)
    provider = NclueProvider.create(source_for(base_url), limiter=RateLimiter(None))
    assert provider.fetch(task.task_id).task_id == task.task_id
    error = error_of(provider, task.task_id)
    assert error.kind is FetchErrorKind.RATE_LIMITED
    assert error.message == "API Gateway 420 Rate Limited"
    clock.advance(1.0)
    assert provider.fetch(task.task_id).task_id == task.task_id
    provider.close()


def test_simulator_time_zone_meets_source_time_zone(custom_simulator, clock, rng) -> None:
    custom, base_url = custom_simulator(timezone="Asia/Seoul")
    task = sim.add_demo_task(custom.states["nclue"], rng)
    expected = datetime.fromtimestamp(int(task.started_at), UTC)
    seoul = NclueProvider.create(
        source_for(base_url, timezone="Asia/Seoul"), limiter=RateLimiter(None)
    )
    fetched = seoul.fetch(task.task_id)
    assert fetched.created_at == expected
    naive = NclueProvider.create(source_for(base_url), limiter=RateLimiter(None))
    # Read as UTC, a Seoul wall time is nine hours late: why the source setting exists.
    assert (naive.fetch(task.task_id).created_at - expected).total_seconds() == 9 * 3600
    assert "+" not in fetched.raw["created_at"] and not fetched.raw["created_at"].endswith("Z")
    seoul.close()
    naive.close()


def test_the_create_docs_word_complete_is_still_read_as_succeeded(connect, nclue_state) -> None:
    # The simulator never serves ``complete`` by itself; an upstream that does is still read.
    nclue_state.add_fixed("legacy-word", {**SEED, "task_id": "legacy-word", "status": "complete"},
                          "status")  # fmt: skip
    task = connect().fetch("legacy-word")
    assert task.upstream_status == "complete"
    assert task.state is TaskState.SUCCEEDED and task.terminal
