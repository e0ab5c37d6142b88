"""The OpenSearch ML Commons provider against the simulator over loopback HTTP: imports past the
10,000-hit result window with ``search_after``, a cluster that refuses to sort on ``_id``, the
batched refresh by ids, and remote batch jobs on the detail page, refreshed by GET."""

from __future__ import annotations

import random
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import pytest
from bs4 import BeautifulSoup
from flask import Flask

from tests.conftest import RefreshDriver
from tests.conftest import track
from tests.conftest import wait_for
from webapp.db import store
from webapp.db.models import ImportJob
from webapp.db.models import db
from webapp.domain import FetchError
from webapp.domain import TaskState
from webapp.imports import jobs as import_jobs
from webapp.providers import PROVIDERS
from webapp.providers import opensearch_ml
from webapp.providers.opensearch_ml import OpenSearchMLProvider
from webapp.simulators import SIMULATORS
from webapp.simulators import SimulatorSuite
from webapp.simulators.core import ManualClock
from webapp.simulators.core import SimulatorState
from webapp.simulators.opensearch_ml import add_remote_batch_task

ML = SIMULATORS["opensearch-ml"]
T0 = 1_700_000_000_000


@pytest.fixture
def state(suite: SimulatorSuite) -> SimulatorState:
    return suite.states["opensearch-ml"]


@pytest.fixture
def provider(make_source: Callable[..., Any]) -> Iterator[OpenSearchMLProvider]:
    provider = PROVIDERS["opensearch-ml"].create(make_source("opensearch-ml"))
    assert isinstance(provider, OpenSearchMLProvider)
    yield provider
    provider.close()


def load(state: SimulatorState, count: int, *, per_millisecond: int = 3) -> list[str]:
    """``count`` lightweight tasks, ``per_millisecond`` of them created in each millisecond (so
    page boundaries fall inside a millisecond), a few without ``create_time`` at all."""
    ids = []
    for i in range(count):
        doc: dict[str, Any] = {"state": "COMPLETED", "task_type": "DEPLOY_MODEL"}
        if i >= 4:
            doc["create_time"] = T0 + i // per_millisecond
        task_id = f"task-{(i * 7919) % count:05d}"  # ids in no particular order of time
        state.add_fixed(task_id, doc, "state")
        ids.append(task_id)
    return ids


def test_an_import_pages_past_ten_thousand_with_search_after(
    provider: OpenSearchMLProvider, state: SimulatorState
) -> None:
    ids = load(state, 10_050)
    found = [task.task_id for task in provider.search(None)]
    assert len(found) == len(set(found)) == 10_050
    assert set(found) == set(ids)
    # Newest first, the four without a creation time last.
    times = [task.created_at for task in provider.search(None, limit=20)]
    assert times == sorted(times, reverse=True)
    assert set(found[-4:]) == set(ids[:4])
    # 1,000 a page: ten full pages and the short last one.
    assert state.calls["search"] == 11 + 1


def test_an_import_stops_at_its_limit_without_asking_for_more(
    provider: OpenSearchMLProvider, state: SimulatorState
) -> None:
    load(state, 10_050)
    found = [task.task_id for task in provider.search(None, limit=10_020)]
    assert len(found) == len(set(found)) == 10_020
    assert state.calls["search"] == 11


def test_a_cluster_that_refuses_to_sort_on_id_is_paged_by_time(
    provider: OpenSearchMLProvider, state: SimulatorState, suite: SimulatorSuite
) -> None:
    suite.apps["opensearch-ml"].config["ML_ID_FIELD_DATA"] = False
    # 7 tasks a millisecond: 1,000-task pages end inside a millisecond every time.
    ids = load(state, 10_050, per_millisecond=7)
    found = [task.task_id for task in provider.search(None)]
    assert len(found) == len(set(found)) == 10_050
    assert set(found) == set(ids)


def test_a_query_is_kept_across_pages(
    provider: OpenSearchMLProvider, state: SimulatorState
) -> None:
    ids = load(state, 2_500)
    failed = set(ids[::2])
    for task_id in failed:
        state.tasks[task_id].fixed_payload["state"] = "FAILED"  # type: ignore[index]
    found = [task.task_id for task in provider.search("state:FAILED")]
    assert len(found) == len(set(found)) and set(found) == failed


def test_a_query_the_cluster_cannot_run_is_reported_with_its_reason(
    provider: OpenSearchMLProvider, state: SimulatorState
) -> None:
    with pytest.raises(FetchError) as caught:
        list(provider.search('{"fuzzy": {"state": "FAILD"}}'))
    assert caught.value.status_code == 400
    assert "unknown query [fuzzy] (parsing_exception)" in caught.value.message
    with pytest.raises(FetchError) as caught:
        provider.search_page(None, 9_995, 10)
    assert "Result window is too large" in caught.value.message
    assert "search_phase_execution_exception" in caught.value.message


