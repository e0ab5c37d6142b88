"""The Conductor provider: parsing and token handling over httpx.MockTransport, then the real
thing over loopback against the simulator (token expiry, the three auth modes, search paging,
fetch_many through one search, the four "not found" shapes, task logs)."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from webapp.config import SourceConfig
from webapp.config import build_source
from webapp.domain import FetchError
from webapp.domain import FetchErrorKind
from webapp.domain import TaskState
from webapp.providers import PROVIDERS
from webapp.providers.conductor import ConductorProvider
from webapp.providers.conductor_auth import ConductorKeyAuth
from webapp.providers.conductor_times import conductor_time
from webapp.providers.http import build_client
from webapp.simulators import SimulatorSuite
from webapp.simulators import conductor as sim
from webapp.simulators.core import Fault
from webapp.simulators.core import ManualClock
from webapp.simulators.core import SimulatorState
from webapp.simulators.server import ServerThread

BASE = "https://orkes.test/prefix"
KEY_ID = "key-id-7f3a9c"
KEY_SECRET = "key-secret-b41d0e-not-for-logs"
FIXED_TOKEN = "fixed-token-e2c5-not-for-logs"
SEED = sim.seed_examples()["get_task"]
SEED_ID = "6f207c78-bdf2-11ef-88e4-ce0afa758ea1"
SEED_OWN_ID = "0c658ed7-becd-11ef-a89d-86a819bd92bf"
SEED_DOCUMENT = Path("/work/shared/seeds/003_579e0c8391cbbe89.txt")

Handler = Callable[[httpx.Request], httpx.Response]


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def task_json(**fields: Any) -> dict[str, Any]:
    """A ``Task`` as GET /api/tasks/{id} serves it, with Conductor's 0-for-unset times."""
    body: dict[str, Any] = {
        "taskType": "SIMPLE",
        "status": "IN_PROGRESS",
        "inputData": {"orderId": "ord-1"},
        "referenceTaskName": "encode_ref",
        "retryCount": 1,
        "seq": 3,
        "pollCount": 2,
        "taskDefName": "encode",
        "scheduledTime": ms("2026-01-05T10:00:00"),
        "startTime": ms("2026-01-05T10:00:02"),
        "endTime": 0,
        "updateTime": ms("2026-01-05T10:00:03"),
        "workflowInstanceId": "wf-1",
        "workflowType": "media",
        "taskId": "t-1",
        "workerId": "worker-9",
        "outputData": {},
        "queueWaitTime": 2000,
    }
    body.update(fields)
    return body


def summary_json(**fields: Any) -> dict[str, Any]:
    """A ``TaskSummary`` as /api/tasks/search serves it: ISO strings, JSON-string input/output."""
    body: dict[str, Any] = {
        "workflowId": "wf-1",
        "workflowType": "media",
        "scheduledTime": "2026-01-05T10:00:00.000Z",
        "startTime": "2026-01-05T10:00:02.000Z",
        "updateTime": "2026-01-05T10:00:09.000Z",
        "endTime": "2026-01-05T10:00:09.000Z",
        "status": "COMPLETED",
        "executionTime": 7000,
        "queueWaitTime": 2000,
        "taskDefName": "encode",
        "taskType": "SIMPLE",
        "input": '{"orderId": "ord-1"}',
        "output": '{"frames": 12}',
        "taskId": "t-1",
        "workflowPriority": 0,
    }
    body.update(fields)
    return body


class FakeOrkes:
    """A scripted Orkes server for MockTransport: issues ``token-1``, ``token-2``... and
    records every request so tests can count them."""

    def __init__(self, task_answer: Handler | None = None) -> None:
        self.requests: list[httpx.Request] = []
        #: ``X-Authorization`` of each request as sent (a retry reuses the request object).
        self.tokens_sent: list[str | None] = []
        self.tokens_issued = 0
        self.token_answer: Handler | None = None
        self.task_answer = task_answer or (lambda request: httpx.Response(200, json=task_json()))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.tokens_sent.append(request.headers.get("X-Authorization"))
        if request.url.path == "/prefix/api/token":
            if self.token_answer is not None:
                return self.token_answer(request)
            self.tokens_issued += 1
            return httpx.Response(200, json={"token": f"token-{self.tokens_issued}"})
        return self.task_answer(request)

    def count(self) -> Counter[str]:
        return Counter(
            "token" if r.url.path.endswith("/api/token") else r.method for r in self.requests
        )

    def task_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if not r.url.path.endswith("/api/token")]


def make_source(*, auth: str = "keys", **fields: Any) -> SourceConfig:
    entry: dict[str, Any] = {"name": "orkes", "provider": "conductor", "base_url": BASE, **fields}
    environ: dict[str, str] = {}
    if auth == "keys":
        entry.update(key_id_env="OK_ID", key_secret_env="OK_SECRET")
        environ.update(OK_ID=KEY_ID, OK_SECRET=KEY_SECRET)
    elif auth == "token":
        entry["token_env"] = "OK_TOKEN"
        environ["OK_TOKEN"] = FIXED_TOKEN
    return build_source(entry, environ)


def mock_provider(handler: Handler, *, auth: str = "keys", **fields: Any) -> ConductorProvider:
    """A provider over MockTransport; a plain handler answers task requests behind a
    :class:`FakeOrkes` that issues tokens."""
    fake = handler if isinstance(handler, FakeOrkes) else FakeOrkes(handler)
    provider = ConductorProvider.create(
        make_source(auth=auth, **fields), transport=httpx.MockTransport(fake)
    )
    assert isinstance(provider, ConductorProvider)
    return provider


