"""Candidate ids in payloads: where each provider's rules look, and what hostile payloads do."""

from __future__ import annotations

import time

from webapp.links.discover import MAX_CANDIDATES
from webapp.links.discover import MAX_DEPTH
from webapp.links.discover import candidates


def ids(details):
    return {c.task_id: c.found_in for c in candidates("conductor", details)}


def test_an_http_tasks_answer_names_the_task_it_started():
    details = {
        "inputData": {"http_request": {"uri": "https://ml/_plugins/_ml/_train/kmeans"}},
        "outputData": {"response": {"statusCode": 200, "body": {"task_id": "ml-1"}}},
    }
    found = candidates("conductor", details)
    assert [(c.task_id, c.found_in, c.rule.relation) for c in found] == [
        ("ml-1", "outputData.response.body.task_id", "launched")
    ]
    assert found[0].rule.providers == ("opensearch-ml", "mixpeek")


def test_batches_are_groups_and_lists_are_walked():
    details = {
        "inputData": {"jobs": [{"task_id": "a"}, {"task_id": "b"}]},
        "outputData": {"batch_id": "batch_1", "task_id": "a"},
    }
    found = {c.task_id: c for c in candidates("conductor", details)}
    assert found["a"].found_in == "inputData.jobs[0].task_id"  # each id once, first place first
    assert found["b"].found_in == "inputData.jobs[1].task_id"
    assert found["batch_1"].rule.group and not found["a"].rule.group


def test_only_the_keys_a_provider_declares_are_read():
    # A task_id outside inputData/outputData is Conductor's own field, not a link.
    assert ids({"workflowType": "x", "task_id": "own", "correlationId": "c"}) == {}
    # Providers without rules name no links.
    assert candidates("opensearch-ml", {"outputData": {"task_id": "x"}}) == []
    assert candidates("no-such-provider", {"outputData": {"task_id": "x"}}) == []
    assert candidates("conductor", ["not", "a", "dict"]) == []


def test_values_that_are_not_ids_are_left_out():
    details = {
        "outputData": {
            "a": {"task_id": 12345},
            "b": {"task_id": None},
            "c": {"task_id": ["x"]},
            "d": {"task_id": "has spaces"},
            "e": {"task_id": "<script>alert(1)</script>"},
            "f": {"task_id": ""},
            "g": {"task_id": "x" * 201},
            "h": {"task_id": " padded-ok "},
        }
    }
    assert ids(details) == {"padded-ok": "outputData.h.task_id"}


def test_depth_is_bounded():
    def nest(levels):
        value = {"task_id": f"at-{levels}"}
        for _ in range(levels):
            value = {"next": value}
        return value

    assert "at-" + str(MAX_DEPTH - 1) in ids({"outputData": nest(MAX_DEPTH - 1)})
    assert ids({"outputData": nest(MAX_DEPTH + 1)}) == {}
    assert ids({"outputData": nest(5000)}) == {}  # deeper than Python's recursion limit


def test_huge_payloads_are_read_within_a_bound():
    details = {
        "outputData": {
            "task_id": "first",
            "rows": [{"task_id": f"row-{i}"} for i in range(200_000)],
            "wide": {f"k{i}": {"task_id": f"wide-{i}"} for i in range(200_000)},
        }
    }
    started = time.perf_counter()
    found = ids(details)
    assert time.perf_counter() - started < 2.0
    assert "first" in found and len(found) == MAX_CANDIDATES
