"""The Mixpeek provider: parsing details over httpx.MockTransport, then the real thing over
loopback against the simulator (paging, TTL, auth, the token bucket)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import UTC
from datetime import datetime
from typing import Any

import httpx
import pytest

from webapp.config import build_source
from webapp.domain import FetchError
from webapp.domain import FetchErrorKind
from webapp.domain import TaskState
from webapp.providers import PROVIDERS
from webapp.providers.mixpeek import STATUSES
from webapp.providers.mixpeek import MixpeekProvider
from webapp.simulators import SimulatorSuite
from webapp.simulators import mixpeek as sim
from webapp.simulators.core import Fault
from webapp.simulators.mixpeek_enums import STATUS_WORDS

API_KEY = "sk_live_abc123def456_not_for_logs"
BASE = "https://api.mixpeek.test"
SEEDS = sim.seed_examples()

Handler = Callable[[httpx.Request], httpx.Response]


def mock_provider(handler: Handler, **fields: Any) -> MixpeekProvider:
    entry = {
        "name": "mx",
        "provider": "mixpeek",
        "base_url": BASE,
        "api_key_env": "MX_KEY",
        **fields,
    }
    source = build_source(entry, {"MX_KEY": API_KEY})
    provider = MixpeekProvider.create(source, transport=httpx.MockTransport(handler))
    assert isinstance(provider, MixpeekProvider)
    return provider


def answer(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=payload, headers=headers)

    return handler


def fetch_error(provider: MixpeekProvider, task_id: str = "task_x") -> FetchError:
    with pytest.raises(FetchError) as caught:
        provider.fetch(task_id)
    return caught.value


def task(**fields: Any) -> dict[str, Any]:
    return {"task_id": "task_x", "task_type": "thumbnail", "status": "PENDING", **fields}


# -- the seed's examples --------------------------------------------------------------------------


def test_seed_processing_example_normalizes() -> None:
    payload = SEEDS["get_example"]
    result = mock_provider(answer(payload)).fetch("task_abc123def456")
    assert result.task_id == "task_abc123def456"
    assert result.state is TaskState.RUNNING and result.terminal is False
    assert result.upstream_status == "PROCESSING"
    assert result.task_type == "api_buckets_batches_process"
    assert result.error is None
    assert result.raw == payload
    assert (result.created_at, result.updated_at, result.finished_at) == (None, None, None)
    assert result.links == {
        "api": f"{BASE}/v1/tasks/task_abc123def456",
        "batch_id": "batch_xyz789",
        "bucket_id": "bkt_products",
        "job_id": "ray_job_123",
    }
    assert result.details["description"] == "Batch processing task in progress"
    assert result.details["inputs"] == ["batch_xyz789"]
    assert result.details["batch_id"] == "batch_xyz789"
    assert result.details["bucket_id"] == "bkt_products"
    assert "outputs" not in result.details


def test_seed_failed_example_normalizes() -> None:
    payload = SEEDS["failed_example"]
    result = mock_provider(answer(payload)).fetch("task_abc123")
    assert result.state is TaskState.FAILED and result.terminal is True
    assert result.error == "Failed to process batch: Object not found"
    assert result.details["inputs"] == ["batch_xyz"]
    assert "outputs" not in result.details  # null upstream
    assert result.links["batch_id"] == "batch_xyz"


@pytest.mark.parametrize("field", ["inputs", "outputs"])
@pytest.mark.parametrize("example", range(3))
def test_seed_inputs_and_outputs_examples_kept_as_they_came(field: str, example: int) -> None:
    value = SEEDS["field_examples"][field][example]
    result = mock_provider(answer(task(status="COMPLETED", **{field: value}))).fetch("task_x")
    assert result.details[field] == value
    assert result.state is TaskState.SUCCEEDED


def test_mixed_string_and_object_items() -> None:
    mixed = ["obj_1", {"bucket_id": "bkt_abc", "config": {"k": 1}}]
    result = mock_provider(answer(task(inputs=mixed, outputs=mixed))).fetch("task_x")
    assert result.details["inputs"] == mixed and result.details["outputs"] == mixed


def test_seed_additional_data_examples() -> None:
    first, second, third = SEEDS["field_examples"]["additional_data"]
    result = mock_provider(answer(task(additional_data=third))).fetch("task_x")
    assert result.details["from_mongodb"] is True
    assert result.details["cluster_id"] == "cl_abc"
    assert result.links["cluster_id"] == "cl_abc"
    result = mock_provider(answer(task(status="FAILED", additional_data=second))).fetch("task_x")
    assert result.error == "Failed to process object: Invalid file format"
    assert result.links["job_id"] == "123"
    result = mock_provider(answer(task(additional_data=first))).fetch("task_x")
    assert result.details["additional_data"] == first


# -- statuses --------------------------------------------------------------------------------------

STATUS_CASES = [
    ("PENDING", TaskState.QUEUED, False),
    ("QUEUED", TaskState.QUEUED, False),
    ("DRAFT", TaskState.QUEUED, False),
    ("IN_PROGRESS", TaskState.RUNNING, False),
    ("PROCESSING", TaskState.RUNNING, False),
    ("ACTIVE", TaskState.RUNNING, False),
    ("COMPLETED", TaskState.SUCCEEDED, True),
    ("COMPLETED_WITH_ERRORS", TaskState.PARTIAL, True),
    ("FAILED", TaskState.FAILED, True),
    ("CANCELED", TaskState.CANCELLED, True),
    ("SKIPPED", TaskState.SKIPPED, True),
    ("INTERRUPTED", TaskState.UNKNOWN, False),
    ("UNKNOWN", TaskState.UNKNOWN, False),
    ("SUSPENDED", TaskState.UNKNOWN, False),
    ("DEACTIVATED", TaskState.UNKNOWN, False),
    ("ARCHIVED", TaskState.UNKNOWN, True),
    ("CANCELLED", TaskState.UNKNOWN, False),  # OpenSearch's spelling is not Mixpeek's
    ("EXPIRED", TaskState.UNKNOWN, False),
]


@pytest.mark.parametrize(("word", "state", "terminal"), STATUS_CASES)
def test_every_status_word(word: str, state: TaskState, terminal: bool) -> None:
    result = mock_provider(answer(task(status=word))).fetch("task_x")
    assert (result.state, result.terminal, result.upstream_status) == (state, terminal, word)


def test_every_seed_status_word_is_known() -> None:
    known = {word for word, _, _ in STATUS_CASES}
    assert set(SEEDS["statuses"]) <= known


#: ``TaskStatusEnum`` of the python SDK 1.3.783 (OpenAPI 0.82), in its order.
SDK_STATUSES = (
    "PENDING QUEUED IN_PROGRESS PROCESSING COMPLETED COMPLETED_WITH_ERRORS FAILED CANCELED "
    "INTERRUPTED UNKNOWN SKIPPED DRAFT ACTIVE ARCHIVED SUSPENDED DEACTIVATED"
).split()


def test_every_status_of_the_current_enum_is_mapped(caplog: pytest.LogCaptureFixture) -> None:
    assert len(SDK_STATUSES) == 16
    assert set(SDK_STATUSES) == set(STATUSES) == {word for word, _, _ in STATUS_CASES[:16]}
    assert tuple(SDK_STATUSES) == STATUS_WORDS  # what the simulator serves and filters on
    provider = mock_provider(lambda request: httpx.Response(200, json=task(status="QUEUED")))
    for word in SDK_STATUSES:
        provider.normalize("task_x", task(status=word))
    # A mapped word is never the "unknown status word" the log reports once.
    assert "unknown status word" not in caplog.text


def test_the_sdks_polling_advice_is_what_stays_active() -> None:
    # "Poll tasks in PENDING, QUEUED, IN_PROGRESS, or PROCESSING states; stop polling when
    # task reaches COMPLETED, COMPLETED_WITH_ERRORS, FAILED, or CANCELED."
    for word in ("PENDING", "QUEUED", "IN_PROGRESS", "PROCESSING"):
        assert STATUSES[word].state in (TaskState.QUEUED, TaskState.RUNNING)
    for word in ("COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED", "CANCELED"):
        assert STATUSES[word].terminal


# -- the queue ---------------------------------------------------------------------------------


def test_queue_position_and_wait_are_shown_while_queued() -> None:
    queued = task(status="QUEUED", queue_position=3, estimated_wait_minutes=4.5)
    result = mock_provider(answer(queued)).fetch("task_x")
    assert result.state is TaskState.QUEUED
    assert result.details["queue_position"] == 3
    assert result.details["estimated_wait_minutes"] == 4.5
    # A pending task that says where it waits shows it too.
    pending = task(status="PENDING", queue_position=1, estimated_wait_minutes=0)
    assert mock_provider(answer(pending)).fetch("task_x").details["queue_position"] == 1


@pytest.mark.parametrize("word", ["PROCESSING", "COMPLETED", "FAILED"])
def test_queue_figures_are_not_shown_once_it_left_the_queue(word: str) -> None:
    stale = task(status=word, queue_position=2, estimated_wait_minutes=1.5)
    result = mock_provider(answer(stale)).fetch("task_x")
    assert "queue_position" not in result.details
    assert "estimated_wait_minutes" not in result.details
    assert result.raw["queue_position"] == 2  # still in the payload as it came


def test_null_or_odd_queue_figures_are_left_out() -> None:
    odd = task(status="QUEUED", queue_position=None, estimated_wait_minutes="soon")
    result = mock_provider(answer(odd)).fetch("task_x")
    assert "queue_position" not in result.details
    assert "estimated_wait_minutes" not in result.details


def test_queue_figures_lead_the_key_fields() -> None:
    spec = MixpeekProvider.spec
    assert spec.key_fields[:3] == ("description", "queue_position", "estimated_wait_minutes")
    wait = spec.field_format("estimated_wait_minutes")
    assert wait is not None and wait.label == "Estimated wait (minutes)"


def test_a_cancellation_outcome_is_shown() -> None:
    outcome = {"ray_jobs_requested": 2, "ray_jobs_accepted": 1, "ray_jobs_refused": 1}
    result = mock_provider(answer(task(status="CANCELED", cancellation=outcome))).fetch("x")
    assert result.details["cancellation"] == outcome


def test_missing_status_is_a_bad_payload_and_keeps_the_body() -> None:
    payload = {"task_id": "task_x", "task_type": "thumbnail"}
    error = fetch_error(mock_provider(answer(payload)))
    assert error.kind is FetchErrorKind.BAD_PAYLOAD
    assert error.raw == payload


def test_not_json_is_a_bad_payload() -> None:
    provider = mock_provider(lambda request: httpx.Response(200, text="<html>oops</html>"))
    error = fetch_error(provider)
    assert error.kind is FetchErrorKind.BAD_PAYLOAD
    assert error.raw == "<html>oops</html>"


def test_odd_fields_are_shown_not_rejected() -> None:
    payload = {"status": "COMPLETED", "inputs": "not-a-list", "additional_data": ["x"]}
    result = mock_provider(answer(payload)).fetch("asked-id")
    assert result.task_id == "asked-id"
    assert result.task_type is None
    assert result.details["inputs"] == "not-a-list"
    assert result.links == {"api": f"{BASE}/v1/tasks/asked-id"}


def test_keyed_by_the_id_asked_for() -> None:
    result = mock_provider(answer(task(task_id="other"))).fetch("asked")
    assert result.task_id == "asked"
    assert result.details["upstream_task_id"] == "other"


# -- where the error is ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"error": "from error"}, "from error"),
        ({"error_message": "from error_message"}, "from error_message"),
        ({"additional_data": {"error": "from additional_data"}}, "from additional_data"),
        (
            {"error": "first", "error_message": "second", "additional_data": {"error": "third"}},
            "first",
        ),
        ({"error": None, "error_message": "second", "additional_data": {"error": "x"}}, "second"),
        ({"error": "  ", "additional_data": {"error": "third"}}, "third"),
        (
            {"additional_data": {"error": {"code": 7, "reason": "disk full"}}},
            '{"code": 7, "reason": "disk full"}',
        ),
        ({}, None),
    ],
)
def test_error_locations(fields: dict[str, Any], expected: str | None) -> None:
    result = mock_provider(answer(task(status="FAILED", **fields))).fetch("task_x")
    assert result.error == expected


# -- error answers ---------------------------------------------------------------------------------


def envelope(status: int, error_type: str, message: str, details: Any = None) -> dict[str, Any]:
    return {
        "success": False,
        "status": status,
        "error": {"message": message, "type": error_type, "details": details},
    }


def test_not_found_envelope() -> None:
    body = envelope(404, "NotFoundError", "Task not found", {"resource": "task", "id": "x"})
    error = fetch_error(mock_provider(answer(body, 404)))
    assert error.kind is FetchErrorKind.NOT_FOUND
    assert error.status_code == 404
    assert error.message == "Task not found (NotFoundError)"


@pytest.mark.parametrize(
    ("status", "error_type", "kind"),
    [
        (401, "UnauthorizedError", FetchErrorKind.UNAUTHORIZED),
        (403, "ForbiddenError", FetchErrorKind.FORBIDDEN),
        (500, "InternalServerError", FetchErrorKind.UPSTREAM_ERROR),
        (503, "InferenceServiceUnavailableError", FetchErrorKind.UPSTREAM_ERROR),
    ],
)
def test_envelope_errors_by_status(status: int, error_type: str, kind: FetchErrorKind) -> None:
    error = fetch_error(mock_provider(answer(envelope(status, error_type, "went wrong"), status)))
    assert error.kind is kind
    assert error.message == f"went wrong ({error_type})"


def test_422_fastapi_shape_is_readable() -> None:
    body = {
        "detail": [
            {
                "type": "less_than_equal",
                "loc": ["query", "limit"],
                "msg": "Input should be less than or equal to 1000",
                "input": "5000",
            },
            {"type": "enum", "loc": ["body", "status"], "msg": "Input should be 'PENDING'"},
        ]
    }
    error = fetch_error(mock_provider(answer(body, 422)))
    assert error.status_code == 422
    assert error.message == (
        "Validation error: query.limit: Input should be less than or equal to 1000; "
        "body.status: Input should be 'PENDING'"
    )


def test_422_envelope_shape_is_readable() -> None:
    body = envelope(
        422,
        "ValidationError",
        "Validation error",
        {
            "validation_errors": [
                {
                    "type": "string_type",
                    "location": ["body", "collection_name"],
                    "message": "Input should be a valid string",
                }
            ]
        },
    )
    error = fetch_error(mock_provider(answer(body, 422)))
    assert error.message == (
        "Validation error (ValidationError): body.collection_name: Input should be a valid string"
    )


def test_422_envelope_with_a_code_and_extra_keys() -> None:
    body = {
        "success": False,
        "status": 422,
        "error": {
            "type": "ValidationError",
            "code": "extra_forbidden",
            "message": "Validation error",
            "details": {
                "validation_errors": [
                    {"type": "extra_forbidden", "loc": ["body", "page"], "msg": "Extra inputs"}
                ]
            },
        },
    }
    error = fetch_error(mock_provider(answer(body, 422)))
    assert error.kind is FetchErrorKind.UPSTREAM_ERROR and error.status_code == 422
    assert error.message == (
        "Validation error (ValidationError, extra_forbidden): body.page: Extra inputs"
    )


def test_422_with_a_flattened_error_text_and_no_details() -> None:
    body = {"success": False, "status": 422, "error": "filters: unsupported field"}
    assert fetch_error(mock_provider(answer(body, 422))).message == "filters: unsupported field"
    empty = {"success": False, "status": 422, "error": {"type": "ValidationError"}}
    assert fetch_error(mock_provider(answer(empty, 422))).message == "error (ValidationError)"


def test_429_reads_retry_after_header() -> None:
    body = envelope(429, "TooManyRequestsError", "Rate limit exceeded", {"limit": 600})
    provider = mock_provider(answer(body, 429, {"Retry-After": "15", "X-RateLimit-Remaining": "0"}))
    error = fetch_error(provider)
    assert error.kind is FetchErrorKind.RATE_LIMITED
    assert error.retry_after == 15
    assert provider.rate_limit_state is not None and provider.rate_limit_state.exhausted


def test_429_without_header_uses_details_retry_after() -> None:
    body = envelope(
        429, "TooManyRequestsError", "Rate limit exceeded", {"limit": 600, "retry_after": 12}
    )
    error = fetch_error(mock_provider(answer(body, 429)))
    assert error.kind is FetchErrorKind.RATE_LIMITED
    assert error.retry_after == 12


def test_plain_text_error_body() -> None:
    provider = mock_provider(lambda request: httpx.Response(502, text="Bad Gateway"))
    error = fetch_error(provider)
    assert error.kind is FetchErrorKind.UPSTREAM_ERROR
    assert error.message == "Bad Gateway"


# -- rate limit headers ----------------------------------------------------------------------------


def test_rate_limit_headers_are_kept_from_every_answer() -> None:
    remaining = iter(["542", "541"])

    def handler(request: httpx.Request) -> httpx.Response:
        headers = {
            "X-RateLimit-Limit": "600",
            "X-RateLimit-Remaining": next(remaining),
            "X-RateLimit-Reset": "1698765432",
            "X-RateLimit-Window": "60",
        }
        if request.url.path.endswith("/gone"):
            return httpx.Response(404, json=envelope(404, "NotFoundError", "x"), headers=headers)
        return httpx.Response(200, json=task(), headers=headers)

    provider = mock_provider(handler)
    assert provider.rate_limit_state is None
    provider.fetch("task_x")
    state = provider.rate_limit_state
    assert state is not None
    assert (state.limit, state.remaining, state.window) == (600, 542, 60.0)
    assert state.reset_at == datetime.fromtimestamp(1698765432, tz=UTC)
    assert not state.exhausted
    assert state.seconds_until_reset(datetime.fromtimestamp(1698765402, tz=UTC)) == 30
    # An error answer updates it too.
    assert fetch_error(provider, "gone").kind is FetchErrorKind.NOT_FOUND
    assert provider.rate_limit_state is not None
    assert provider.rate_limit_state.remaining == 541


def test_answers_without_rate_limit_headers_leave_the_state_alone() -> None:
    provider = mock_provider(answer(task()))
    provider.fetch("task_x")
    assert provider.rate_limit_state is None


# -- auth and headers ------------------------------------------------------------------------------


def test_bearer_key_is_sent_but_not_a_default_header() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=task())

    provider = mock_provider(handler)
    provider.fetch("task_x")
    assert seen[0].headers["Authorization"] == f"Bearer {API_KEY}"
    assert "Authorization" not in provider.client.headers
    assert API_KEY not in repr(provider.client.auth)
    assert "X-Namespace" not in seen[0].headers


def test_namespace_header_only_when_configured() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=task())

    mock_provider(handler, namespace="ns_products").fetch("task_x")
    assert seen[0].headers["X-Namespace"] == "ns_products"


def test_no_secret_in_any_error() -> None:
    echoed = envelope(401, "UnauthorizedError", f"Invalid API key {API_KEY}")
    error = fetch_error(mock_provider(answer(echoed, 401)))
    assert error.kind is FetchErrorKind.UNAUTHORIZED
    assert API_KEY not in error.describe()
    assert "***" in error.message
    plain = mock_provider(lambda request: httpx.Response(500, text=f"boom Bearer {API_KEY}"))
    assert API_KEY not in fetch_error(plain).describe()


def test_ids_are_path_encoded() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=task())

    mock_provider(handler).fetch("a/b?c")
    assert seen[0].url.raw_path == b"/v1/tasks/a%2Fb%3Fc"


# -- the list request ------------------------------------------------------------------------------


def test_parse_query_simple_syntax() -> None:
    body = MixpeekProvider.parse_query(
        'status:failed task_type:API_BUCKETS_BATCHES_PROCESS object "not found"'
    )
    assert body == {
        "status": "FAILED",
        "task_type": "api_buckets_batches_process",
        "search": "object not found",
        "sort": {"field": "created_at", "direction": "desc"},
    }
    assert MixpeekProvider.parse_query('search:"bad file"')["search"] == "bad file"
    assert MixpeekProvider.parse_query(None) == {
        "sort": {"field": "created_at", "direction": "desc"}
    }


def test_parse_query_json_is_sent_as_is() -> None:
    raw = {"status": "PENDING", "filters": {"AND": [{"field": "task_id", "value": "t"}]}}
    assert MixpeekProvider.parse_query(json.dumps(raw)) == raw


@pytest.mark.parametrize("query", ["{not json", "colour:red", "status:"])
def test_parse_query_rejects(query: str) -> None:
    with pytest.raises(ValueError):
        MixpeekProvider.parse_query(query)


def test_parse_query_only_reads_objects_as_json() -> None:
    assert MixpeekProvider.parse_query("[1, 2]")["search"] == "[1, 2]"


def test_search_page_puts_paging_in_the_query_and_filters_in_the_body() -> None:
    seen: list[httpx.Request] = []
    listing = {
        "results": [task(task_id="t1"), task(task_id="t2", status="FAILED")],
        "pagination": {"total": 7, "page": 1, "page_size": 2, "next_cursor": "abc"},
    }

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=listing)

    provider = mock_provider(handler)
    page = provider.search_page("status:FAILED", 0, 2)
    request = seen[0]
    assert request.method == "POST" and request.url.path == "/v1/tasks/list"
    assert dict(request.url.params) == {"limit": "2", "offset": "0", "include_total": "true"}
    assert json.loads(request.content)["status"] == "FAILED"
    assert [t.task_id for t in page.tasks] == ["t1", "t2"]
    assert page.total == 7 and page.next_cursor == "abc"
    provider.list_page({}, offset=0, limit=2, cursor="abc")
    assert dict(seen[1].url.params) == {"limit": "2", "cursor": "abc"}
    provider.search_page(None, 4, 2)
    assert dict(seen[2].url.params) == {"limit": "2", "offset": "4"}


@pytest.mark.parametrize(
    "payload",
    [{"items": []}, {"results": [{"status": "PENDING"}]}, [1, 2], {"results": "x"}],
)
def test_list_answer_that_is_not_a_list_response(payload: Any) -> None:
    with pytest.raises(FetchError) as caught:
        mock_provider(answer(payload)).search_page(None, 0, 10)
    assert caught.value.kind is FetchErrorKind.BAD_PAYLOAD


def test_fetch_many_gets_ids_the_list_left_out_and_stops_once_rate_limited() -> None:
    # The list (one call for all four) answers none of them, as after Redis's TTL: each is
    # asked for with a GET, until one is rate-limited.
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if request.url.path.endswith("/list"):
            return httpx.Response(200, json={"results": [], "pagination": {}})
        if len(calls) == 3:
            body = envelope(429, "TooManyRequestsError", "Rate limit exceeded")
            return httpx.Response(429, json=body, headers={"Retry-After": "9"})
        return httpx.Response(200, json=task())

    results = mock_provider(handler).fetch_many(["a", "b", "c", "d"])
    assert calls == ["/v1/tasks/list", "/v1/tasks/a", "/v1/tasks/b"]
    assert results["a"].state is TaskState.QUEUED  # type: ignore[union-attr]
    for task_id in ("b", "c", "d"):
        error = results[task_id]
        assert isinstance(error, FetchError) and error.kind is FetchErrorKind.RATE_LIMITED
        assert error.retry_after == 9


class Listing:
    """A mock upstream: the list answers the tasks in ``tasks`` that its ``task_id`` filter
    names (or ``list_answer``), GET answers a task or 404; every request is kept."""

    def __init__(self, tasks: dict[str, str], list_answer: httpx.Response | None = None) -> None:
        self.tasks = tasks
        self.list_answer = list_answer
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/v1/tasks/list":
            if self.list_answer is not None:
                return self.list_answer
            wanted = json.loads(request.content)["filters"]["AND"][0]["value"]
            found = [task(task_id=i, status=self.tasks[i]) for i in wanted if i in self.tasks]
            return httpx.Response(200, json={"results": found, "pagination": {}})
        task_id = request.url.path.rsplit("/", 1)[-1]
        if task_id in self.tasks:
            return httpx.Response(200, json=task(task_id=task_id, status=self.tasks[task_id]))
        return httpx.Response(404, json=envelope(404, "NotFoundError", "Task not found"))

    def paths(self) -> list[str]:
        return [request.url.path for request in self.requests]


def test_fetch_many_selects_the_tasks_by_id_in_one_list_call() -> None:
    upstream = Listing({"a": "QUEUED", "b": "PROCESSING", "c": "COMPLETED"})
    results = mock_provider(upstream).fetch_many(["a", "b", "c"])
    assert upstream.paths() == ["/v1/tasks/list"]
    request = upstream.requests[0]
    assert request.method == "POST"
    assert dict(request.url.params) == {"limit": "3", "offset": "0"}  # no total to count
    assert json.loads(request.content) == {
        "filters": {
            "AND": [{"field": "task_id", "operator": "in", "value": ["a", "b", "c"]}],
            "case_sensitive": True,
        }
    }
    states = {task_id: result.state for task_id, result in results.items()}  # type: ignore[union-attr]
    assert states == {"a": TaskState.QUEUED, "b": TaskState.RUNNING, "c": TaskState.SUCCEEDED}
    assert results["a"].links["api"] == f"{BASE}/v1/tasks/a"  # type: ignore[union-attr]


def test_fetch_many_gets_each_id_the_list_leaves_out_and_a_404_is_not_found() -> None:
    # "b" expired from Redis and is gone; "c" is only in GET's MongoDB fallback.
    upstream = Listing({"a": "PROCESSING", "c": "COMPLETED"})
    upstream_list = Listing({"a": "PROCESSING"})
    provider = mock_provider(
        lambda request: (
            upstream_list(request) if request.url.path.endswith("/list") else upstream(request)
        )
    )
    results = provider.fetch_many(["a", "b", "c"])
    assert [r.url.path for r in upstream_list.requests + upstream.requests] == [
        "/v1/tasks/list",
        "/v1/tasks/b",
        "/v1/tasks/c",
    ]
    assert results["a"].state is TaskState.RUNNING  # type: ignore[union-attr]
    gone = results["b"]
    assert isinstance(gone, FetchError) and gone.kind is FetchErrorKind.NOT_FOUND
    assert results["c"].state is TaskState.SUCCEEDED  # type: ignore[union-attr]
    assert list(results) == ["a", "b", "c"]


def test_fetch_many_ignores_what_it_did_not_ask_for() -> None:
    # A server that ignored the filter, or matched an id in another case.
    listing = {"results": [task(task_id="A"), task(task_id="z")], "pagination": {}}
    upstream = Listing({"a": "FAILED", "b": "FAILED"}, httpx.Response(200, json=listing))
    results = mock_provider(upstream).fetch_many(["a", "b"])
    assert upstream.paths() == ["/v1/tasks/list", "/v1/tasks/a", "/v1/tasks/b"]
    assert set(results) == {"a", "b"}
    assert all(r.state is TaskState.FAILED for r in results.values())  # type: ignore[union-attr]


def test_fetch_many_splits_more_than_a_batch_and_one_id_is_a_get() -> None:
    ids = [f"t{i:03d}" for i in range(250)]
    upstream = Listing(dict.fromkeys(ids, "PENDING"))
    provider = mock_provider(upstream)
    results = provider.fetch_many(ids)
    assert upstream.paths() == ["/v1/tasks/list"] * 3
    sizes = [len(json.loads(r.content)["filters"]["AND"][0]["value"]) for r in upstream.requests]
    assert sizes == [100, 100, 50]
    assert [r.url.params["limit"] for r in upstream.requests] == ["100", "100", "50"]
    assert all(not isinstance(r, FetchError) for r in results.values())
    upstream.requests.clear()
    provider.fetch_many(["t001", "t001"])
    assert upstream.paths() == ["/v1/tasks/t001"]


@pytest.mark.parametrize(
    ("status", "body", "headers", "kind"),
    [
        (429, envelope(429, "TooManyRequestsError", "slow down"), {"Retry-After": "7"}, "rate"),
        (401, envelope(401, "UnauthorizedError", "Invalid API key"), {}, "auth"),
        (403, envelope(403, "ForbiddenError", "no"), {}, "auth"),
        (500, envelope(500, "InternalServerError", "boom"), {}, "server"),
        (503, envelope(503, "InferenceServiceUnavailableError", "down"), {}, "server"),
    ],
)
def test_a_list_failure_a_get_would_share_fails_the_batch_without_more_calls(
    status: int, body: dict[str, Any], headers: dict[str, str], kind: str
) -> None:
    upstream = Listing({"a": "PENDING", "b": "PENDING"}, httpx.Response(status, json=body))
    upstream.list_answer.headers.update(headers)  # type: ignore[union-attr]
    results = mock_provider(upstream).fetch_many(["a", "b"])
    assert upstream.paths() == ["/v1/tasks/list"]
    errors = list(results.values())
    assert all(isinstance(e, FetchError) and e.status_code == status for e in errors)
    if kind == "rate":
        assert all(e.retry_after == 7 for e in errors)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "answer_",
    [
        httpx.Response(422, json=envelope(422, "ValidationError", "filters: unsupported")),
        httpx.Response(400, json=envelope(400, "BadRequestError", "bad filter")),
        httpx.Response(404, json=envelope(404, "NotFoundError", "Route not found")),
        httpx.Response(200, text="<html>not json</html>"),
        httpx.Response(200, json={"results": [{"status": "PENDING"}]}),
    ],
)
def test_a_refused_or_unreadable_list_falls_back_to_gets(answer_: httpx.Response) -> None:
    upstream = Listing({"a": "PENDING", "b": "COMPLETED"}, answer_)
    results = mock_provider(upstream).fetch_many(["a", "b"])
    assert upstream.paths() == ["/v1/tasks/list", "/v1/tasks/a", "/v1/tasks/b"]
    assert results["b"].state is TaskState.SUCCEEDED  # type: ignore[union-attr]


def test_batches_are_what_the_refresher_hands_it() -> None:
    assert MixpeekProvider.batch_size == 100 <= 1000  # one page of the list holds a batch


def test_registered_and_says_it_has_no_times() -> None:
    assert PROVIDERS["mixpeek"] is MixpeekProvider
    assert MixpeekProvider.times_note and "no task times" in MixpeekProvider.times_note
    assert MixpeekProvider.can_search


# -- over loopback against the simulator ----------------------------------------------------------


@pytest.fixture
def state(suite: SimulatorSuite) -> Any:
    return suite.states["mixpeek"]


@pytest.fixture
def provider(make_source: Callable[..., Any]) -> Any:
    provider = PROVIDERS["mixpeek"].create(make_source("mixpeek"))
    yield provider
    provider.close()


def add(state: Any, seed: int = 0, **kwargs: Any) -> Any:
    return sim.add_demo_task(state, random.Random(seed), **kwargs)


def test_loopback_serves_the_seed_examples_exactly(provider: Any, state: Any) -> None:
    assert sim.load_seed_tasks(state) == ["task_abc123def456", "task_abc123"]
    running = provider.fetch("task_abc123def456")
    assert running.raw == SEEDS["get_example"]
    assert running.state is TaskState.RUNNING
    failed = provider.fetch("task_abc123")
    assert failed.raw == SEEDS["failed_example"]
    assert failed.error == "Failed to process batch: Object not found"


def test_loopback_lifecycle_payloads(provider: Any, state: Any, clock: Any) -> None:
    done = add(state, 1, final="succeeded", queued_seconds=1, running_seconds=1)
    bad = add(state, 2, final="failed", queued_seconds=1, running_seconds=1)
    first = provider.fetch(done.task_id)
    assert first.upstream_status == "PENDING" and first.raw["outputs"] is None
    clock.advance(1.5)
    assert provider.fetch(done.task_id).upstream_status in ("IN_PROGRESS", "PROCESSING")
    clock.advance(1)
    finished = provider.fetch(done.task_id)
    assert finished.state is TaskState.SUCCEEDED and finished.raw["outputs"]
    failed = provider.fetch(bad.task_id)
    assert failed.state is TaskState.FAILED
    text = failed.raw["error"]
    assert text and failed.raw["error_message"] == text
    assert failed.raw["additional_data"]["error"] == text
    assert failed.error == text
    assert failed.created_at is None


def test_loopback_search_pages_through_several_pages(provider: Any, state: Any, clock: Any) -> None:
    ids = []
    for number in range(25):
        final = "failed" if number % 5 == 0 else "succeeded"
        ids.append(add(state, number, final=final, queued_seconds=1, running_seconds=1).task_id)
        clock.advance(1)  # distinct creation times: the default sort is newest first
    requests: list[httpx.Request] = []
    provider.client.event_hooks["request"].append(requests.append)
    provider.max_page_size = 10
    found = [t.task_id for t in provider.search()]
    assert found == list(reversed(ids))
    assert len(requests) == 3
    params = [dict(r.url.params) for r in requests]
    assert params[0] == {"limit": "10", "offset": "0", "include_total": "true"}
    # Later pages follow the cursor the list gave back.
    assert "cursor" in params[1] and "offset" not in params[1]
    assert provider.search_total() == 25
    assert len(list(provider.search(limit=12))) == 12

    failed = [t.task_id for t in provider.search("status:FAILED")]
    assert sorted(failed) == sorted(ids[::5])
    assert provider.search_total("status:FAILED") == 5


def test_loopback_search_filters(provider: Any, state: Any) -> None:
    tasks = [add(state, n) for n in range(12)]
    types = {t.fields["task_type"] for t in tasks}
    chosen = sorted(types)[0]
    by_type = {t.task_id for t in provider.search(f"task_type:{chosen.upper()}")}
    assert by_type == {t.task_id for t in tasks if t.fields["task_type"] == chosen}
    needle = tasks[3].task_id
    assert [t.task_id for t in provider.search(needle)] == [needle]
    wanted = [needle, tasks[4].task_id]
    dsl = json.dumps({"filters": {"OR": [{"field": "task_id", "operator": "in", "value": wanted}]}})
    assert {t.task_id for t in provider.search(dsl)} == {needle, tasks[4].task_id}


def test_loopback_invalid_paging_is_a_readable_422(provider: Any) -> None:
    with pytest.raises(FetchError) as caught:
        provider.list_page({}, offset=10_001, limit=5000)
    error = caught.value
    assert error.status_code == 422
    assert "query.limit: Input should be less than or equal to 1000" in error.message
    assert "query.offset: Input should be less than or equal to 10000" in error.message
    with pytest.raises(FetchError) as caught:
        provider.list_page({"status": "DONE"})
    assert "body.status: Input should be 'PENDING'" in caught.value.message


def test_loopback_ttl_expiry_is_not_found(provider: Any, state: Any, clock: Any) -> None:
    task_ = add(state, final="succeeded", queued_seconds=1, running_seconds=1)
    clock.advance(86_399)
    assert provider.fetch(task_.task_id).state is TaskState.SUCCEEDED
    clock.advance(1)
    with pytest.raises(FetchError) as caught:
        provider.fetch(task_.task_id)
    assert caught.value.kind is FetchErrorKind.NOT_FOUND
    assert caught.value.message == "Task not found (NotFoundError)"
    assert list(provider.search()) == []


def test_loopback_auth_enforced(make_source: Callable[..., Any], sim_server: Any) -> None:
    url = SimulatorSuite.base_url(sim_server.url, "mixpeek") + "/v1/tasks/anything"
    bare = httpx.get(url)
    assert bare.status_code == 401
    assert bare.json()["error"]["type"] == "UnauthorizedError"
    assert bare.json()["success"] is False
    wrong_key = "sk_test_wrong_key_42"
    source = make_source("mixpeek", name="bad", environ_overrides={"BAD_API_KEY": wrong_key})
    provider = PROVIDERS["mixpeek"].create(source)
    error = fetch_error(provider, "anything")
    provider.close()
    assert error.kind is FetchErrorKind.UNAUTHORIZED
    assert wrong_key not in error.describe()


def test_loopback_rate_limit_headers_and_namespace(
    make_source: Callable[..., Any], state: Any
) -> None:
    task_ = add(state)
    provider = PROVIDERS["mixpeek"].create(make_source("mixpeek", namespace="ns_demo"))
    provider.fetch(task_.task_id)
    first = provider.rate_limit_state
    provider.fetch(task_.task_id)
    second = provider.rate_limit_state
    provider.close()
    assert first.limit == 600 and first.window == 60.0
    assert second.remaining == first.remaining - 1
    assert second.reset_at is not None


def test_loopback_kill_is_idempotent(
    sim_server: Any, provider: Any, state: Any, clock: Any
) -> None:
    task_ = add(state, queued_seconds=1, running_seconds=100)
    clock.advance(2)
    base = SimulatorSuite.base_url(sim_server.url, "mixpeek")
    headers = {"Authorization": f"Bearer {sim.DEMO_CREDENTIALS['api_key']}"}
    with httpx.Client(base_url=base, headers=headers) as client:
        for task_id in (task_.task_id, task_.task_id, "never-existed"):
            response = client.delete(f"/v1/tasks/{task_id}")
            assert response.status_code == 200
            assert response.json() == {"message": "Successfully deleted", "success": True}
    killed = provider.fetch(task_.task_id)
    assert killed.state is TaskState.CANCELLED and killed.terminal
    clock.advance(500)
    assert provider.fetch(task_.task_id).upstream_status == "CANCELED"


def test_loopback_fault_429_is_shaped_like_mixpeek(sim_server: Any, state: Any) -> None:
    task_ = add(state)
    state.set_fault(Fault.RATE_LIMITED, task_id=task_.task_id, times=1, seconds=4)
    url = SimulatorSuite.base_url(sim_server.url, "mixpeek") + f"/v1/tasks/{task_.task_id}"
    headers = {"Authorization": f"Bearer {sim.DEMO_CREDENTIALS['api_key']}"}
    response = httpx.get(url, headers=headers)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "4"
    assert response.headers["X-RateLimit-Remaining"] == "0"
    error = response.json()["error"]
    assert error["type"] == "TooManyRequestsError"
    assert error["details"] == {"limit": 600, "window": "1m", "retry_after": 4}


class TestTokenBucket:
    """A 3-per-minute key: the fourth call is refused until the clock refills a token."""

    @pytest.fixture
    def suite(self, clock: Any) -> SimulatorSuite:
        credentials = {"mixpeek": {**sim.DEMO_CREDENTIALS, "rate_limit": 3, "rate_window": 60}}
        return SimulatorSuite(clock=clock, credentials=credentials)

    def test_429_then_recovery(self, provider: Any, state: Any, clock: Any) -> None:
        task_ = add(state)
        for expected_remaining in (2, 1, 0):
            provider.fetch(task_.task_id)
            assert provider.rate_limit_state.remaining == expected_remaining
        error = fetch_error(provider, task_.task_id)
        assert error.kind is FetchErrorKind.RATE_LIMITED
        assert error.retry_after == 20  # one token at 3 per 60 s
        assert "Rate limit exceeded (TooManyRequestsError)" in error.message
        assert provider.rate_limit_state.exhausted
        clock.advance(19)
        assert fetch_error(provider, task_.task_id).kind is FetchErrorKind.RATE_LIMITED
        clock.advance(1)
        assert provider.fetch(task_.task_id).task_id == task_.task_id
        clock.advance(60)
        provider.fetch(task_.task_id)
        assert provider.rate_limit_state.remaining == 2


def test_seed_file_names_its_source() -> None:
    assert "002_f830565e8ae268a5" in SEEDS["_comment"]
