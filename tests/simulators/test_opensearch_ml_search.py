"""The OpenSearch ML Commons simulator's ``_search`` over real loopback HTTP: every query type it
evaluates, as the task index's mapping makes a cluster evaluate it, and the errors a cluster
gives instead of hits (an unknown query, a result window past 10,000, an impossible sort)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from webapp.simulators import SIMULATORS
from webapp.simulators import SimulatorSuite
from webapp.simulators.core import SimulatorState
from webapp.simulators.server import ServerThread

ML = SIMULATORS["opensearch-ml"]
LOGIN = (ML.DEMO_CREDENTIALS["username"], ML.DEMO_CREDENTIALS["password"])
T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z

DOCS: dict[str, dict[str, Any]] = {
    "t-kmeans": {
        "model_id": "m-1",
        "task_type": "TRAINING",
        "function_name": "KMEANS",
        "state": "COMPLETED",
        "input_type": "SEARCH_QUERY",
        "worker_node": ["node-1"],
        "create_time": T0,
        "last_update_time": T0 + 5_000,
        "is_async": True,
    },
    "t-failed": {
        "task_type": "DEPLOY_MODEL",
        "function_name": "TEXT_EMBEDDING",
        "state": "FAILED",
        "worker_node": ["node-1", "node-2"],
        "create_time": T0 + 100_000,
        "last_update_time": T0 + 160_000,
        "error": "Memory Circuit Breaker is open, please check your resources!",
        "is_async": True,
    },
    "t-register": {
        "model_id": "m-2",
        "task_type": "REGISTER_MODEL",
        "function_name": "TEXT_EMBEDDING",
        "state": "COMPLETED",
        "worker_node": "node-3",
        "create_time": T0 + 200_000,
        "last_update_time": T0 + 260_000,
        "progress": 1.0,
        "is_async": True,
    },
    "t-running": {
        "task_type": "DEPLOY_MODEL",
        "function_name": "SPARSE_ENCODING",
        "state": "RUNNING",
        "worker_node": ["node-2"],
        "create_time": T0 + 300_000,
        "last_update_time": T0 + 300_500,
        "progress": 0.4,
        "is_async": False,
    },
    "t-batch": {
        "model_id": "m-3",
        "task_type": "BATCH_PREDICTION",
        "function_name": "REMOTE",
        "state": "RUNNING",
        "input_type": "REMOTE",
        "worker_node": ["node-1"],
        "create_time": T0 + 400_000,
        "last_update_time": T0 + 400_000,
        "is_async": False,
        "remote_job": {
            "TransformJobArn": "arn:aws:sagemaker:us-east-1:1:transform-job/sm-1",
            "TransformJobStatus": "InProgress",
            "TransformInput": {"ContentType": "application/json", "SplitType": "Line"},
        },
    },
    "t-partial": {
        "task_type": "DEPLOY_MODEL",
        "function_name": "TEXT_EMBEDDING",
        "state": "COMPLETED_WITH_ERROR",
        "worker_node": ["node-1", "node-3"],
        "create_time": T0 + 400_000,
        "last_update_time": T0 + 450_000,
        "error": '{"node-3":"Model not found in local cache"}',
        "is_async": True,
    },
}
ALL = set(DOCS)


class Cluster:
    """The simulator's ``_search`` over HTTP."""

    def __init__(self, root: str) -> None:
        self.http = httpx.Client(base_url=root, auth=LOGIN, timeout=10)

    def search(self, body: Any, **kwargs: Any) -> httpx.Response:
        return self.http.post("/_plugins/_ml/tasks/_search", json=body, **kwargs)

    def ids(self, body: dict[str, Any]) -> list[str]:
        answer = self.search({"size": 100, **body})
        assert answer.status_code == 200, answer.text
        return [hit["_id"] for hit in answer.json()["hits"]["hits"]]

    def matching(self, query: dict[str, Any]) -> set[str]:
        return set(self.ids({"query": query}))


@pytest.fixture
def state(suite: SimulatorSuite) -> SimulatorState:
    state = suite.states["opensearch-ml"]
    for task_id, doc in DOCS.items():
        state.add_fixed(task_id, doc, "state")
    return state


@pytest.fixture
def cluster(sim_server: ServerThread, suite: SimulatorSuite, state: SimulatorState) -> Iterator:
    cluster = Cluster(suite.base_url(sim_server.url, "opensearch-ml"))
    yield cluster
    cluster.http.close()