def answer(payload: Any = None, status: int = 200, content: bytes | None = None) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        if content is not None or payload is None:
            return httpx.Response(status, content=content or b"")
        return httpx.Response(status, json=payload)

    return handler


def fetch_error(provider: ConductorProvider, task_id: str = "t-1") -> FetchError:
    with pytest.raises(FetchError) as caught:
        provider.fetch(task_id)
    return caught.value


def assert_no_secrets(error: FetchError, *extra: str) -> None:
    for secret in (KEY_ID, KEY_SECRET, FIXED_TOKEN, *extra):
        assert secret not in error.describe()
        assert secret not in repr(error.raw)


# -- parsing -----------------------------------------------------------------------------------


def test_registered() -> None:
    assert PROVIDERS["conductor"] is ConductorProvider


def test_seed_example_is_extracted_as_written() -> None:
    if not SEED_DOCUMENT.exists():
        pytest.skip("the shared seed documents are not available here")
    text = SEED_DOCUMENT.read_text()
    block = text.split("**Response**", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    assert SEED["response"] == json.loads(block)
    assert f"/api/tasks/{SEED['request_task_id']}'" in text


def test_seed_example_normalizes_under_the_requested_id() -> None:
    fake = FakeOrkes(answer(SEED["response"]))
    provider = mock_provider(fake, ui_url="https://ui.orkes.test")
    result = provider.fetch(SEED_ID)
    # The answer's own taskId differs: the task stays keyed by the id asked for.
    assert result.task_id == SEED_ID
    assert fake.task_requests()[0].url.path == f"/prefix/api/tasks/{SEED_ID}"
    assert result.state is TaskState.RUNNING and not result.terminal
    assert result.upstream_status == "IN_PROGRESS"
    assert result.task_type == "WAIT"
    assert result.name == "wait_ref"
    assert result.created_at == datetime(2024, 12, 20, 12, 22, 15, 733000, tzinfo=UTC)
    # updateTime is 0 in the example: the latest time it does report stands in.
    assert result.updated_at == result.created_at
    assert result.finished_at is None and result.error is None
    assert result.raw == SEED["response"]
    assert result.links["workflowInstanceId"] == "0c645656-becd-11ef-a89d-86a819bd92bf"
    assert result.links["api"] == f"{BASE}/api/tasks/{SEED_ID}"
    assert result.links["ui"] == (
        f"https://ui.orkes.test/execution/0c645656-becd-11ef-a89d-86a819bd92bf/{SEED_OWN_ID}"
    )
    assert result.details["workflowType"] == "test-workflow"
    assert result.details["taskDefName"] == "wait"
    assert result.details["pollCount"] == 1
    assert result.details["inputData"] == {"_createdBy": "john.doe@acme.com"}
    assert result.details["queueWaitTime"] == 0


@pytest.mark.parametrize(
    ("word", "state", "terminal"),
    [
        ("SCHEDULED", TaskState.QUEUED, False),
        ("IN_PROGRESS", TaskState.RUNNING, False),
        ("COMPLETED", TaskState.SUCCEEDED, True),
        ("COMPLETED_WITH_ERRORS", TaskState.PARTIAL, True),
        ("FAILED", TaskState.FAILED, True),
        ("FAILED_WITH_TERMINAL_ERROR", TaskState.FAILED, True),
        ("TIMED_OUT", TaskState.FAILED, True),
        ("CANCELED", TaskState.CANCELLED, True),
        ("SKIPPED", TaskState.SKIPPED, True),
        ("PAUSED_FOR_A_NEW_REASON", TaskState.UNKNOWN, False),
    ],
)
def test_every_status(word: str, state: TaskState, terminal: bool) -> None:
    end = ms("2026-01-05T10:00:09") if terminal else 0
    provider = mock_provider(answer(task_json(status=word, endTime=end)))
    result = provider.fetch("t-1")
    assert (result.state, result.terminal, result.upstream_status) == (state, terminal, word)
    assert result.finished_at == (datetime(2026, 1, 5, 10, 0, 9, tzinfo=UTC) if terminal else None)


def test_zero_times_are_unset_and_details_are_read() -> None:
    payload = task_json(status="SCHEDULED", startTime=0, endTime=0, updateTime=0, workerId=None)
    result = mock_provider(answer(payload)).fetch("t-1")
    assert result.created_at == datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
    assert result.updated_at == result.created_at
    assert result.finished_at is None
    assert result.details["retryCount"] == 1 and result.details["seq"] == 3
    assert "workerId" not in result.details


def test_failure_reason_is_the_error() -> None:
    payload = task_json(
        status="FAILED", endTime=ms("2026-01-05T10:01:00"), reasonForIncompletion="boom"
    )
    result = mock_provider(answer(payload)).fetch("t-1")
    assert result.error == "boom"
    assert result.finished_at == datetime(2026, 1, 5, 10, 1, tzinfo=UTC)


def test_fields_of_unexpected_types_are_kept_not_fatal() -> None:
    payload = task_json(
        scheduledTime="soon", retryCount="one", taskType=["odd"], workflowInstanceId=7
    )
    result = mock_provider(answer(payload)).fetch("t-1")
    assert result.created_at is None
    assert result.details["retryCount"] == "one"
    assert result.task_type == '["odd"]'
    assert "workflowInstanceId" not in result.links and "ui" not in result.links


def test_a_task_without_a_string_status_is_a_bad_payload() -> None:
    error = fetch_error(mock_provider(answer(task_json(status=None))))
    assert error.kind is FetchErrorKind.BAD_PAYLOAD
    assert error.raw["taskId"] == "t-1"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, None),
        (ms("2026-01-05T10:00:00"), datetime(2026, 1, 5, 10, tzinfo=UTC)),
        ("1970-01-01T00:00:00.000Z", None),
        ("1970-01-01T00:00:00Z", None),
        ("2026-01-05T10:00:00Z", datetime(2026, 1, 5, 10, tzinfo=UTC)),
        ("2026-01-05T10:00:00.250Z", datetime(2026, 1, 5, 10, 0, 0, 250000, tzinfo=UTC)),
        ("0", None),
        ("not a time", None),
        (None, None),
    ],
)
def test_conductor_times(value: Any, expected: datetime | None) -> None:
    assert conductor_time(value) == expected


