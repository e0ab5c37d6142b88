"""What the current Mixpeek API does (python SDK 1.3.783, OpenAPI 0.82; PROVIDERS.md part 3),
over real loopback HTTP against the simulator: every status and task type in list filters, the
three ways to page, ``include_total`` in the body or the query, free-text search over
``task_id``/``task_type``/``status``, filters that select by ``task_id``, 422s in the
``ErrorResponse`` envelope, the queue of a QUEUED task, and the provider's batched refresh."""

from __future__ import annotations

import random
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from webapp.domain import FetchError
from webapp.domain import FetchErrorKind
from webapp.domain import TaskState
from webapp.providers import PROVIDERS
from webapp.providers.mixpeek import STATUSES
from webapp.providers.mixpeek import MixpeekProvider
from webapp.simulators import SimulatorSuite
from webapp.simulators import mixpeek as sim
from webapp.simulators.core import Fault
from webapp.simulators.mixpeek_enums import BODY_KEYS
from webapp.simulators.mixpeek_enums import STATUS_WORDS
from webapp.simulators.mixpeek_enums import TASK_TYPES

#: ``TaskType`` of the python SDK 1.3.783, beyond the ones the seed document lists.
NEWER_TASK_TYPES = (
    "api_namespaces_snapshot_create",
    "api_namespaces_snapshot_restore",
    "api_collections_documents_bulk_update",
    "api_collections_documents_bulk_delete",
    "api_collections_reembed",
    "api_manifest_apply",
    "api_retrievers_execute",
    "converted_video",
    "model_custom",
)


@pytest.fixture
def state(suite: SimulatorSuite) -> Any:
    return suite.states["mixpeek"]


@pytest.fixture
def http(sim_server: Any) -> Iterator[httpx.Client]:
    """A plain client on the simulator, with the demo key."""
    base = SimulatorSuite.base_url(sim_server.url, "mixpeek")
    headers = {"Authorization": f"Bearer {sim.DEMO_CREDENTIALS['api_key']}"}
    with httpx.Client(base_url=base, headers=headers) as client:
        yield client


@pytest.fixture
def provider(make_source: Callable[..., Any]) -> Iterator[MixpeekProvider]:
    provider = PROVIDERS["mixpeek"].create(make_source("mixpeek"))
    assert isinstance(provider, MixpeekProvider)
    yield provider
    provider.close()


def add(state: Any, task_id: str, status: str, **fields: Any) -> Any:
    return state.add(task_id, [(status, None)], fields={"task_type": "thumbnail", **fields})


def listed(http: httpx.Client, body: dict[str, Any] | None = None, **params: Any) -> Any:
    response = http.post("/v1/tasks/list", params=params, json=body or {})
    assert response.status_code == 200, response.text
    return response.json()


def ids(answer: dict[str, Any]) -> list[str]:
    return [item["task_id"] for item in answer["results"]]


def refused(http: httpx.Client, body: Any = None, **params: Any) -> dict[str, Any]:
    """A 422 in the ``ErrorResponse`` envelope; its ``error`` object."""
    response = http.post("/v1/tasks/list", params=params, json=body)
    assert response.status_code == 422, response.text
    answer = response.json()
    assert answer["success"] is False and answer["status"] == 422
    assert "detail" not in answer  # not FastAPI's HTTPValidationError: "not sent by this API"
    assert answer["error"]["type"] == "ValidationError"
    error: dict[str, Any] = answer["error"]
    return error


# -- the enums ----------------------------------------------------------------------------------


def test_the_simulator_knows_the_current_enums() -> None:
    assert len(STATUS_WORDS) == 16
    assert {"QUEUED", "INTERRUPTED", "DEACTIVATED"} <= set(STATUS_WORDS)
    assert len(TASK_TYPES) == len(set(TASK_TYPES)) == 38
    assert set(NEWER_TASK_TYPES) <= set(TASK_TYPES)
    assert set(sim.seed_examples()["task_types"]) <= set(TASK_TYPES)


