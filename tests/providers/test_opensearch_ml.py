"""OpenSearch ML Commons: parsing the seed examples and the upstream's quirks (MockTransport)."""

from __future__ import annotations

import base64
import json
from datetime import UTC
from datetime import datetime

import httpx
import pytest

from webapp.config import build_source
from webapp.domain import FetchError
from webapp.domain import FetchErrorKind
from webapp.domain import TaskState
from webapp.providers.opensearch_ml import STATUSES
from webapp.providers.opensearch_ml import OpenSearchMLProvider
from webapp.simulators.opensearch_ml import seed_examples

BASE = "https://search.internal:9200/proxy"


def make_provider(handler, **fields):
    entry = {
        "name": "ml",
        "provider": "opensearch-ml",
        "base_url": BASE,
        "username_env": "U",
        "password_env": "P",
        **fields,
    }
    source = build_source(entry, {"U": "admin", "P": "pw"})
    return OpenSearchMLProvider.create(source, transport=httpx.MockTransport(handler))


def answer(payload, status=200):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=payload)

    return handler


SEEDS = seed_examples()


@pytest.mark.parametrize("name", list(SEEDS["get_examples"]))
def test_every_seed_get_example_parses(name):
    payload = SEEDS["get_examples"][name]
    task = make_provider(answer(payload)).fetch("MsBi1YsB0jLkkocYjD5f")
    # The GET answer carries no task id: the task is keyed by the id asked for.
    assert task.task_id == "MsBi1YsB0jLkkocYjD5f"
    assert task.upstream_status == payload["state"]
    assert task.task_type == payload["task_type"]
    assert task.created_at == datetime.fromtimestamp(payload["create_time"] / 1000, UTC)
    assert task.raw == payload
    nodes = payload["worker_node"]
    assert task.details["worker_nodes"] == (nodes if isinstance(nodes, list) else [nodes])
    if payload["state"] == "COMPLETED":
        assert task.state is TaskState.SUCCEEDED and task.terminal
        assert task.links["model_id"] == payload["model_id"]
        assert task.finished_at == task.updated_at
    else:
        assert task.state is TaskState.QUEUED and not task.terminal
        assert "model_id" not in task.links


def test_seed_search_response_parses_with_ids_from_hits():
    provider = make_provider(answer(SEEDS["search_response"]))
    page = provider.search_page('{"query": {"term": {"function_name": "KMEANS"}}}', 0, 10)
    assert page.total == 2
    assert [t.task_id for t in page.tasks] == ["_wnLJ38BvytMh9aUi-Ia", "wwRRLX8BydmmU1x6I-AI"]
    assert all(t.state is TaskState.SUCCEEDED for t in page.tasks)
    assert page.tasks[0].details["worker_nodes"] == ["jjqFrlW7QWmni1tRnb_7Dg"]


def test_seed_examples_match_the_shared_seed_documents():
    """The simulator serves the seed examples exactly as the documents write them."""
    import re
    from pathlib import Path

    seeds_dir = Path(__file__).resolve().parents[3] / "shared" / "seeds"
    if not seeds_dir.exists():
        pytest.skip("shared/seeds is not beside this checkout")
    documents = [
        json.loads(b)
        for f in sorted(seeds_dir.glob("00[01]_*.txt"))
        for b in re.findall(r"```json\n(\{.*?\})\n```", f.read_text(), re.S)
    ]
    ours = list(SEEDS["get_examples"].values()) + [SEEDS["get_example_2"], SEEDS["search_response"]]
    assert ours == documents


@pytest.mark.parametrize("word", list(STATUSES))
def test_every_state_word(word):
    task = make_provider(answer({"state": word, "task_type": "DEPLOY_MODEL"})).fetch("t")
    expected = {
        "CREATED": "queued",
        "RUNNING": "running",
        "CANCELLING": "running",
        "COMPLETED": "succeeded",
        "COMPLETED_WITH_ERROR": "partial",
        "FAILED": "failed",
        "CANCELLED": "cancelled",
        "EXPIRED": "expired",
        "UNREACHABLE": "unknown",
    }[word]
    assert task.state.value == expected
    assert task.terminal is (word not in ("CREATED", "RUNNING", "CANCELLING"))


@pytest.mark.parametrize(
    "task_type",
    [
        "TRAINING",
        "PREDICTION",
        "TRAINING_AND_PREDICTION",
        "EXECUTION",
        "UPLOAD_MODEL",
        "LOAD_MODEL",
        "REGISTER_MODEL",
        "DEPLOY_MODEL",
        "BATCH_INGEST",
        "BATCH_PREDICTION",
        "AGENT_EXECUTION",
    ],
)
def test_every_task_type_is_shown_as_it_came(task_type):
    assert (
        make_provider(answer({"state": "RUNNING", "task_type": task_type})).fetch("t").task_type
        == task_type
    )


def test_comma_joined_worker_nodes_from_old_clusters():
    task = make_provider(answer({"state": "RUNNING", "worker_node": "a, b,c"})).fetch("t")
    assert task.details["worker_nodes"] == ["a", "b", "c"]