def test_search_summaries_normalize() -> None:
    unset = "1970-01-01T00:00:00Z"  # the docs' form, without millis
    results = [
        summary_json(),
        summary_json(
            taskId="t-2",
            status="SCHEDULED",
            startTime=unset,
            endTime="1970-01-01T00:00:00.000Z",
            updateTime=unset,
            executionTime=0,
            input="{not json",
            output=None,
            referenceTaskName="encode_ref_2",
        ),
    ]
    fake = FakeOrkes(answer({"totalHits": 12, "results": results}))
    page = mock_provider(fake, ui_url="https://ui.orkes.test").search_page(None, 0, 2)
    assert page.total == 12
    done, queued = page.tasks
    assert (done.task_id, done.state, done.terminal) == ("t-1", TaskState.SUCCEEDED, True)
    assert done.finished_at == datetime(2026, 1, 5, 10, 0, 9, tzinfo=UTC)
    assert done.details["inputData"] == {"orderId": "ord-1"}
    assert done.details["outputData"] == {"frames": 12}
    assert done.details["executionTime"] == 7000
    assert done.name == "encode"
    # Summaries say workflowId, not workflowInstanceId.
    assert done.links["workflowInstanceId"] == "wf-1"
    assert done.links["ui"] == "https://ui.orkes.test/execution/wf-1/t-1"
    assert queued.state is TaskState.QUEUED
    assert queued.created_at == datetime(2026, 1, 5, 10, tzinfo=UTC)
    assert queued.updated_at == queued.created_at and queued.finished_at is None
    assert queued.details["inputData"] == "{not json"
    assert "outputData" not in queued.details
    assert queued.name == "encode_ref_2"


def test_search_parameters_and_the_query_rule() -> None:
    fake = FakeOrkes(answer({"totalHits": 0, "results": []}))
    provider = mock_provider(fake)
    provider.search_page(None, 40, 20)
    provider.search_page("status = 'FAILED' AND workflowType = 'media'", 0, 5)
    provider.search_page("taskType IN (HTTP,SIMPLE)", 0, 5)
    provider.search_page("status:FAILED", 0, 5)
    provider.search_page("encode", 0, 5)
    params = [dict(r.url.params) for r in fake.task_requests()]
    assert all(r.url.path == "/prefix/api/tasks/search" for r in fake.task_requests())
    assert params[0] == {"start": "40", "size": "20", "sort": "scheduledTime:DESC", "freeText": "*"}
    assert params[1]["query"] == "status = 'FAILED' AND workflowType = 'media'"
    assert params[1]["freeText"] == "*"
    assert params[2]["query"] == "taskType IN (HTTP,SIMPLE)"
    assert params[3] == {**params[0], "start": "0", "size": "5", "freeText": "status:FAILED"}
    assert "query" not in params[4] and params[4]["freeText"] == "encode"


def test_search_answer_that_is_not_a_search_result() -> None:
    with pytest.raises(FetchError) as caught:
        mock_provider(answer({"hits": []})).search_page(None, 0, 5)
    assert caught.value.kind is FetchErrorKind.BAD_PAYLOAD


# -- not found and other errors ----------------------------------------------------------------

NOT_FOUND_ANSWERS = {
    "404 with ErrorResponse": answer(
        {
            "status": 404,
            "message": "Task not found for taskId: t-1",
            "instance": "conductor-1",
            "retryable": False,
        },
        404,
    ),
    "404 empty": answer(status=404),
    "204 empty": answer(status=204),
    "400 (Orkes)": answer(
        {"status": 400, "message": "Invalid task execution ID", "retryable": False}, 400
    ),
    "200 empty": answer(status=200),
}


@pytest.mark.parametrize("shape", list(NOT_FOUND_ANSWERS))
def test_every_not_found_shape(shape: str) -> None:
    error = fetch_error(mock_provider(NOT_FOUND_ANSWERS[shape]))
    assert error.kind is FetchErrorKind.NOT_FOUND
    if shape == "404 with ErrorResponse":
        assert error.message == "Task not found for taskId: t-1"