@pytest.mark.parametrize("word", STATUS_WORDS)
def test_every_status_filters_the_list(
    http: httpx.Client, state: Any, provider: MixpeekProvider, word: str
) -> None:
    add(state, "wanted", word)
    add(state, "other", "COMPLETED" if word != "COMPLETED" else "FAILED")
    assert ids(listed(http, {"status": word})) == ["wanted"]
    # And the provider maps what it serves.
    fetched = provider.fetch("wanted")
    assert fetched.upstream_status == word
    assert fetched.state is STATUSES[word].state


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_every_task_type_filters_the_list(http: httpx.Client, state: Any, task_type: str) -> None:
    add(state, "wanted", "PENDING", task_type=task_type)
    add(
        state,
        "other",
        "PENDING",
        task_type="thumbnail" if task_type != "thumbnail" else "materialize",
    )
    assert ids(listed(http, {"task_type": task_type})) == ["wanted"]
    # The docs' examples write the enum's upper-case name.
    assert ids(listed(http, {"task_type": task_type.upper()})) == ["wanted"]


def test_an_unknown_status_or_type_is_a_422_naming_the_allowed_words(http: httpx.Client) -> None:
    error = refused(http, {"status": "DONE", "task_type": "api_nothing"})
    problems = error["details"]["validation_errors"]
    assert [p["location"] for p in problems] == [["body", "status"], ["body", "task_type"]]
    assert all(p["type"] == "enum" for p in problems)
    assert "'QUEUED'" in problems[0]["message"] and "'DEACTIVATED'" in problems[0]["message"]
    assert "'model_custom'" in problems[1]["message"]


# -- paging -------------------------------------------------------------------------------------


@pytest.fixture
def twelve(state: Any, clock: Any) -> list[str]:
    """Twelve tasks made a second apart: the list's default order is by creation."""
    made = []
    for number in range(12):
        made.append(add(state, f"t{number:02d}", "PENDING").task_id)
        clock.advance(1)
    return made


def test_limit_and_offset(http: httpx.Client, twelve: list[str]) -> None:
    answer = listed(http, limit=5, offset=5)
    assert ids(answer) == twelve[5:10]
    assert answer["pagination"]["page"] == 2 and answer["pagination"]["page_size"] == 5
    assert answer["pagination"]["total"] is None  # only counted when asked


def test_page_and_page_size(http: httpx.Client, twelve: list[str]) -> None:
    answer = listed(http, page=3, page_size=5, include_total="true")
    assert ids(answer) == twelve[10:]
    pagination = answer["pagination"]
    assert (pagination["page"], pagination["page_size"]) == (3, 5)
    assert (pagination["total"], pagination["total_pages"]) == (12, 3)
    assert pagination["next_cursor"] is None
    assert ids(listed(http, page=1, page_size=4)) == twelve[:4]


@pytest.mark.parametrize("spelling", ["cursor", "next_cursor", "after"])
def test_cursor_paging_in_each_spelling(
    http: httpx.Client, twelve: list[str], spelling: str
) -> None:
    seen: list[str] = []
    answer = listed(http, limit=5)
    while True:
        seen += ids(answer)
        cursor = answer["pagination"]["next_cursor"]
        if cursor is None:
            break
        answer = listed(http, limit=5, **{spelling: cursor})
    assert seen == twelve


def test_a_cursor_this_server_did_not_write_is_a_400(http: httpx.Client) -> None:
    response = http.post("/v1/tasks/list", params={"cursor": "%%%"}, json={})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "BadRequestError"


@pytest.mark.parametrize(
    ("body", "params", "counted"),
    [
        ({}, {}, False),
        ({"include_total": True}, {}, True),
        ({}, {"include_total": "true"}, True),
        ({"include_total": False}, {"include_total": "false"}, False),
        ({"include_total": True, "status": "PENDING"}, {"limit": 2}, True),
    ],
)
def test_include_total_in_the_body_or_the_query(
    http: httpx.Client,
    twelve: list[str],
    body: dict[str, Any],
    params: dict[str, Any],
    counted: bool,
) -> None:
    pagination = listed(http, body, **params)["pagination"]
    assert pagination["total"] == (12 if counted else None)


def test_paging_out_of_range_is_a_422_per_parameter(http: httpx.Client) -> None:
    error = refused(http, {}, limit=0, page_size=1001, offset=10_001, page=0)
    locations = [p["location"] for p in error["details"]["validation_errors"]]
    assert locations == [
        ["query", "limit"],
        ["query", "page_size"],
        ["query", "offset"],
        ["query", "page"],
    ]
    error = refused(http, {"include_total": "maybe"})
    assert error["details"]["validation_errors"][0]["type"] == "bool_parsing"