QUERIES: list[tuple[str, dict[str, Any], set[str]]] = [
    ("match_all", {"match_all": {}}, ALL),
    ("match_none", {"match_none": {}}, set()),
    ("term keyword", {"term": {"state": "COMPLETED"}}, {"t-kmeans", "t-register"}),
    ("term keyword is case-sensitive", {"term": {"state": "completed"}}, set()),
    (
        "term case_insensitive",
        {"term": {"state": {"value": "completed", "case_insensitive": True}}},
        {"t-kmeans", "t-register"},
    ),
    ("term on text: one indexed token", {"term": {"error": "memory"}}, {"t-failed"}),
    ("term on text is not analysed", {"term": {"error": "Memory"}}, set()),
    ("term boolean", {"term": {"is_async": False}}, {"t-running", "t-batch"}),
    ("term date", {"term": {"create_time": T0 + 400_000}}, {"t-batch", "t-partial"}),
    ("term multi-valued", {"term": {"worker_node": "node-3"}}, {"t-register", "t-partial"}),
    (
        "term on a flat_object leaf",
        {"term": {"remote_job.TransformInput.SplitType": "Line"}},
        {"t-batch"},
    ),
    ("term on the id", {"term": {"_id": "t-kmeans"}}, {"t-kmeans"}),
    ("task_id is not a field of the index", {"term": {"task_id": "t-kmeans"}}, set()),
    (
        "terms",
        {"terms": {"state": ["FAILED", "RUNNING"]}},
        {"t-failed", "t-running", "t-batch"},
    ),
    ("ids", {"ids": {"values": ["t-running", "nope"]}}, {"t-running"}),
    ("match text: any token", {"match": {"error": "circuit CACHE"}}, {"t-failed", "t-partial"}),
    (
        "match text with operator and",
        {"match": {"error": {"query": "circuit cache", "operator": "and"}}},
        set(),
    ),
    (
        "match text with minimum_should_match",
        {"match": {"error": {"query": "memory breaker cache", "minimum_should_match": 2}}},
        {"t-failed"},
    ),
    ("match keyword: the whole value", {"match": {"function_name": "KMEANS"}}, {"t-kmeans"}),
    ("match keyword is not lowercased", {"match": {"function_name": "kmeans"}}, set()),
    ("match_phrase in order", {"match_phrase": {"error": "circuit breaker is open"}}, {"t-failed"}),
    ("match_phrase out of order", {"match_phrase": {"error": "open breaker"}}, set()),
    ("range float gt", {"range": {"progress": {"gt": 0.4}}}, {"t-register"}),
    ("range float gte", {"range": {"progress": {"gte": 0.4}}}, {"t-register", "t-running"}),
    ("range float lt", {"range": {"progress": {"lt": 0.5}}}, {"t-running"}),
    (
        "range epoch ms",
        {"range": {"create_time": {"gte": T0 + 200_000, "lt": T0 + 400_000}}},
        {"t-register", "t-running"},
    ),
    (
        "range epoch ms lte and gt",
        {"range": {"last_update_time": {"gt": T0 + 5_000, "lte": T0 + 300_500}}},
        {"t-failed", "t-register", "t-running"},
    ),
    (
        "range strict_date_time",
        {"range": {"create_time": {"lte": "2023-11-14T22:18:20.000Z"}}},
        {"t-kmeans", "t-failed", "t-register", "t-running"},
    ),
    (
        "range epoch ms as a string",
        {"range": {"create_time": {"gt": str(T0 + 300_000)}}},
        {"t-batch", "t-partial"},
    ),
    ("range with date math, clock now", {"range": {"create_time": {"gte": "now-1d"}}}, set()),
    ("range with date math far back", {"range": {"create_time": {"gte": "now-1000d/d"}}}, ALL),
    ("exists", {"exists": {"field": "progress"}}, {"t-register", "t-running"}),
    ("exists absent everywhere", {"exists": {"field": "output_index"}}, set()),
    ("exists an object", {"exists": {"field": "remote_job"}}, {"t-batch"}),
    (
        "exists a flat_object leaf",
        {"exists": {"field": "remote_job.TransformJobStatus"}},
        {"t-batch"},
    ),
    ("prefix", {"prefix": {"task_type": "DEPLOY"}}, {"t-failed", "t-running", "t-partial"}),
    ("prefix is case-sensitive", {"prefix": {"task_type": "deploy"}}, set()),
    (
        "prefix case_insensitive",
        {"prefix": {"task_type": {"value": "deploy", "case_insensitive": True}}},
        {"t-failed", "t-running", "t-partial"},
    ),
    ("prefix on text tokens", {"prefix": {"error": "circ"}}, {"t-failed"}),
    (
        "wildcard star",
        {"wildcard": {"task_type": "*_MODEL"}},
        {"t-failed", "t-register", "t-running", "t-partial"},
    ),
    (
        "wildcard question mark",
        {"wildcard": {"model_id": {"value": "m-?"}}},
        {"t-kmeans", "t-register", "t-batch"},
    ),
    (
        "wildcard on a flat_object leaf",
        {"wildcard": {"remote_job.TransformJobArn": "*/sm-?"}},
        {"t-batch"},
    ),
    (
        "query_string field",
        {"query_string": {"query": "state:COMPLETED"}},
        {"t-kmeans", "t-register"},
    ),
    (
        "query_string default OR",
        {"query_string": {"query": "state:RUNNING function_name:KMEANS"}},
        {"t-running", "t-batch", "t-kmeans"},
    ),
    (
        "query_string AND",
        {"query_string": {"query": "state:RUNNING AND function_name:REMOTE"}},
        {"t-batch"},
    ),
    (
        "query_string NOT",
        {"query_string": {"query": "state:RUNNING AND NOT function_name:REMOTE"}},
        {"t-running"},
    ),
    (
        "query_string default_operator AND",
        {"query_string": {"query": "state:RUNNING is_async:false", "default_operator": "AND"}},
        {"t-running", "t-batch"},
    ),
    ("query_string phrase", {"query_string": {"query": 'error:"breaker is open"'}}, {"t-failed"}),
    (
        "query_string wildcard",
        {"query_string": {"query": "task_type:DEPLOY*"}},
        {"t-failed", "t-running", "t-partial"},
    ),
    ("query_string any field", {"query_string": {"query": "KMEANS"}}, {"t-kmeans"}),
    (
        "bool must and must_not",
        {
            "bool": {
                "must": [{"term": {"function_name": "TEXT_EMBEDDING"}}],
                "must_not": [{"term": {"state": "FAILED"}}],
            }
        },
        {"t-register", "t-partial"},
    ),
    (
        "bool filter makes should optional",
        {
            "bool": {
                "filter": [{"range": {"create_time": {"gte": T0 + 100_000}}}],
                "should": [{"term": {"state": "FAILED"}}],
            }
        },
        ALL - {"t-kmeans"},
    ),
    (
        "bool should alone needs one",
        {"bool": {"should": [{"term": {"state": "FAILED"}}, {"term": {"state": "RUNNING"}}]}},
        {"t-failed", "t-running", "t-batch"},
    ),
    (
        "bool minimum_should_match 2",
        {
            "bool": {
                "should": [
                    {"term": {"function_name": "TEXT_EMBEDDING"}},
                    {"term": {"state": "COMPLETED"}},
                    {"exists": {"field": "error"}},
                ],
                "minimum_should_match": 2,
            }
        },
        {"t-failed", "t-register", "t-partial"},
    ),
    (
        "bool minimum_should_match percentage",
        {
            "bool": {
                "must": [{"exists": {"field": "worker_node"}}],
                "should": [{"term": {"state": "COMPLETED"}}, {"term": {"input_type": "REMOTE"}}],
                "minimum_should_match": "50%",
            }
        },
        {"t-kmeans", "t-register", "t-batch"},
    ),
    (
        "bool must_not alone",
        {"bool": {"must_not": {"exists": {"field": "model_id"}}}},
        {"t-failed", "t-running", "t-partial"},
    ),
    (
        "bool nested in bool",
        {
            "bool": {
                "filter": [
                    {
                        "bool": {
                            "should": [
                                {"prefix": {"task_type": "REG"}},
                                {"match": {"error": "cache"}},
                            ]
                        }
                    },
                    {"range": {"create_time": {"gt": T0 + 200_000}}},
                ]
            }
        },
        {"t-partial"},
    ),
    (
        "constant_score",
        {"constant_score": {"filter": {"term": {"input_type": "REMOTE"}}, "boost": 2}},
        {"t-batch"},
    ),
]


