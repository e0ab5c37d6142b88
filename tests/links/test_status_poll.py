"""The task page's status poll sends what changed: the family block only when the family did."""

from __future__ import annotations

from urllib.parse import parse_qs
from urllib.parse import urlsplit

import pytest

from tests.helpers import soup
from tests.links.test_page import seeded
from webapp.db import store
from webapp.db.models import db
from webapp.db.models import utcnow
from webapp.domain import NormalizedTask
from webapp.domain import TaskState

HX = {"HX-Request": "true"}


@pytest.fixture
def linked_app(app_factory, make_source):
    """Launcher, trained (running) and its model sibling deployed (tests/links/test_page.py)."""
    return seeded(app_factory, make_source)


def poll_of(client, path):
    """The page's own poll: its URL and its query (``v``, ``f``)."""
    url = soup(client.get(path)).select_one("#task-status")["hx-get"]
    return url, {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


def fetched(app, source, task_id, state, word, terminal=False):
    """The refresher's write of one fetch that changed the task's state."""
    with app.app_context():
        task = store.get_task(source, task_id)
        store.apply_fetch(
            task,
            NormalizedTask(
                task_id,
                state,
                word,
                terminal,
                raw={},
                created_at=task.created_at,
                finished_at=utcnow() if terminal else None,
            ),
            utcnow(),
        )
        db.session.commit()


def test_an_unchanged_task_answers_204_from_its_version(linked_app):
    client = linked_app.test_client()
    url, query = poll_of(client, "/tasks/ml/trained")
    assert query["f"]
    assert client.get(url, headers=HX).status_code == 204


def test_a_change_of_state_alone_sends_this_tasks_cells_not_the_family(linked_app):
    client = linked_app.test_client()
    url, _ = poll_of(client, "/tasks/ml/trained")
    fetched(linked_app, "ml", "trained", TaskState.RUNNING, "RUNNING_AGAIN")
    answer = client.get(url, headers=HX)
    assert answer.status_code == 200
    fragment = soup(answer)
    for block in ("#task-status", "#task-history", "#task-details", "#task-upstream-actions"):
        assert fragment.select_one(block) is not None, block
    assert fragment.select_one("#task-family") is None
    badge = fragment.select_one("#family-self-state")
    assert badge["hx-swap-oob"] == "true" and "running" in badge.get_text()
    took = fragment.select_one("#family-self-took")
    assert took["hx-swap-oob"] == "true" and took.get_text().endswith(" so far")
    # The next poll asks with the new version and the same family.
    _, before = poll_of(client, "/tasks/ml/trained")
    after = parse_qs(urlsplit(fragment.select_one("#task-status")["hx-get"]).query)
    assert after["f"] == [before["f"]] and after["v"] == [before["v"]]


def test_the_cells_the_poll_swaps_are_this_tasks_row_in_the_chart(linked_app):
    page = soup(linked_app.test_client().get("/tasks/ml/trained"))
    current = page.select_one("#task-family tr.gantt-row.current")
    assert current.select_one("#family-self-state .badge-state").get_text() == "running"
    assert current.select_one("#family-self-took").get_text().endswith(" so far")
    assert not page.select("#task-family [hx-swap-oob]")
    assert len(page.select("#family-self-state, #family-self-took")) == 2


def test_a_change_in_the_family_sends_the_family(linked_app):
    client = linked_app.test_client()
    url, query = poll_of(client, "/tasks/ml/trained")
    fetched(linked_app, "ml", "deployed", TaskState.SUCCEEDED, "COMPLETED", terminal=True)
    fetched(linked_app, "ml", "trained", TaskState.RUNNING, "RUNNING_AGAIN")
    fragment = soup(client.get(url, headers=HX))
    family = fragment.select_one("#task-family")
    assert family is not None and family["hx-swap-oob"] == "true"
    # Nested in the chart, this task's cells are no swaps of their own (htmx would lift them
    # out of it).
    assert not fragment.select("#task-family [hx-swap-oob]")
    _, now = poll_of(client, "/tasks/ml/trained")
    assert now["f"] != query["f"]


def test_the_last_answer_draws_the_family_once_more(linked_app):
    client = linked_app.test_client()
    url, _ = poll_of(client, "/tasks/ml/trained")
    fetched(linked_app, "ml", "trained", TaskState.SUCCEEDED, "COMPLETED", terminal=True)
    answer = client.get(url, headers=HX)
    assert answer.status_code == 286
    fragment = soup(answer)
    current = fragment.select_one("#task-family tr.gantt-row.current")
    assert "so far" not in current.get_text()
    assert "succeeded" in current.select_one("#family-self-state").get_text()


@pytest.mark.parametrize("query", ["v=0", "v=abc", ""])
def test_a_poll_that_names_no_family_gets_the_whole_fragment(linked_app, query):
    answer = linked_app.test_client().get(f"/tasks/ml/trained/status?{query}", headers=HX)
    assert answer.status_code == 200
    assert soup(answer).select_one("#task-family") is not None


def test_a_poll_of_an_untracked_task_is_a_404(linked_app):
    answer = linked_app.test_client().get("/tasks/ml/gone/status?v=1", headers=HX)
    assert answer.status_code == 404
