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


# -- remote batch jobs --------------------------------------------------------------------------

SAGEMAKER_JOB = {
    "TransformJobArn": "arn:aws:sagemaker:us-east-1:802041417063:transform-job/SM-batch-15",
    "TransformJobName": "SM-batch-15",
    "TransformJobStatus": "Failed",
    "FailureReason": "ClientError: See job logs for more information",
    "dlq": None,
}
BEDROCK_JOB = {
    "jobArn": "arn:aws:bedrock:us-east-1:802041417063:model-invocation-job/abc123xyz789",
    "jobName": "bedrock-batch",
    "status": "InProgress",
    "submitTime": "2026-12-01T10:00:00.000Z",
}
OPENAI_JOB = {
    "id": "batch_khFSJIzT0eev9PuxVDsIGxv6",
    "object": "batch",
    "status": "failed",
    "errors": {"object": "list", "data": [{"code": "invalid_json_line", "message": "Bad line"}]},
    "request_counts": {"total": 0, "completed": 0, "failed": 0},
}


@pytest.mark.parametrize(
    ("job", "state", "status", "job_id", "error"),
    [
        (SAGEMAKER_JOB, "FAILED", "Failed", SAGEMAKER_JOB["TransformJobArn"], "ClientError: See"),
        (BEDROCK_JOB, "RUNNING", "InProgress", BEDROCK_JOB["jobArn"], None),
        (OPENAI_JOB, "FAILED", "failed", "batch_khFSJIzT0eev9PuxVDsIGxv6", "Bad line"),
        ({"TransformJobArn": "arn:x", "dlq": None}, "RUNNING", None, "arn:x", None),
    ],
)
def test_remote_job_status_and_id_are_key_details(job, state, status, job_id, error):
    payload = {
        "model_id": "m",
        "task_type": "BATCH_PREDICTION",
        "function_name": "REMOTE",
        "state": state,
        "input_type": "REMOTE",
        "is_async": False,
        "remote_job": job,
    }
    task = make_provider(answer(payload)).fetch("t")
    assert task.details["remote_job"] == job
    assert task.details.get("remote_job_status") == status
    assert task.details["remote_job_id"] == job_id
    # The task's own error is empty when a remote job fails: the service's reason is shown.
    if error is None:
        assert task.error is None
    else:
        assert task.error.startswith(error)
    keys = OpenSearchMLProvider.spec.key_fields
    assert keys.index("remote_job_status") < keys.index("worker_nodes")


def test_odd_remote_jobs_are_kept_and_add_nothing():
    for job in ("text", ["a"], {"status": 5, "id": {"x": 1}}):
        task = make_provider(answer({"state": "RUNNING", "remote_job": job})).fetch("t")
        assert "remote_job_status" not in task.details and "remote_job_id" not in task.details


# -- importing with search_after ----------------------------------------------------------------


def hit(task_id, sort, state="COMPLETED"):
    return {"_id": task_id, "_source": {"state": state}, "sort": sort}


def paged(pages):
    """A handler answering each search with the next list of hits; keeps the bodies sent."""
    bodies = []

    def handler(request):
        body = json.loads(request.content)
        bodies.append(body)
        answer_ = pages[len(bodies) - 1]
        if isinstance(answer_, httpx.Response):
            return answer_
        return httpx.Response(200, json={"hits": {"hits": answer_}})

    return handler, bodies


def test_search_resumes_each_page_after_the_last_hits_sort_values(monkeypatch):
    monkeypatch.setattr("webapp.providers.opensearch_ml.IMPORT_PAGE_SIZE", 2)
    handler, bodies = paged(
        [
            [hit("a", [30, "a"]), hit("b", [20, "b"])],
            [hit("c", [20, "c"]), hit("d", [10, "d"])],
            [hit("e", [5, "e"])],
        ]
    )
    found = [t.task_id for t in make_provider(handler).search("state:COMPLETED")]
    assert found == ["a", "b", "c", "d", "e"]
    assert [b.get("search_after") for b in bodies] == [None, [20, "b"], [10, "d"]]
    for body in bodies:
        assert body["sort"] == [{"create_time": {"order": "desc"}}, {"_id": {"order": "asc"}}]
        assert body["size"] == 2 and "from" not in body and body["track_total_hits"] is False
        assert body["query"] == {"query_string": {"query": "state:COMPLETED"}}