@pytest.mark.parametrize(
    ("query", "expected"), [(q, e) for _, q, e in QUERIES], ids=[name for name, _, _ in QUERIES]
)
def test_every_query_type(cluster: Cluster, query: dict[str, Any], expected: set[str]) -> None:
    assert cluster.matching(query) == expected


def test_the_body_can_come_in_the_source_parameter_of_a_get(cluster: Cluster) -> None:
    answer = cluster.http.get(
        "/_plugins/_ml/tasks/_search",
        params={"source": '{"query": {"term": {"state": "FAILED"}}}'},
    )
    assert [hit["_id"] for hit in answer.json()["hits"]["hits"]] == ["t-failed"]


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ({"fuzzy": {"state": "COMPLETD"}}, "unknown query [fuzzy]"),
        ({"bool": {"must": [{"nested": {"path": "user", "query": {}}}]}}, "unknown query [nested]"),
        (
            {"term": {"state": "A", "function_name": "B"}},
            "[term] query doesn't support multiple fields",
        ),
        ({"range": {"create_time": {"after": 1}}}, "[range] query does not support [after]"),
        ({"term": {"state": "A"}, "match": {"state": "B"}}, "[term] malformed query"),
        ({}, "query malformed, empty clause found"),
    ],
)
def test_what_the_cluster_cannot_parse_is_a_400_parsing_exception(
    cluster: Cluster, query: dict[str, Any], reason: str
) -> None:
    answer = cluster.search({"query": query})
    assert answer.status_code == 400
    body = answer.json()
    assert body["status"] == 400
    assert body["error"]["type"] == "parsing_exception"
    assert body["error"]["reason"].startswith(reason)
    root = body["error"]["root_cause"][0]
    assert root["type"] == "parsing_exception" and root["reason"] == body["error"]["reason"]
    assert {"line", "col"} <= set(root)