# -- search and filters -------------------------------------------------------------------------


def test_search_matches_task_id_task_type_and_status_only(http: httpx.Client, state: Any) -> None:
    add(state, "task_alpha", "PENDING", task_type="engine_cluster_build")
    add(state, "task_beta", "FAILED", task_type="thumbnail", descriptions={"FAILED": "cluster"})
    add(state, "task_gamma", "COMPLETED", task_type="thumbnail", inputs=["cluster_1"])
    assert ids(listed(http, {"search": "ALPHA"})) == ["task_alpha"]
    assert ids(listed(http, {"search": "cluster"})) == ["task_alpha"]  # its type, nothing else
    assert ids(listed(http, {"search": "fail"})) == ["task_beta"]
    assert sorted(ids(listed(http, {"search": "task_"}))) == [
        "task_alpha",
        "task_beta",
        "task_gamma",
    ]


def test_filters_select_by_task_id(http: httpx.Client, state: Any) -> None:
    for name in ("a1", "a2", "a3", "b1"):
        add(state, name, "PENDING")

    def select(filters: dict[str, Any]) -> list[str]:
        return sorted(ids(listed(http, {"filters": filters})))

    one = {"field": "task_id", "operator": "eq", "value": "a2"}
    assert select({"AND": [one]}) == ["a2"]  # the SDK's own example
    some = {"field": "task_id", "operator": "in", "value": ["a1", "a3", "nope"]}
    assert select({"AND": [some]}) == ["a1", "a3"]
    assert select({"OR": [one, some]}) == ["a1", "a2", "a3"]
    assert select({"AND": [some, {"OR": [one, {"field": "task_id", "value": "a1"}]}]}) == ["a1"]
    assert select({"task_id": "b1"}) == ["b1"]  # the shorthand
    # Matching folds case unless told not to.
    upper = {"field": "task_id", "operator": "in", "value": ["A1", "B1"]}
    assert select({"AND": [upper]}) == ["a1", "b1"]
    assert select({"AND": [upper], "case_sensitive": True}) == []
    assert select({"NOT": [some]}) == ["a2", "b1"]


def test_a_bad_filter_or_an_undeclared_key_is_a_422(http: httpx.Client) -> None:
    error = refused(http, {"filters": {"AND": [{"field": "task_id", "operator": "like"}]}})
    problem = error["details"]["validation_errors"][0]
    assert problem["location"] == ["body", "filters", "AND", 0, "operator"]
    assert "'geo_polygon'" in problem["message"]
    # Since 2026-11-02 keys the body does not declare are refused, naming the accepted ones.
    error = refused(http, {"page": 2, "status": "PENDING"})
    (problem,) = error["details"]["validation_errors"]
    assert problem["type"] == "extra_forbidden" and problem["location"] == ["body", "page"]
    assert all(key in problem["message"] for key in BODY_KEYS)
    assert refused(http, [1, 2])["details"]["validation_errors"][0]["location"] == ["body"]


def test_the_provider_reads_the_simulators_422(provider: MixpeekProvider) -> None:
    with pytest.raises(FetchError) as caught:
        provider.search_page('{"page": 2}', 0, 10)
    message = caught.value.message
    assert caught.value.status_code == 422
    assert message.startswith("Validation error (ValidationError): body.page: Extra inputs")
    assert "accepted keys" in message


# -- the queue ----------------------------------------------------------------------------------


def test_a_batch_waits_queued_with_its_place_then_processes(
    provider: MixpeekProvider, state: Any, clock: Any
) -> None:
    task = state.add(
        "batch_1",
        [("QUEUED", 150.0), ("PROCESSING", 30.0), ("COMPLETED", None)],
        fields={"task_type": "api_buckets_batches_process", "average_run_seconds": 60.0},
    )
    first = provider.fetch(task.task_id)
    assert first.state is TaskState.QUEUED and first.upstream_status == "QUEUED"
    assert first.raw["queue_position"] == 3 and first.raw["estimated_wait_minutes"] == 3.0
    assert first.details["queue_position"] == 3
    assert first.details["estimated_wait_minutes"] == 3.0
    clock.advance(100)
    nearer = provider.fetch(task.task_id)
    assert nearer.details["queue_position"] == 1
    clock.advance(60)
    running = provider.fetch(task.task_id)
    assert running.upstream_status == "PROCESSING" and running.state is TaskState.RUNNING
    assert running.raw["queue_position"] is None and running.raw["estimated_wait_minutes"] is None
    assert "queue_position" not in running.details