def test_search_asks_for_no_more_than_its_limit(monkeypatch):
    monkeypatch.setattr("webapp.providers.opensearch_ml.IMPORT_PAGE_SIZE", 2)
    handler, bodies = paged([[hit("a", [3, "a"]), hit("b", [2, "b"])], [hit("c", [1, "c"])]])
    assert [t.task_id for t in make_provider(handler).search(None, limit=3)] == ["a", "b", "c"]
    assert [b["size"] for b in bodies] == [2, 1]


def test_hits_without_sort_values_are_a_bad_payload(monkeypatch):
    monkeypatch.setattr("webapp.providers.opensearch_ml.IMPORT_PAGE_SIZE", 1)
    handler, _ = paged([[{"_id": "a", "_source": {"state": "RUNNING"}}]])
    with pytest.raises(FetchError) as caught:
        list(make_provider(handler).search(None))
    assert caught.value.kind is FetchErrorKind.BAD_PAYLOAD


ID_SORT_REFUSAL = httpx.Response(
    400,
    json={
        "error": {
            "root_cause": [
                {
                    "type": "illegal_argument_exception",
                    "reason": "Fielddata access on the _id field is disallowed, you can "
                    "re-enable it by updating the dynamic cluster setting: "
                    "indices.id_field_data.enabled",
                }
            ],
            "type": "search_phase_execution_exception",
            "reason": "all shards failed",
        },
        "status": 400,
    },
)


def test_without_id_sorting_each_pages_last_millisecond_is_fetched_whole(monkeypatch):
    monkeypatch.setattr("webapp.providers.opensearch_ml.IMPORT_PAGE_SIZE", 3)
    missing = -(2**63)
    handler, bodies = paged(
        [
            ID_SORT_REFUSAL,
            [hit("a", [30]), hit("b", [20]), hit("c", [20])],
            [hit("b", [20]), hit("c", [20]), hit("d", [20])],  # every task of 20
            [hit("e", [10]), hit("f", [missing]), hit("g", [missing])],
            [hit("f", [missing]), hit("g", [missing])],
            [],
        ]
    )
    found = [t.task_id for t in make_provider(handler).search(None)]
    assert found == ["a", "b", "c", "d", "e", "f", "g"]
    by_time = [{"create_time": {"order": "desc"}}]
    assert [b["sort"] for b in bodies[1:]] == [by_time] * 5
    assert bodies[2]["query"] == {
        "bool": {"filter": [{"match_all": {}}, {"term": {"create_time": 20}}]}
    }
    assert bodies[2]["size"] == 10_000 and "search_after" not in bodies[2]
    assert bodies[3]["search_after"] == [20]
    assert bodies[4]["query"]["bool"]["filter"][1] == {
        "bool": {"must_not": [{"exists": {"field": "create_time"}}]}
    }
    assert bodies[5]["search_after"] == [missing]


def test_a_search_that_failed_on_every_shard_says_why():
    reason = "Result window is too large, from + size must be less than or equal to: [10000]"
    body = {
        "error": {
            "root_cause": [{"type": "illegal_argument_exception", "reason": reason}],
            "type": "search_phase_execution_exception",
            "reason": "all shards failed",
        },
        "status": 400,
    }
    with pytest.raises(FetchError) as caught:
        make_provider(answer(body, 400)).search_page(None, 9_995, 10)
    assert caught.value.message == (
        f"all shards failed (search_phase_execution_exception): {reason} "
        "(illegal_argument_exception)"
    )


def test_a_preview_page_asks_for_an_exact_total():
    handler, bodies = paged([[]])
    make_provider(handler).search_page(None, 0, 20)
    assert bodies[0]["track_total_hits"] is True and bodies[0]["from"] == 0