def test_an_unknown_query_names_the_unknown_field(cluster: Cluster) -> None:
    raw = '{\n  "query": {"regexp": {"state": "COMP.*"}}\n}'
    answer = cluster.http.post(
        "/_plugins/_ml/tasks/_search", content=raw, headers={"Content-Type": "application/json"}
    )
    error = answer.json()["error"]
    assert (answer.status_code, error["reason"], error["line"]) == (
        400,
        "unknown query [regexp]",
        2,
    )
    assert error["caused_by"] == {
        "type": "named_object_not_found_exception",
        "reason": f"[2:{error['col']}] unknown field [regexp]",
    }


@pytest.mark.parametrize(
    ("body", "error_type"),
    [
        ({"aggs": {"states": {"terms": {"field": "state"}}}}, "parsing_exception"),
        ({"highlight": {"fields": {"error": {}}}}, "parsing_exception"),
        ({"size": -1}, "illegal_argument_exception"),
        ({"from": -5}, "illegal_argument_exception"),
    ],
)
def test_body_keys_it_does_not_evaluate_are_refused(
    cluster: Cluster, body: dict[str, Any], error_type: str
) -> None:
    answer = cluster.search(body)
    assert answer.status_code == 400 and answer.json()["error"]["type"] == error_type


@pytest.mark.parametrize(
    ("query", "root_type", "reason"),
    [
        (
            {"prefix": {"create_time": "17"}},
            "query_shard_exception",
            "Can only use prefix queries on keyword, text and wildcard fields - not on "
            "[create_time] which is of type [date]",
        ),
        (
            {"wildcard": {"progress": "0.*"}},
            "query_shard_exception",
            "Can only use wildcard queries on keyword, text and wildcard fields - not on "
            "[progress] which is of type [float]",
        ),
        (
            {"range": {"create_time": {"gte": "2023-11-14"}}},
            "parse_exception",
            "failed to parse date field [2023-11-14] with format [strict_date_time||epoch_millis]",
        ),
    ],
)
def test_what_a_shard_rejects_fails_every_shard(
    cluster: Cluster, query: dict[str, Any], root_type: str, reason: str
) -> None:
    answer = cluster.search({"query": query})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert (error["type"], error["reason"]) == (
        "search_phase_execution_exception",
        "all shards failed",
    )
    assert error["root_cause"][0]["type"] == root_type
    assert error["root_cause"][0]["reason"].startswith(reason)


