"""Conductor's search ``query``: what the provider sends (pure parsing), and what the simulator
does with it over loopback HTTP, as an Elasticsearch/OpenSearch-indexed server does
(conductor-oss ``es7-persistence/.../query/parser``; PROVIDERS.md part 3)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from webapp.config import build_source
from webapp.providers.conductor import ConductorProvider
from webapp.providers.conductor_query import carries_unquoted
from webapp.providers.conductor_query import ids_query
from webapp.providers.conductor_query import where_clause
from webapp.simulators import SimulatorSuite
from webapp.simulators import conductor as sim
from webapp.simulators.conductor_query import QueryFailure
from webapp.simulators.conductor_query import compile_query
from webapp.simulators.conductor_query import parse_query
from webapp.simulators.core import ManualClock
from webapp.simulators.core import SimulatorState
from webapp.simulators.server import ServerThread

OPERATOR_MISSING = "Expecting an operator (=, >, <, !=, BETWEEN, IN, STARTS_WITH), but found none."
#: In the message of the index's failure (ES7's ElasticsearchStatusException).
INDEX_FAILURE = "search_phase_execution_exception"

# -- the provider: pure parsing -------------------------------------------------------------


@pytest.mark.parametrize(
    "task_id",
    ["0c658ed7-becd-11ef-a89d-86a819bd92bf", "sim-000001", "a.b_c:d/e@f", "x*y", "AND", "OR"],
)
def test_ids_the_list_carries_unquoted(task_id: str) -> None:
    assert carries_unquoted(task_id)


@pytest.mark.parametrize(
    "task_id",
    ["a,b", "a(b", "a)b", "it's", 'say "hi"', "two words", "tab\there", "é-task", "", "a\nb"],
)
def test_ids_the_list_cannot_carry(task_id: str) -> None:
    assert not carries_unquoted(task_id)


def test_ids_query_is_unquoted() -> None:
    assert ids_query(["a", "b-2", "c.3"]) == "taskId IN (a,b-2,c.3)"


@pytest.mark.parametrize(
    ("query", "sent"),
    [
        ("status = 'FAILED'", {"query": "status = 'FAILED'"}),
        (
            "status = 'FAILED' AND workflowType = \"media\"",
            {"query": "status = 'FAILED' AND workflowType = \"media\""},
        ),
        ("status != 'FAILED'", {"query": "status != 'FAILED'"}),
        ("queueWaitTime > 1000", {"query": "queueWaitTime > 1000"}),
        ("startTime < 1767000000000", {"query": "startTime < 1767000000000"}),
        ("taskType IN (HTTP,SIMPLE)", {"query": "taskType IN (HTTP,SIMPLE)"}),
        ("correlationId IS NULL", {"query": "correlationId IS NULL"}),
        ("correlationId IS NOT NULL", {"query": "correlationId IS NOT NULL"}),
        ("startTime BETWEEN 1 AND 2", {"query": "startTime BETWEEN 1 AND 2"}),
        ("taskDefName STARTS_WITH 'encode'", {"query": "taskDefName STARTS_WITH 'encode'"}),
        (
            "(status = 'FAILED' OR status = 'TIMED_OUT') AND taskType = 'HTTP'",
            {"query": "(status = 'FAILED' OR status = 'TIMED_OUT') AND taskType = 'HTTP'"},
        ),
        # Quotes inside IN (...) would be part of the values on ES/OpenSearch: dropped.
        ("status IN ('FAILED', \"TIMED_OUT\")", {"query": "status IN (FAILED,TIMED_OUT)"}),
        ("workflowType IN ('my flow', x)", {"query": "workflowType IN (my flow,x)"}),
        # So are the quotes of a date compared with < or > (ES would read them as the date).
        ("startTime > '2026-01-15'", {"query": "startTime > 2026-01-15"}),
        # Not a clause: free text in ES query-string syntax.
        ("status:FAILED", {"freeText": "status:FAILED"}),
        ("NOT status:FAILED", {"freeText": "NOT status:FAILED"}),
        ("encode video", {"freeText": "encode video"}),
        ("the error is a timeout", {"freeText": "the error is a timeout"}),
        ("encode NOT resize", {"freeText": "encode NOT resize"}),
        ("status ~ FAILED", {"freeText": "status ~ FAILED"}),
        ("   ", {}),
        (None, {}),
    ],
)
def test_what_a_query_sends(query: str | None, sent: dict[str, str]) -> None:
    assert ConductorProvider.parse_query(query) == sent


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("status NOT IN ('FAILED')", "no NOT or NOT IN"),
        ("status not in (FAILED)", "no NOT or NOT IN"),
        ("NOT status = 'FAILED'", "no NOT or NOT IN"),
        ("queueWaitTime <= 5", "no <="),
        ("queueWaitTime >= 5", "no >="),
        ("status <> 'FAILED'", "no <>"),
        ("status == 'FAILED'", "no =="),
        ("status LIKE 'FAIL%'", "no LIKE"),
        ("status in (FAILED)", "upper case: write IN"),
        ("correlationId is null", "upper case: write IS"),
        ("taskDefName starts_with 'x'", "upper case: write STARTS_WITH"),
        ("status = 'FAILED' and taskType = 'HTTP'", "write AND in upper case"),
        ("status = 'FAILED' or taskType = 'HTTP'", "write OR in upper case"),
        ("status = FAILED", "quote text values"),
        ("status = 'FAILED", "never closed"),
        ("(status = 'FAILED'", "never closed"),
        ("status = 'FAILED')", "join conditions with AND or OR"),
        ("status = null", "IS NULL"),
        ("correlationId IS 'x'", "IS takes NULL or NOT NULL"),
        ("status IN FAILED", "IN takes a list"),
        ("status IN (FAILED", "never closed"),
        ("status IN ('A,B')", "cannot be empty or hold"),
        ("status IN (A,,B)", "cannot be empty or hold"),
        ("startTime BETWEEN 1 5", "BETWEEN takes two numbers"),
        ("startTime > '2026-01-15T10:00:00Z'", "unquoted"),
        ("(status = 'A' OR taskType ~ 'x')", "expected an operator after taskType"),
    ],
)
def test_what_conductor_cannot_read_is_refused_before_sending(query: str, says: str) -> None:
    with pytest.raises(ValueError) as caught:
        ConductorProvider.parse_query(query)
    assert str(caught.value).startswith("--query: ")
    assert says in str(caught.value)


@pytest.mark.parametrize(
    ("query", "conditions"),
    [
        ("status = 'FAILED'", 1),
        ('status != "FAILED"', 1),
        ("queueWaitTime > 1000 AND queueWaitTime < 5000", 2),
        ("taskId IN ('a', 'b')", 1),
        ("correlationId IS NOT NULL OR (taskType = 'HTTP' AND startTime BETWEEN 1 AND 2)", 3),
        ("taskDefName STARTS_WITH 'enc'", 1),
        ("startTime > '2026-01-15'", 1),
    ],
)
def test_what_the_provider_sends_the_server_parses_whole(query: str, conditions: int) -> None:
    # Through the port of the server's parser (the simulator's): it builds a filter, and reads
    # every condition rather than stopping early and ignoring the rest.
    sent = where_clause(query)
    compile_query(sent)
    assert len(parse_query(sent).conditions()) == conditions


def test_a_refused_query_sends_nothing() -> None:
    requests: list[httpx.Request] = []
    source = build_source(
        {"name": "oss", "provider": "conductor", "base_url": "https://conductor.test"}, {}
    )
    transport = httpx.MockTransport(lambda r: requests.append(r) or httpx.Response(500))
    provider = ConductorProvider.create(source, transport=transport)
    with pytest.raises(ValueError):
        provider.search_page("taskId NOT IN (a,b)", 0, 10)
    with pytest.raises(ValueError):
        list(provider.search("status <= 'FAILED'"))
    assert requests == []


# -- the simulator over loopback ------------------------------------------------------------

T0 = 1_767_000_000.0  # ManualClock's start
T0_MS = int(T0 * 1000)


@pytest.fixture
def open_conductor(clock: ManualClock) -> Iterator[tuple[SimulatorState, httpx.Client]]:
    """An open-source Conductor simulator (no auth) with three tasks, and a client for it.

    t-a: HTTP encode_video in media, COMPLETED, queued 1 s, correlationId corr-1
    t-b: SIMPLE encode_audio in media, FAILED, queued 2 s, 100 s later
    t-c: SIMPLE send_invoice in billing, still SCHEDULED, 200 s later
    """
    state = SimulatorState(clock)
    fields = {"referenceTaskName": "ref", "inputData": {"orderId": "ord-1"}}
    state.add(
        "t-a",
        [("SCHEDULED", 1), ("IN_PROGRESS", 4), ("COMPLETED", None)],
        started_at=T0,
        fields={
            **fields,
            "taskType": "HTTP",
            "taskDefName": "encode_video",
            "workflowType": "media",
            "correlationId": "corr-1",
        },
    )
    state.add(
        "t-b",
        [("SCHEDULED", 2), ("IN_PROGRESS", 10), ("FAILED", None)],
        started_at=T0 + 100,
        fields={
            **fields,
            "taskType": "SIMPLE",
            "taskDefName": "encode_audio",
            "workflowType": "media",
            "reasonForIncompletion": "boom",
        },
    )
    state.add(
        "t-c",
        [("SCHEDULED", None)],
        started_at=T0 + 200,
        fields={
            **fields,
            "taskType": "SIMPLE",
            "taskDefName": "send_invoice",
            "workflowType": "billing",
        },
    )
    clock.set(T0 + 300)
    with ServerThread(sim.create_app(state, auth="none")) as server:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            client.headers["X-Server-Url"] = server.url  # for open_provider
            yield state, client


def search(client: httpx.Client, query: str, path: str = "/api/tasks/search") -> httpx.Response:
    return client.get(path, params={"query": query, "sort": "taskId:ASC"})


def hits(client: httpx.Client, query: str) -> list[str]:
    answer = search(client, query)
    assert answer.status_code == 200, answer.text
    return [row["taskId"] for row in answer.json()["results"]]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # = and != : query_string name:value, a quoted value a phrase.
        ("status = 'COMPLETED'", ["t-a"]),
        ('taskType = "SIMPLE"', ["t-b", "t-c"]),
        ("status != 'FAILED'", ["t-a", "t-c"]),
        ("correlationId != 'corr-1'", ["t-b", "t-c"]),  # a task without the field too
        (f"scheduledTime = {T0_MS + 100_000}", ["t-b"]),
        # < and > : exclusive ranges over the field's type.
        ("queueWaitTime > 1000", ["t-b"]),
        ("queueWaitTime < 1000", ["t-c"]),
        (f"scheduledTime > {T0_MS + 50_000}", ["t-b", "t-c"]),
        (f"scheduledTime < {T0_MS + 150_000}", ["t-a", "t-b"]),
        ("scheduledTime > 2025-12-29", ["t-a", "t-b", "t-c"]),
        ("status > 'COMPLETED'", ["t-a", "t-b", "t-c"]),  # compared with "COMPLETED", quotes in
        # IN: a terms query on the raw values, quotes kept.
        ("taskId IN (t-a,t-c)", ["t-a", "t-c"]),
        ("taskId IN ( t-a , t-c )", ["t-a", "t-c"]),
        ("taskId IN ('t-a','t-c')", []),
        ('taskId IN ("t-a",t-c)', ["t-c"]),
        ("status IN (FAILED,SCHEDULED)", ["t-b", "t-c"]),
        # IS: built inverted upstream, so IS NULL finds the tasks that have the field.
        ("correlationId IS NULL", ["t-a"]),
        ("correlationId IS NOT NULL", ["t-b", "t-c"]),
        ("reasonForIncompletion IS NULL", ["t-b"]),
        # BETWEEN: an inclusive range of two numbers.
        ("queueWaitTime BETWEEN 1000 AND 2000", ["t-a", "t-b"]),
        (f"scheduledTime BETWEEN {T0_MS} AND {T0_MS + 100_000}", ["t-a", "t-b"]),
        # STARTS_WITH: a prefix query, case-sensitive on a keyword.
        ("taskDefName STARTS_WITH 'encode'", ["t-a", "t-b"]),
        ("workflowType STARTS_WITH 'Med'", []),
        # AND / OR nest to the right with no precedence; parentheses group.
        ("workflowType = 'media' AND status = 'FAILED' OR taskId = 't-c'", ["t-b"]),
        ("(workflowType = 'media' AND status = 'FAILED') OR taskId = 't-c'", ["t-b", "t-c"]),
        ("taskType = 'SIMPLE' AND (status = 'FAILED' OR status = 'COMPLETED')", ["t-b"]),
        # The parser stops at what it cannot join and ignores the rest.
        ("status = 'FAILED' and taskId = 't-a'", ["t-b"]),
        # A text field (input) matches a phrase of its words.
        ("input = 'ord-1'", ["t-a", "t-b", "t-c"]),
        ("", ["t-a", "t-b", "t-c"]),
    ],
)
def test_simulator_runs_each_operator_as_the_index_does(
    open_conductor: tuple[SimulatorState, httpx.Client], query: str, expected: list[str]
) -> None:
    _, client = open_conductor
    assert hits(client, query) == expected


@pytest.mark.parametrize(
    ("query", "peeked"),
    [
        ("taskId NOT IN (t-a)", "NOT IN (t-a"),
        ("status NOT IN ('FAILED','TIMED_OUT')", "NOT IN ('FA"),
        ("NOT status = 'FAILED'", "status = 'F"),
        ("status in (FAILED)", "in (FAILED)"),
        ("status LIKE 'F%'", "LIKE 'F%'\ufffd\ufffd"),
    ],
)
def test_simulator_refuses_what_the_parser_lacks_as_the_server_does(
    open_conductor: tuple[SimulatorState, httpx.Client], query: str, peeked: str
) -> None:
    state, client = open_conductor
    answer = search(client, query)
    # The index DAO wraps the ParserException in a TransientException: 500, retryable.
    assert answer.status_code == 500
    assert answer.json() == {
        "status": 500,
        "message": f"{OPERATOR_MISSING}  Peeked=>{peeked}",
        "instance": sim.INSTANCE,
        "retryable": True,
    }
    # search-v2 wraps it in a NonTransientException: the same 500, not retryable.
    full = search(client, query, "/api/tasks/search-v2")
    assert full.status_code == 500 and full.json()["retryable"] is False
    assert state.calls["search"] == 2


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("(status = 'FAILED'", "Expected ), found \ufffd"),
        ("taskId IN (t-a", "Expected ')' but never encountered in the stream"),
        ("status = 'FAILED", "String constant is not quoted with <'> : FAILED"),
        ("queueWaitTime BETWEEN 1 2", "Expected AND, found 2\ufffd\ufffd"),
        ("queueWaitTime BETWEEN 1 AND", "Missing the upper range value..."),
        # The index, not the parser: query_string "status:" and a date that does not parse.
        ("status = FAILED", INDEX_FAILURE),
        ("scheduledTime > '2026-01-01'", INDEX_FAILURE),
        ("startTime STARTS_WITH '2026'", INDEX_FAILURE),
        ("queueWaitTime IN (a,b)", INDEX_FAILURE),
    ],
)
def test_simulator_reports_parser_and_index_failures(
    open_conductor: tuple[SimulatorState, httpx.Client], query: str, message: str
) -> None:
    _, client = open_conductor
    answer = search(client, query)
    assert answer.status_code == 500
    body = answer.json()
    assert message in body["message"] and body["retryable"] is True


def test_simulator_is_with_a_value_is_a_500_without_a_message(
    open_conductor: tuple[SimulatorState, httpx.Client],
) -> None:
    # getSysConstant() is null for IS 'x': a NullPointerException, whose message is null.
    _, client = open_conductor
    answer = search(client, "correlationId IS 'corr-1'")
    assert answer.status_code == 500
    assert answer.json() == {"status": 500, "instance": sim.INSTANCE, "retryable": True}


def test_simulator_reads_the_query_bytes_as_characters() -> None:
    # The parser casts each UTF-8 byte to a char: a non-ASCII value never matches.
    row: dict[str, Any] = {"taskId": "é", "status": "é"}
    assert not compile_query("taskId IN (é)")(row)
    assert not compile_query("status = 'é'")(row)
    assert compile_query("taskId IN (x)")({"taskId": "x"})


def test_simulator_empty_query_matches_all_but_a_blank_one_fails() -> None:
    assert compile_query("")({"taskId": "x"})
    with pytest.raises(QueryFailure):
        compile_query(" ")


# -- the provider against it ----------------------------------------------------------------


@pytest.fixture
def open_provider(
    open_conductor: tuple[SimulatorState, httpx.Client],
) -> Iterator[ConductorProvider]:
    _, client = open_conductor
    url = client.headers["X-Server-Url"]
    source = build_source({"name": "oss", "provider": "conductor", "base_url": url}, {})
    provider = ConductorProvider.create(source)
    assert isinstance(provider, ConductorProvider)
    yield provider
    provider.close()


def test_import_query_with_quoted_in_values_finds_the_tasks(
    open_conductor: tuple[SimulatorState, httpx.Client], open_provider: ConductorProvider
) -> None:
    # Sent as written, the quotes would make this find nothing on an ES-indexed server.
    found = {t.task_id for t in open_provider.search("status IN ('FAILED', 'SCHEDULED')")}
    assert found == {"t-b", "t-c"}
    dated = {t.task_id for t in open_provider.search("scheduledTime > '2025-12-29'")}
    assert dated == {"t-a", "t-b", "t-c"}


def test_import_query_the_server_cannot_read_is_never_sent(
    open_conductor: tuple[SimulatorState, httpx.Client], open_provider: ConductorProvider
) -> None:
    state, _ = open_conductor
    for query in ("status NOT IN (FAILED)", "queueWaitTime >= 1", "status = 'A' and x = 'b'"):
        with pytest.raises(ValueError):
            open_provider.search_page(query, 0, 10)
    assert state.calls["search"] == 0
    # Free text still goes to freeText.
    assert [t.task_id for t in open_provider.search("status:FAILED")] == ["t-b"]


def test_taskdeck_import_refuses_what_conductor_cannot_read(
    app_factory, make_source, suite: SimulatorSuite, clock: ManualClock
) -> None:
    state = suite.states["conductor"]
    rng = random.Random(11)
    for final in ("failed", "succeeded", "succeeded"):
        sim.add_demo_task(state, rng, final=final, queued_seconds=0, running_seconds=0)
    clock.advance(1)
    runner = app_factory([make_source("conductor", name="orkes")]).test_cli_runner()
    refused = runner.invoke(args=["import", "orkes", "--query", "status NOT IN ('COMPLETED')"])
    assert refused.exit_code != 0
    assert "Conductor's query has no NOT or NOT IN" in refused.output
    assert state.calls["search"] == 0
    # SQL habit, quoted IN values: sent unquoted, so the ES-indexed server finds the task.
    done = runner.invoke(args=["import", "orkes", "--query", "status IN ('FAILED')"])
    assert done.exit_code == 0, done.output
    assert "1 tracked" in done.output
