"""Reading a workflow's other tasks out of Conductor's search-v2 answer."""

from __future__ import annotations

import pytest

from webapp.domain import FetchError
from webapp.domain import Sibling
from webapp.providers.base import MAX_SIBLINGS
from webapp.providers.conductor_links import workflow_search
from webapp.providers.conductor_links import workflow_siblings


def test_the_retry_and_the_earlier_attempt_are_told_apart():
    results = [
        {"taskId": "prepare", "status": "COMPLETED"},
        {"taskId": "train-1", "status": "FAILED", "retried": True},
        {"taskId": "train-2", "status": "FAILED", "retriedTaskId": "train-1", "retried": True},
        {"taskId": "train-3", "status": "SCHEDULED", "retriedTaskId": "train-2"},
    ]
    assert workflow_siblings("train-2", {"totalHits": 4, "results": results}) == [
        Sibling("prepare", "same workflow"),
        Sibling("train-1", "earlier attempt"),
        Sibling("train-3", "retry"),
    ]


def test_garbage_results_are_skipped():
    results = [
        None,
        "text",
        42,
        {"status": "COMPLETED"},  # no taskId
        {"taskId": ["not", "a", "string"]},
        {"taskId": "ok", "retriedTaskId": {"x": 1}},
    ]
    assert workflow_siblings("me", {"results": results}) == [Sibling("ok", "same workflow")]
    many = [{"taskId": f"t{i}"} for i in range(500)]
    assert len(workflow_siblings("me", {"results": many})) == MAX_SIBLINGS
    for answer in (None, [], {"results": "x"}, {"totalHits": 1}):
        with pytest.raises(FetchError):
            workflow_siblings("me", answer)


def test_a_workflow_id_that_cannot_be_quoted_is_not_searched():
    assert workflow_search("wf-1")["query"] == "workflowId = 'wf-1'"
    assert workflow_search("wf' OR status = 'FAILED") is None
    assert workflow_search('wf"1') is None and workflow_search("wf\\1") is None
    assert workflow_search("") is None and workflow_search("x" * 201) is None