def test_error_response_message_is_used() -> None:
    body = {"status": 500, "message": "Error while querying the DB", "retryable": False}
    error = fetch_error(mock_provider(answer(body, 500)))
    assert error.kind is FetchErrorKind.UPSTREAM_ERROR
    assert error.status_code == 500 and error.message == "Error while querying the DB"


def test_forbidden_without_a_token_word_is_forbidden() -> None:
    body = {"status": 403, "message": "User does not have access to the workflow"}
    error = fetch_error(mock_provider(answer(body, 403)))
    assert error.kind is FetchErrorKind.FORBIDDEN


# -- auth --------------------------------------------------------------------------------------


def test_token_exchange_and_header() -> None:
    fake = FakeOrkes()
    provider = mock_provider(fake)
    provider.fetch("t-1")
    provider.fetch("t-2")
    exchange, first, second = fake.requests
    assert exchange.method == "POST" and exchange.url == f"{BASE}/api/token"
    assert json.loads(exchange.content) == {"keyId": KEY_ID, "keySecret": KEY_SECRET}
    # Never send a token to the endpoint that issues them.
    assert "X-Authorization" not in exchange.headers
    for request in (first, second):
        assert request.headers["X-Authorization"] == "token-1"  # no "Bearer"
        assert "Authorization" not in request.headers
    assert fake.tokens_issued == 1


def test_token_is_refreshed_before_it_ages() -> None:
    now = [1000.0]
    fake = FakeOrkes()
    source = make_source()
    auth = ConductorKeyAuth(
        KEY_ID, KEY_SECRET, f"{BASE}/api/token", refresh_after=2700, clock=lambda: now[0]
    )
    provider = ConductorProvider(
        source, build_client(source, auth=auth, transport=httpx.MockTransport(fake))
    )
    provider.fetch("t-1")
    now[0] += 2699
    provider.fetch("t-1")
    assert fake.tokens_issued == 1
    now[0] += 2
    provider.fetch("t-1")
    assert fake.tokens_issued == 2
    assert fake.task_requests()[-1].headers["X-Authorization"] == "token-2"
    # Proactive: no request was ever answered 401.
    assert fake.count() == Counter({"token": 2, "GET": 3})


def test_default_refresh_age_is_45_minutes() -> None:
    auth = ConductorProvider.client_auth(make_source())
    assert isinstance(auth, ConductorKeyAuth)
    assert auth.refresh_after == 45 * 60
    assert auth.token_url == f"{BASE}/api/token"


@pytest.mark.parametrize("status", [401, 403])
def test_expired_token_is_refreshed_and_retried_once(status: int) -> None:
    def task_answer(request: httpx.Request) -> httpx.Response:
        if request.headers["X-Authorization"] == "token-1":
            return httpx.Response(status, json={"error": "EXPIRED_TOKEN", "message": "expired"})
        return httpx.Response(200, json=task_json())

    fake = FakeOrkes(task_answer)
    result = mock_provider(fake).fetch("t-1")
    assert result.state is TaskState.RUNNING
    assert fake.count() == Counter({"token": 2, "GET": 2})
    assert fake.tokens_sent == [None, "token-1", None, "token-2"]


def test_expired_again_after_the_retry_gives_up() -> None:
    fake = FakeOrkes(answer({"error": "EXPIRED_TOKEN"}, 401))
    error = fetch_error(mock_provider(fake))
    assert error.kind is FetchErrorKind.UNAUTHORIZED
    assert "EXPIRED_TOKEN" in error.message
    assert fake.count() == Counter({"token": 2, "GET": 2})
    assert_no_secrets(error, "token-1", "token-2")


@pytest.mark.parametrize("status", [401, 403])
def test_invalid_token_is_refreshed_and_retried_once(status: int) -> None:
    # A restarted server or a rotated signing key no longer knows the token it issued.
    def task_answer(request: httpx.Request) -> httpx.Response:
        if request.headers["X-Authorization"] == "token-1":
            return httpx.Response(status, json={"error": "INVALID_TOKEN", "message": "Invalid"})
        return httpx.Response(200, json=task_json())

    fake = FakeOrkes(task_answer)
    assert mock_provider(fake).fetch("t-1").state is TaskState.RUNNING
    assert fake.count() == Counter({"token": 2, "GET": 2})
    assert fake.tokens_sent == [None, "token-1", None, "token-2"]


def test_invalid_again_after_the_retry_gives_up() -> None:
    body = {"error": "INVALID_TOKEN", "message": "Invalid token token-1 for key-id-7f3a9c"}
    fake = FakeOrkes(answer(body, 401))
    error = fetch_error(mock_provider(fake))
    assert error.kind is FetchErrorKind.UNAUTHORIZED
    assert "INVALID_TOKEN" in error.message
    assert fake.count() == Counter({"token": 2, "GET": 2})
    assert_no_secrets(error, "token-1", "token-2")


def test_a_401_without_a_token_word_is_not_retried() -> None:
    fake = FakeOrkes(answer(status=401, content=b"Unauthorized"))
    assert fetch_error(mock_provider(fake)).kind is FetchErrorKind.UNAUTHORIZED
    assert fake.count() == Counter({"token": 1, "GET": 1})