# -- paging, sorting, search_after ------------------------------------------------------------


def test_from_plus_size_past_ten_thousand_is_a_400_as_on_a_cluster(cluster: Cluster) -> None:
    assert cluster.search({"from": 9_990, "size": 10}).status_code == 200
    assert cluster.search({"size": 10_000}).status_code == 200
    answer = cluster.search({"from": 9_995, "size": 10})
    assert answer.status_code == 400
    body = answer.json()
    reason = (
        "Result window is too large, from + size must be less than or equal to: [10000] but "
        "was [10005]. See the scroll api for a more efficient way to request large data sets. "
        "This limit can be set by changing the [index.max_result_window] index level setting."
    )
    assert body == {
        "error": {
            "root_cause": [{"type": "illegal_argument_exception", "reason": reason}],
            "type": "search_phase_execution_exception",
            "reason": "all shards failed",
            "phase": "query",
            "grouped": True,
            "failed_shards": [
                {
                    "shard": 0,
                    "index": ".plugins-ml-task",
                    "node": body["error"]["failed_shards"][0]["node"],
                    "reason": {"type": "illegal_argument_exception", "reason": reason},
                }
            ],
            "caused_by": {"type": "illegal_argument_exception", "reason": reason},
        },
        "status": 400,
    }


def test_sort_on_times_with_an_id_tiebreaker(cluster: Cluster) -> None:
    by_create = [{"create_time": {"order": "desc"}}, {"_id": "asc"}]
    assert cluster.ids({"sort": by_create}) == [
        "t-batch", "t-partial", "t-running", "t-register", "t-failed", "t-kmeans",
    ]  # fmt: skip
    by_update = ["last_update_time", {"_id": {"order": "desc"}}]
    assert cluster.ids({"sort": by_update})[:2] == ["t-kmeans", "t-failed"]
    hit = cluster.search({"sort": by_create, "size": 1}).json()["hits"]["hits"][0]
    assert hit["sort"] == [T0 + 400_000, "t-batch"] and hit["_score"] is None


def test_a_multi_valued_and_a_missing_field_sort_as_lucene_sorts_them(cluster: Cluster) -> None:
    # worker_node: the smallest value ascending, the largest descending.
    assert cluster.ids({"sort": [{"worker_node": "asc"}, "_id"]})[:3] == [
        "t-batch", "t-failed", "t-kmeans",
    ]  # fmt: skip
    hits = cluster.search({"sort": [{"progress": "desc"}, "_id"]}).json()["hits"]["hits"]
    assert [h["_id"] for h in hits[:2]] == ["t-register", "t-running"]
    # Missing values go last, with the sentinel search_after can name.
    assert hits[-1]["sort"] == ["-Infinity", "t-partial"]
    first = cluster.ids({"sort": [{"progress": {"order": "asc", "missing": "_first"}}, "_id"]})
    assert first[-2:] == ["t-running", "t-register"]


@pytest.mark.parametrize(
    ("sort", "reason"),
    [
        ("error", "Text fields are not optimised for operations that require per-document"),
        ("task_id", "No mapping found for [task_id] in order to sort on"),
    ],
)
def test_an_impossible_sort_fails(cluster: Cluster, sort: str, reason: str) -> None:
    answer = cluster.search({"sort": [sort]})
    assert answer.status_code == 400
    assert answer.json()["error"]["root_cause"][0]["reason"].startswith(reason)


def test_sorting_on_id_needs_id_field_data(cluster: Cluster, suite: SimulatorSuite) -> None:
    suite.apps["opensearch-ml"].config["ML_ID_FIELD_DATA"] = False
    answer = cluster.search({"sort": [{"create_time": "desc"}, {"_id": "asc"}]})
    assert answer.status_code == 400
    assert answer.json()["error"]["root_cause"][0]["reason"] == (
        "Fielddata access on the _id field is disallowed, you can re-enable it by updating "
        "the dynamic cluster setting: indices.id_field_data.enabled"
    )
    assert cluster.search({"sort": [{"create_time": "desc"}]}).status_code == 200