def test_demo_batches_queue_and_other_tasks_pend(state: Any) -> None:
    words = set()
    for seed in range(40):
        task = sim.add_demo_task(state, random.Random(seed))
        waiting, running = task.phases[0].status, task.phases[1].status
        if task.fields["task_type"] in sim.QUEUED_TYPES:
            assert (waiting, running) == ("QUEUED", "PROCESSING")
        else:
            assert waiting == "PENDING" and running in ("IN_PROGRESS", "PROCESSING")
        words.add(waiting)
    assert words == {"QUEUED", "PENDING"}


def test_the_detail_page_shows_the_queue(
    app_factory: Callable[..., Any], make_source: Callable[..., Any], state: Any
) -> None:
    from bs4 import BeautifulSoup

    from tests.conftest import track
    from webapp.refresher.engine import Refresher

    app = app_factory([make_source("mixpeek", name="mx")])
    state.add(
        "batch_q",
        [("QUEUED", 600.0), ("PROCESSING", None)],
        fields={"task_type": "api_buckets_batches_process", "average_run_seconds": 120.0},
    )
    track(app, "mx", "batch_q")
    refresher = Refresher(app)
    refresher.run_once()
    refresher.close()
    page = BeautifulSoup(app.test_client().get("/tasks/mx/batch_q").text, "html.parser")
    fields = page.select_one("#task-details > dl.fields")  # the key fields
    assert fields is not None
    labels = [dt.get_text(strip=True) for dt in fields.select("dt")]
    values = {
        dt.get_text(strip=True): dd.get_text(strip=True)
        for dt, dd in zip(fields.select("dt"), fields.select("dd"), strict=True)
    }
    assert "Place in queue" in labels and "Estimated wait (minutes)" in labels
    assert values["Place in queue"] == "5" and values["Estimated wait (minutes)"] == "10.0"


# -- the batched refresh ------------------------------------------------------------------------


def test_fetch_many_is_one_list_call_per_hundred_ids(provider: MixpeekProvider, state: Any) -> None:
    tasks = [sim.add_demo_task(state, random.Random(n)) for n in range(150)]
    before = dict(state.calls)
    results = provider.fetch_many([task.task_id for task in tasks])
    assert state.calls["list"] - before.get("list", 0) == 2
    assert state.calls.get("get", 0) == before.get("get", 0)
    assert all(not isinstance(r, FetchError) for r in results.values())
    assert provider.rate_limit_state is not None  # the list's X-RateLimit-* headers are read


def test_tasks_past_the_ttl_are_left_out_of_the_list_and_not_found(
    provider: MixpeekProvider, state: Any, clock: Any
) -> None:
    old = sim.add_demo_task(state, random.Random(1), task_id="old")
    clock.advance(86_000)
    new = sim.add_demo_task(state, random.Random(2), task_id="new")
    clock.advance(400)  # "old" is a day old now: gone from Redis
    state.calls.clear()
    results = provider.fetch_many([old.task_id, new.task_id])
    assert dict(state.calls) == {"list": 1, "get": 1}  # the GET confirms what the list left out
    gone = results["old"]
    assert isinstance(gone, FetchError) and gone.kind is FetchErrorKind.NOT_FOUND
    assert not isinstance(results["new"], FetchError)


def test_a_fault_on_one_task_hits_the_batch_that_names_it(
    provider: MixpeekProvider, state: Any
) -> None:
    for name in ("p1", "p2"):
        add(state, name, "PROCESSING")
    add(state, "elsewhere", "PROCESSING")
    state.set_fault(Fault.MALFORMED, task_id="elsewhere", times=1)
    state.calls.clear()
    provider.fetch_many(["p1", "p2"])
    assert dict(state.calls) == {"list": 1}  # not the batch that asked for "elsewhere"
    state.set_fault(Fault.MALFORMED, task_id="p2", times=1)
    state.calls.clear()
    results = provider.fetch_many(["p1", "p2"])
    # The garbled list is read as nothing found: both are asked for one by one.
    assert dict(state.calls) == {"list": 1, "get": 2}
    assert all(r.state is TaskState.RUNNING for r in results.values())  # type: ignore[union-attr]