def test_rejected_keys_are_unauthorized_and_never_named() -> None:
    fake = FakeOrkes()
    # Even when the server echoes what it was sent.
    echo = {"status": 401, "message": f"Invalid keyId {KEY_ID} / {KEY_SECRET}", "retryable": False}
    fake.token_answer = answer(echo, 401)
    provider = mock_provider(fake)
    error = fetch_error(provider)
    assert error.kind is FetchErrorKind.UNAUTHORIZED and error.status_code == 401
    assert_no_secrets(error)
    assert fake.count() == Counter({"token": 1})  # no task request without a token
    # A failed exchange is not cached: the next fetch tries again, once.
    fetch_error(provider)
    assert fake.count() == Counter({"token": 2})


@pytest.mark.parametrize(
    ("token_answer", "kind"),
    [
        (answer({"status": 503, "message": "unavailable"}, 503), FetchErrorKind.UPSTREAM_ERROR),
        (answer({"status": 429, "message": "slow down"}, 429), FetchErrorKind.RATE_LIMITED),
        (answer(status=404), FetchErrorKind.UNAUTHORIZED),
        (answer({"notAToken": True}), FetchErrorKind.UNAUTHORIZED),
    ],
)
def test_other_failed_exchanges(token_answer: Handler, kind: FetchErrorKind) -> None:
    fake = FakeOrkes()
    fake.token_answer = token_answer
    error = fetch_error(mock_provider(fake))
    assert error.kind is kind
    assert_no_secrets(error)


def test_token_exchange_network_failure_is_a_network_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    provider = mock_provider(handler)
    assert fetch_error(provider).kind is FetchErrorKind.NETWORK
    # The token lock was released: the next call fails the same way instead of hanging.
    assert fetch_error(provider).kind is FetchErrorKind.NETWORK


def test_threads_share_one_exchange() -> None:
    fake = FakeOrkes()
    provider = mock_provider(fake)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(provider.fetch, [f"t-{n}" for n in range(32)]))
    assert len(results) == 32
    assert fake.tokens_issued == 1


def test_fixed_token_is_sent_as_is_and_never_refreshed() -> None:
    fake = FakeOrkes(answer({"error": "EXPIRED_TOKEN"}, 401))
    error = fetch_error(mock_provider(fake, auth="token"))
    assert error.kind is FetchErrorKind.UNAUTHORIZED
    assert fake.count() == Counter({"GET": 1})
    assert fake.requests[0].headers["X-Authorization"] == FIXED_TOKEN
    assert_no_secrets(error)


def test_open_source_sends_no_auth() -> None:
    fake = FakeOrkes()
    mock_provider(fake, auth="none").fetch("t-1")
    assert fake.count() == Counter({"GET": 1})
    assert "X-Authorization" not in fake.requests[0].headers


# -- logs, links, fetch_many ------------------------------------------------------------------


def test_logs() -> None:
    entries = [
        {"log": "picked up", "taskId": "t-1", "createdTime": ms("2026-01-05T10:00:02")},
        {"log": "done", "taskId": "t-1", "createdTime": 0},
    ]
    fake = FakeOrkes(answer(entries))
    logs = mock_provider(fake).fetch_logs("t/1")
    assert fake.task_requests()[0].url.raw_path == b"/prefix/api/tasks/t%2F1/log"
    assert [entry["log"] for entry in logs] == ["picked up", "done"]
    assert logs[0]["created_at"] == datetime(2026, 1, 5, 10, 0, 2, tzinfo=UTC)
    assert logs[0]["createdTime"] == entries[0]["createdTime"]
    assert logs[1]["created_at"] is None


def test_no_logs_is_204_not_an_error() -> None:
    assert mock_provider(answer(status=204)).fetch_logs("t-1") == []


@pytest.mark.parametrize(
    ("handler", "kind"),
    [
        (answer({"status": 500, "message": "index down"}, 500), FetchErrorKind.UPSTREAM_ERROR),
        (answer({"not": "a list"}), FetchErrorKind.BAD_PAYLOAD),
    ],
)
def test_log_failures_raise(handler: Handler, kind: FetchErrorKind) -> None:
    with pytest.raises(FetchError) as caught:
        mock_provider(handler).fetch_logs("t-1")
    assert caught.value.kind is kind


def test_ui_link_defaults_to_the_base_url() -> None:
    result = mock_provider(answer(task_json())).fetch("t-1")
    assert result.links["ui"] == f"{BASE}/execution/wf-1/t-1"


def test_fetch_many_uses_one_search_and_gets_the_rest() -> None:
    def task_answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/search"):
            results = [summary_json(taskId="a"), summary_json(taskId="b", status="FAILED")]
            return httpx.Response(200, json={"totalHits": 2, "results": results})
        task_id = request.url.path.rsplit("/", 1)[1]
        if task_id == "gone":
            return httpx.Response(404)
        return httpx.Response(200, json=task_json(taskId=task_id))

    fake = FakeOrkes(task_answer)
    results = mock_provider(fake).fetch_many(["a", "b", "c", "it's", "gone", "a"])
    assert list(results) == ["a", "b", "c", "it's", "gone"]
    search = [r for r in fake.task_requests() if r.url.path.endswith("/search")]
    assert len(search) == 1
    # Unquoted, as every index reads it; an id the list cannot carry is fetched on its own.
    assert search[0].url.params["query"] == "taskId IN (a,b,c,gone)"
    assert search[0].url.params["size"] == "4"
    gets = sorted(
        r.url.raw_path.rsplit(b"/", 1)[1] for r in fake.task_requests() if r not in search
    )
    assert gets == [b"c", b"gone", b"it%27s"]
    assert results["a"].state is TaskState.SUCCEEDED  # type: ignore[union-attr]
    assert results["b"].state is TaskState.FAILED  # type: ignore[union-attr]
    assert results["c"].state is TaskState.RUNNING  # type: ignore[union-attr]
    assert isinstance(results["gone"], FetchError)
    assert results["gone"].kind is FetchErrorKind.NOT_FOUND