def test_search_after_resumes_strictly_after_the_sort_values(cluster: Cluster) -> None:
    sort = [{"create_time": "desc"}, {"_id": "asc"}]
    seen: list[str] = []
    after = None
    while True:
        body: dict[str, Any] = {"size": 2, "sort": sort}
        if after is not None:
            body["search_after"] = after
        hits = cluster.search(body).json()["hits"]["hits"]
        seen += [hit["_id"] for hit in hits]
        if len(hits) < 2:
            break
        after = hits[-1]["sort"]
    assert seen == cluster.ids({"sort": sort})
    # Equal sort values are skipped, not repeated: without the tiebreaker, one of the two tasks
    # created in the same millisecond is lost to the next page.
    page = cluster.search({"size": 1, "sort": [{"create_time": "desc"}]}).json()["hits"]["hits"]
    rest = cluster.ids({"sort": [{"create_time": "desc"}], "search_after": page[0]["sort"]})
    assert len(rest) == len(DOCS) - 2


FROM_WITH_AFTER = "`from` parameter must be set to 0 when `search_after` is used."
AFTER_MISUSE = [
    ({"sort": ["create_time"], "search_after": [1, "x"]}, 400, "search_after has 2 value(s)"),
    ({"search_after": [1]}, 400, "Sort must contain at least one field."),
    ({"sort": ["create_time"], "search_after": [1], "from": 2}, 500, FROM_WITH_AFTER),
    ({"sort": ["create_time"], "search_after": ["soon"]}, 400, "Failed to parse search_after"),
]


@pytest.mark.parametrize(("body", "status", "reason"), AFTER_MISUSE)
def test_search_after_misuse(
    cluster: Cluster, body: dict[str, Any], status: int, reason: str
) -> None:
    answer = cluster.search(body)
    assert answer.status_code == status
    assert answer.json()["error"]["root_cause"][0]["reason"].startswith(reason)


def test_total_is_exact_to_ten_thousand_unless_asked(
    cluster: Cluster, state: SimulatorState
) -> None:
    for i in range(10_001 - len(DOCS)):
        state.add_fixed(f"bulk-{i:05d}", {"state": "COMPLETED", "create_time": i}, "state")
    assert cluster.search({"size": 0}).json()["hits"]["total"] == {
        "value": 10_000,
        "relation": "gte",
    }
    exact = cluster.search({"size": 0, "track_total_hits": True}).json()["hits"]["total"]
    assert exact == {"value": 10_001, "relation": "eq"}
    assert "total" not in cluster.search({"size": 0, "track_total_hits": False}).json()["hits"]


# -- _source -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (True, DOCS["t-batch"]),
        (False, DOCS["t-batch"]),  # ML Commons turns fetching back on
        ("state", {"state": "RUNNING"}),
        (["state", "model_id"], {"model_id": "m-3", "state": "RUNNING"}),
        (["*_time"], {"create_time": T0 + 400_000, "last_update_time": T0 + 400_000}),
        (
            "remote_job.TransformJob*",
            {
                "remote_job": {
                    "TransformJobArn": "arn:aws:sagemaker:us-east-1:1:transform-job/sm-1",
                    "TransformJobStatus": "InProgress",
                }
            },
        ),
        (
            {"includes": ["remote_job"], "excludes": ["remote_job.TransformInput"]},
            {
                "remote_job": {
                    "TransformJobArn": "arn:aws:sagemaker:us-east-1:1:transform-job/sm-1",
                    "TransformJobStatus": "InProgress",
                }
            },
        ),
        (
            {"excludes": ["remote_job", "worker_node", "*_time", "is_async"]},
            {
                "model_id": "m-3",
                "task_type": "BATCH_PREDICTION",
                "function_name": "REMOTE",
                "state": "RUNNING",
                "input_type": "REMOTE",
            },
        ),
        ({"include": "state", "exclude": "state"}, {}),
        ("nothing.here", {}),
    ],
)
def test_source_filtering(cluster: Cluster, source: Any, expected: dict[str, Any]) -> None:
    answer = cluster.search({"query": {"ids": {"values": ["t-batch"]}}, "_source": source})
    assert answer.status_code == 200, answer.text
    assert answer.json()["hits"]["hits"][0]["_source"] == expected


def test_source_of_the_wrong_type_is_refused(cluster: Cluster) -> None:
    answer = cluster.search({"_source": 5})
    assert answer.status_code == 400 and answer.json()["error"]["type"] == "parsing_exception"