def test_batched_refresh_reads_many_tasks_in_one_search_and_remote_jobs_by_get(
    provider: OpenSearchMLProvider, state: SimulatorState, clock: ManualClock
) -> None:
    plain = [
        ML.add_demo_task(state, random.Random(seed), final="partial").task_id for seed in range(5)
    ]
    job = add_remote_batch_task(state, random.Random(1), task_id="batch-1", service="openai")
    results = provider.fetch_many([*plain, job.task_id, "gone"])
    assert all(results[t].upstream_status == "CREATED" for t in plain)  # type: ignore[union-attr]
    assert isinstance(results["gone"], FetchError)
    # One ids search, then a GET for the remote job (only a GET asks the service) and for the
    # id the search did not find.
    assert (state.calls["search"], state.calls["get"]) == (1, 2)
    clock.advance(30)
    remote = provider.fetch_many([plain[0], job.task_id])[job.task_id]
    assert not isinstance(remote, FetchError)
    assert remote.state is TaskState.SUCCEEDED
    assert remote.details["remote_job_status"] == "completed"


# -- the CLI and the import page, with a small result window -------------------------------------


@pytest.fixture
def small_window(suite: SimulatorSuite, monkeypatch: pytest.MonkeyPatch) -> None:
    """A task index with ``index.max_result_window`` 50 and imports 20 tasks a page: the same
    paths as 10,000 and 1,000, at the size of a quick test."""
    suite.apps["opensearch-ml"].config["ML_MAX_RESULT_WINDOW"] = 50
    monkeypatch.setattr(opensearch_ml, "IMPORT_PAGE_SIZE", 20)


def test_the_cli_imports_past_the_result_window(
    ml_app: Flask, state: SimulatorState, small_window: None
) -> None:
    ids = load(state, 130)
    result = ml_app.test_cli_runner().invoke(args=["import", "ml-prod", "--limit", "1000"])
    assert result.exit_code == 0, result.output
    assert "130 tracked, 0 already tracked, 0 failed" in result.output
    with ml_app.app_context():
        assert all(store.get_task("ml-prod", task_id) is not None for task_id in ids)


def test_the_import_page_imports_past_the_result_window(
    ml_app: Flask, state: SimulatorState, small_window: None
) -> None:
    load(state, 130)
    with ml_app.test_request_context():
        job = import_jobs.start("ml-prod", None, 200)
        job_id = job.id
    with ml_app.app_context():
        finished = wait_for(
            lambda: (
                db.session.get(ImportJob, job_id, populate_existing=True).status
                in ("done", "failed")
            ),
            what="the import",
        )
        assert finished
        row = db.session.get(ImportJob, job_id)
        assert (row.status, row.error, row.tracked, row.total) == ("done", None, 130, 130)


# -- remote jobs on the detail page ---------------------------------------------------------------


def fields(client: Any, path: str) -> dict[str, str]:
    page = BeautifulSoup(client.get(path).text, "html.parser")
    dl = page.select_one("#task-details > dl.fields")
    return {
        dt.get_text(strip=True): dd.get_text(" ", strip=True)
        for dt, dd in zip(dl.select("dt"), dl.select("dd"), strict=True)
    }


def test_the_detail_page_shows_the_remote_job_and_a_refresh_moves_it(
    ml_app: Flask, state: SimulatorState, clock: ManualClock, driver: RefreshDriver
) -> None:
    job = add_remote_batch_task(
        state, random.Random(4), task_id="sm-batch", service="sagemaker", queued_seconds=5
    )
    track(ml_app, "ml-prod", job.task_id)
    clock.advance(6)
    driver.pass_()
    client = ml_app.test_client()
    shown = fields(client, "/tasks/ml-prod/sm-batch")
    assert shown["Remote job status"] == "InProgress"
    assert shown["Remote job"].startswith("arn:aws:sagemaker:us-east-1:")
    keys = list(shown)
    assert keys.index("Remote job status") < keys.index("Worker nodes")
    assert state.calls["get"] == 1  # the refresh asked with a GET, which asks SageMaker

    clock.advance(30)
    driver.pass_()
    shown = fields(client, "/tasks/ml-prod/sm-batch")
    assert shown["Remote job status"] == "Completed"
    with ml_app.app_context():
        task = store.get_task("ml-prod", "sm-batch")
        assert (task.state, task.upstream_status) == ("succeeded", "COMPLETED")