def test_fetch_many_falls_back_to_gets_when_search_is_unavailable() -> None:
    def task_answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/search"):
            return httpx.Response(500, json={"status": 500, "message": "no indexing backend"})
        return httpx.Response(200, json=task_json())

    fake = FakeOrkes(task_answer)
    results = mock_provider(fake).fetch_many(["a", "b"])
    assert all(r.state is TaskState.RUNNING for r in results.values())  # type: ignore[union-attr]
    assert fake.count() == Counter({"token": 1, "GET": 3})


def test_fetch_many_does_not_multiply_auth_failures() -> None:
    fake = FakeOrkes(answer({"error": "INVALID_TOKEN"}, 401))
    results = mock_provider(fake).fetch_many(["a", "b", "c"])
    assert all(
        isinstance(r, FetchError) and r.kind is FetchErrorKind.UNAUTHORIZED
        for r in results.values()
    )
    # The search, its one retry with a new token, and no GET per id.
    assert fake.count() == Counter({"token": 2, "GET": 2})


# -- the simulator on its own ----------------------------------------------------------------


@pytest.fixture
def sim_state(clock: ManualClock) -> SimulatorState:
    return SimulatorState(clock)


def test_simulator_task_json_follows_the_phases(sim_state: SimulatorState, clock) -> None:
    task = sim.add_demo_task(
        sim_state, random.Random(3), final="failed", queued_seconds=2, running_seconds=5
    )
    client = sim.create_app(sim_state, auth="none").test_client()
    url = f"/api/tasks/{task.task_id}"
    queued = client.get(url).get_json()
    assert queued["status"] == "SCHEDULED"
    assert (queued["startTime"], queued["endTime"], queued["updateTime"]) == (0, 0, 0)
    assert queued["scheduledTime"] == int(clock.now() * 1000)
    assert "reasonForIncompletion" not in queued and "workerId" not in queued
    assert queued["taskId"] == task.task_id and queued["workflowInstanceId"]
    clock.advance(3)
    running = client.get(url).get_json()
    assert running["status"] == "IN_PROGRESS" and running["endTime"] == 0
    assert running["startTime"] == queued["scheduledTime"] + 2000
    assert running["queueWaitTime"] == 2000
    clock.advance(10)
    failed = client.get(url).get_json()
    assert failed["status"] == "FAILED"
    assert failed["endTime"] == queued["scheduledTime"] + 7000
    assert failed["reasonForIncompletion"]


def test_simulator_routes_search_before_task_ids(sim_state: SimulatorState) -> None:
    sim.add_demo_task(sim_state, random.Random(1), task_id="search-me")
    client = sim.create_app(sim_state, auth="none").test_client()
    body = client.get("/api/tasks/search").get_json()
    assert body["totalHits"] == 1
    row = body["results"][0]
    assert row["workflowId"] and "workflowInstanceId" not in row
    assert row["startTime"] == "1970-01-01T00:00:00.000Z"
    assert json.loads(row["input"]) == sim_state.get("search-me").fields["inputData"]  # type: ignore[union-attr]
    assert client.get("/api/tasks/search-me").get_json()["taskId"] == "search-me"


def test_simulator_query_subset(sim_state: SimulatorState, clock) -> None:
    rng = random.Random(5)
    for name, final in [("a", "succeeded"), ("b", "failed"), ("c", "failed")]:
        sim.add_demo_task(
            sim_state, rng, task_id=name, final=final, queued_seconds=0, running_seconds=1
        )
    clock.advance(5)
    client = sim.create_app(sim_state, auth="none").test_client()

    def ids(**params: str) -> list[str]:
        body = client.get("/api/tasks/search", query_string={"sort": "taskId:ASC", **params})
        return [row["taskId"] for row in body.get_json()["results"]]

    assert ids(query="status = 'FAILED'") == ["b", "c"]
    assert ids(query="status = 'FAILED' AND taskId != 'b'") == ["c"]
    # Elasticsearch keeps the quotes inside IN (...): 'c' is not the keyword c.
    assert ids(query="taskId IN (a,'c')") == ["a"]
    assert ids(query="(taskId = 'a' OR taskId = 'b') AND status = 'COMPLETED'") == ["a"]
    assert ids(freeText="status:FAILED") == ["b", "c"]
    # The parser's ParserException reaches the client as a TransientException: 500.
    assert client.get("/api/tasks/search", query_string={"query": "status ~ 1"}).status_code == 500