def test_odd_field_types_are_shown_not_rejected():
    payload = {
        "state": "FAILED",
        "create_time": "yesterday",
        "error": {"node-1": "OOM"},
        "worker_node": 7,
    }
    task = make_provider(answer(payload)).fetch("t")
    assert task.created_at is None
    assert task.error == '{"node-1": "OOM"}'
    assert task.state is TaskState.FAILED


@pytest.mark.parametrize("payload", [[1, 2], {"task_type": "X"}, {"state": 5}, "text"])
def test_payload_without_a_state_is_a_bad_payload_kept_raw(payload):
    with pytest.raises(FetchError) as caught:
        make_provider(answer(payload)).fetch("t")
    assert caught.value.kind is FetchErrorKind.BAD_PAYLOAD
    assert caught.value.raw == payload


def test_not_found_envelope():
    body = {
        "error": {
            "root_cause": [{"type": "status_exception", "reason": "Failed to find task"}],
            "type": "status_exception",
            "reason": "Failed to find task",
        },
        "status": 404,
    }
    with pytest.raises(FetchError) as caught:
        make_provider(answer(body, 404)).fetch("t")
    assert caught.value.kind is FetchErrorKind.NOT_FOUND
    assert "Failed to find task" in caught.value.message


@pytest.mark.parametrize("body", [b"", b"Unauthorized", b"Authentication finally failed"])
def test_plain_text_401(body):
    def handler(request):
        return httpx.Response(401, content=body, headers={"WWW-Authenticate": "Basic"})

    with pytest.raises(FetchError) as caught:
        make_provider(handler).fetch("t")
    assert caught.value.kind is FetchErrorKind.UNAUTHORIZED
    assert "pw" not in caught.value.describe()


def test_requests_carry_basic_auth_tenant_and_encoded_ids():
    seen = []

    def handler(request):
        seen.append(request)
        return httpx.Response(200, json={"state": "RUNNING"})

    make_provider(handler, tenant_id="team-a").fetch("a/b c?%")
    request = seen[0]
    assert request.url.raw_path == b"/proxy/_plugins/_ml/tasks/a%2Fb%20c%3F%25"
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"admin:pw").decode()
    assert request.headers["x-tenant-id"] == "team-a"


def test_no_tenant_header_unless_configured():
    seen = []

    def handler(request):
        seen.append(request)
        return httpx.Response(200, json={"state": "RUNNING"})

    make_provider(handler).fetch("t")
    assert "x-tenant-id" not in seen[0].headers


def test_search_posts_query_dsl_with_paging():
    bodies = []

    def handler(request):
        bodies.append(json.loads(request.content))
        assert request.method == "POST" and request.url.path.endswith("/tasks/_search")
        return httpx.Response(
            200, json={"hits": {"total": {"value": 0, "relation": "eq"}, "hits": []}}
        )

    provider = make_provider(handler)
    provider.search_page("state:FAILED", 20, 10)
    provider.search_page(None, 0, 5)
    assert bodies[0]["query"] == {"query_string": {"query": "state:FAILED"}}
    assert (bodies[0]["from"], bodies[0]["size"]) == (20, 10)
    assert bodies[0]["sort"] == [{"create_time": {"order": "desc"}}]
    assert bodies[1]["query"] == {"match_all": {}}


def test_bad_json_query_is_refused():
    with pytest.raises(ValueError, match="not valid JSON"):
        OpenSearchMLProvider.parse_query("{nope")


def test_fetch_many_uses_one_ids_search():
    calls = []

    def handler(request):
        calls.append(request)
        body = json.loads(request.content)
        ids = body["query"]["ids"]["values"]
        hits = [
            {"_id": i, "_source": {"state": "RUNNING", "task_type": "DEPLOY_MODEL"}}
            for i in ids
            if i != "gone"
        ]
        return httpx.Response(200, json={"hits": {"total": {"value": len(hits)}, "hits": hits}})

    def get_handler(request):
        if request.method == "GET":
            return httpx.Response(
                404,
                json={
                    "error": {"reason": "Failed to find task", "type": "status_exception"},
                    "status": 404,
                },
            )
        return handler(request)

    results = make_provider(get_handler).fetch_many(["a", "b", "gone"])
    assert results["a"].state is TaskState.RUNNING and results["b"].task_id == "b"
    assert (
        isinstance(results["gone"], FetchError) and results["gone"].kind is FetchErrorKind.NOT_FOUND
    )
    assert len(calls) == 1


def test_transport_failures_become_fetch_errors():
    def timeout(request):
        raise httpx.ReadTimeout("slow", request=request)

    def refused(request):
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(FetchError) as caught:
        make_provider(timeout).fetch("t")
    assert caught.value.kind is FetchErrorKind.TIMEOUT
    with pytest.raises(FetchError) as caught:
        make_provider(refused).fetch("t")
    assert caught.value.kind is FetchErrorKind.NETWORK