def test_simulator_tokens(sim_state: SimulatorState, clock) -> None:
    task = sim.add_demo_task(sim_state, random.Random(2))
    client = sim.create_app(sim_state, token_ttl_seconds=60).test_client()
    bad = client.post("/api/token", json={"keyId": "demo-key-id", "keySecret": "guess"})
    assert bad.status_code == 401 and "guess" not in bad.get_data(as_text=True)
    keys = {"keyId": "demo-key-id", "keySecret": "demo-key-secret"}
    token = client.post("/api/token", json=keys).get_json()["token"]
    forever = client.post("/api/token", json={**keys, "expiration": -1}).get_json()["token"]
    url = f"/api/tasks/{task.task_id}"
    assert client.get(url).status_code == 401
    assert client.get(url, headers={"X-Authorization": f"Bearer {token}"}).get_json()["error"] == (
        "INVALID_TOKEN"
    )
    assert client.get(url, headers={"X-Authorization": token}).status_code == 200
    clock.advance(61)
    expired = client.get(url, headers={"X-Authorization": token})
    assert expired.status_code == 401 and expired.get_json()["error"] == "EXPIRED_TOKEN"
    assert client.get(url, headers={"X-Authorization": forever}).status_code == 200


def test_simulator_seed_is_served_as_written_under_both_ids(sim_state: SimulatorState) -> None:
    assert sim.load_seed_tasks(sim_state) == [SEED_ID]
    client = sim.create_app(sim_state, auth="none").test_client()
    assert client.get(f"/api/tasks/{SEED_ID}").get_json() == SEED["response"]
    assert client.get(f"/api/tasks/{SEED_OWN_ID}").get_json() == SEED["response"]
    assert client.get(f"/api/tasks/{SEED_ID}/log").status_code == 204


# -- over loopback against the simulator --------------------------------------------------------


@pytest.fixture
def own_simulator(clock: ManualClock) -> Iterator[Callable[..., tuple[SimulatorState, str]]]:
    """Start a Conductor simulator with non-default options: ``(state, base_url)``."""
    servers: list[ServerThread] = []

    def start(**options: Any) -> tuple[SimulatorState, str]:
        state = SimulatorState(clock)
        server = ServerThread(sim.create_app(state, **options)).start()
        servers.append(server)
        return state, server.url

    yield start
    for server in servers:
        server.stop()


def loopback_source(base_url: str, **fields: Any) -> tuple[SourceConfig, ConductorProvider]:
    environ = fields.pop("environ", {})
    source = build_source(
        {"name": "cond-own", "provider": "conductor", "base_url": base_url, **fields}, environ
    )
    provider = ConductorProvider.create(source)
    assert isinstance(provider, ConductorProvider)
    return source, provider


@pytest.fixture
def state(suite: SimulatorSuite) -> SimulatorState:
    return suite.states["conductor"]


@pytest.fixture
def provider(make_source) -> Iterator[ConductorProvider]:
    provider = ConductorProvider.create(make_source("conductor", rate_limit=1000.0))
    assert isinstance(provider, ConductorProvider)
    yield provider
    provider.close()


def test_loopback_seed(provider: ConductorProvider, state: SimulatorState) -> None:
    sim.load_seed_tasks(state)
    result = provider.fetch(SEED_ID)
    assert result.task_id == SEED_ID and result.raw == SEED["response"]
    assert result.state is TaskState.RUNNING


def test_loopback_expired_token_is_refreshed_transparently(
    provider: ConductorProvider, state: SimulatorState, clock: ManualClock
) -> None:
    task = sim.add_demo_task(state, random.Random(1), queued_seconds=5, running_seconds=3600)
    assert provider.fetch(task.task_id).state is TaskState.QUEUED
    assert state.calls["token"] == 1
    clock.advance(3601)  # past the simulator's token lifetime; our own clock has not moved
    assert provider.fetch(task.task_id).state is TaskState.RUNNING
    # One request refused as EXPIRED_TOKEN, one exchange, one retry.
    assert (state.calls["token"], state.calls["refused"], state.calls["get"]) == (2, 1, 2)
    provider.fetch(task.task_id)
    assert (state.calls["token"], state.calls["refused"], state.calls["get"]) == (2, 1, 3)


def test_loopback_proactive_refresh(make_source, state: SimulatorState, clock: ManualClock) -> None:
    source = make_source("conductor")
    auth = ConductorKeyAuth(
        source.secret("key_id_env") or "",
        source.secret("key_secret_env") or "",
        source.base_url + "/api/token",
        refresh_after=600,
        clock=clock.now,
    )
    provider = ConductorProvider(source, build_client(source, auth=auth))
    task = sim.add_demo_task(state, random.Random(1))
    provider.fetch(task.task_id)
    clock.advance(601)
    provider.fetch(task.task_id)
    provider.close()
    # Renewed before use: never answered EXPIRED_TOKEN, so no request was retried.
    assert (state.calls["token"], state.calls["refused"], state.calls["get"]) == (2, 0, 2)


def test_loopback_logs_accumulate(
    provider: ConductorProvider, state: SimulatorState, clock: ManualClock
) -> None:
    task = sim.add_demo_task(state, random.Random(4), queued_seconds=2, running_seconds=12)
    assert provider.fetch_logs(task.task_id) == []
    clock.advance(3)
    first = provider.fetch_logs(task.task_id)
    assert len(first) == 1 and first[0]["taskId"] == task.task_id
    clock.advance(20)
    done = provider.fetch_logs(task.task_id)
    assert len(done) > len(first) and done[-1]["log"] == "Task COMPLETED"
    assert [e["created_at"] for e in done] == sorted(e["created_at"] for e in done)
    assert provider.fetch_logs("no-such-task") == []


def test_loopback_search_paging(
    provider: ConductorProvider, state: SimulatorState, clock: ManualClock
) -> None:
    rng = random.Random(9)
    ids = []
    for n in range(7):
        final = "failed" if n % 3 == 0 else "succeeded"
        ids.append(
            sim.add_demo_task(state, rng, final=final, queued_seconds=1, running_seconds=1).task_id
        )
        clock.advance(1)
    clock.advance(10)
    pages = [provider.search_page(None, offset, 3) for offset in (0, 3, 6)]
    assert [len(p.tasks) for p in pages] == [3, 3, 1]
    assert all(p.total == 7 for p in pages)
    seen = [t.task_id for p in pages for t in p.tasks]
    assert seen == list(reversed(ids))  # newest first, no overlap
    failed = list(provider.search("status = 'FAILED'"))
    assert sorted(t.task_id for t in failed) == sorted(ids[n] for n in (0, 3, 6))
    assert all(t.error for t in failed)
    completed = [i for i in seen if i not in {t.task_id for t in failed}]
    assert [t.task_id for t in provider.search("status:COMPLETED", limit=2)] == completed[:2]


def test_loopback_summary_agrees_with_get(
    provider: ConductorProvider, state: SimulatorState, clock: ManualClock
) -> None:
    task = sim.add_demo_task(
        state, random.Random(6), final="partial", queued_seconds=1, running_seconds=2
    )
    clock.advance(4)
    got = provider.fetch(task.task_id)
    (found,) = provider.search_page(f"taskId = '{task.task_id}'", 0, 10).tasks
    for field in ("task_id", "state", "upstream_status", "terminal", "task_type", "error"):
        assert getattr(found, field) == getattr(got, field)
    for field in ("created_at", "updated_at", "finished_at"):
        assert getattr(found, field) == getattr(got, field)
    assert found.links["workflowInstanceId"] == got.links["workflowInstanceId"]
    assert found.details["inputData"] == got.details["inputData"]


def test_loopback_fetch_many_via_search(provider: ConductorProvider, state: SimulatorState) -> None:
    rng = random.Random(8)
    ids = [sim.add_demo_task(state, rng).task_id for _ in range(3)]
    results = provider.fetch_many([*ids, "missing-one"])
    assert state.calls["search"] == 1
    assert state.calls["get"] == 1  # only the id the search did not return
    assert all(results[i].state is TaskState.QUEUED for i in ids)  # type: ignore[union-attr]
    assert isinstance(results["missing-one"], FetchError)
    assert results["missing-one"].kind is FetchErrorKind.NOT_FOUND


def test_loopback_fetch_many_honours_per_task_faults(
    provider: ConductorProvider, state: SimulatorState
) -> None:
    rng = random.Random(8)
    ids = [sim.add_demo_task(state, rng).task_id for _ in range(2)]
    state.set_fault(Fault.SERVER_ERROR, task_id=ids[0], times=1)
    results = provider.fetch_many(ids)
    # The search failed, so both were fetched one by one and both arrived.
    assert all(results[i].state is TaskState.QUEUED for i in ids)  # type: ignore[union-attr]
    assert (state.calls["search"], state.calls["get"]) == (1, 2)


@pytest.mark.parametrize("style", ["404-body", "404-empty", "204", "400"])
def test_loopback_not_found_styles(own_simulator, style: str) -> None:
    state, url = own_simulator(auth="none", not_found_style=style)
    _, provider = loopback_source(url)
    with pytest.raises(FetchError) as caught:
        provider.fetch("no-such-task")
    assert caught.value.kind is FetchErrorKind.NOT_FOUND
    state.set_fault(Fault.NOT_FOUND, times=1)
    task = sim.add_demo_task(state, random.Random(1))
    with pytest.raises(FetchError) as caught:
        provider.fetch(task.task_id)
    assert caught.value.kind is FetchErrorKind.NOT_FOUND
    assert provider.fetch(task.task_id).task_id == task.task_id
    provider.close()


def test_loopback_open_source_mode(own_simulator) -> None:
    state, url = own_simulator(auth="none")
    task = sim.add_demo_task(state, random.Random(1))
    _, provider = loopback_source(url)
    assert provider.fetch(task.task_id).state is TaskState.QUEUED
    provider.close()
    # Keys configured against open-source Conductor: there is no /api/token to ask.
    _, keyed = loopback_source(
        url, key_id_env="K", key_secret_env="S", environ={"K": KEY_ID, "S": KEY_SECRET}
    )
    with pytest.raises(FetchError) as caught:
        keyed.fetch(task.task_id)
    keyed.close()
    assert caught.value.kind is FetchErrorKind.UNAUTHORIZED
    assert "/api/token" in caught.value.message
    assert_no_secrets(caught.value)
    assert state.calls["get"] == 1


def test_loopback_fixed_token_mode(own_simulator) -> None:
    state, url = own_simulator(auth="token", token=FIXED_TOKEN)
    task = sim.add_demo_task(state, random.Random(1))
    _, provider = loopback_source(url, token_env="TOK", environ={"TOK": FIXED_TOKEN})
    assert provider.fetch(task.task_id).task_id == task.task_id
    provider.close()
    wrong = "wrong-" + FIXED_TOKEN
    _, bad = loopback_source(url, token_env="TOK", environ={"TOK": wrong})
    with pytest.raises(FetchError) as caught:
        bad.fetch(task.task_id)
    bad.close()
    assert caught.value.kind is FetchErrorKind.UNAUTHORIZED
    assert_no_secrets(caught.value, wrong)
    assert state.calls["token"] == 0
