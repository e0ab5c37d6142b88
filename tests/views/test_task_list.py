"""The list page and its fragments, read with a parser: structure, not substrings."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import pytest
from bs4 import BeautifulSoup

from tests.helpers import csrf
from tests.helpers import soup
from tests.listing.test_queries import add_task
from webapp.db import store
from webapp.db.models import SavedView
from webapp.db.models import db
from webapp.db.models import utcnow
from webapp.domain import NormalizedTask
from webapp.domain import TaskState
from webapp.listing.pages import rows_by_ids
from webapp.views.tasks import export as task_export

HX = {"HX-Request": "true"}


def row_ids(page: BeautifulSoup) -> list[str]:
    return [a.get_text() for a in page.select("#task-rows a.task-link")]


def templated_rows(page: BeautifulSoup) -> list:
    # Rows travel inside <template>, which CSS selectors do not enter.
    return [t.find("tr") for t in page.find_all("template")]


@pytest.fixture
def app(app_factory, make_source):
    return app_factory(
        [make_source("opensearch-ml", name="ml-prod"), make_source("mixpeek", name="mixpeek-prod")]
    )


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def seeded(app):
    """Five tasks: two running, a failed one with a label, one succeeded, one that cannot be
    fetched any more; the newest first is r2, r1, f1, s1, e1."""
    now = utcnow()
    with app.app_context():
        for i, (source, task_id, state, extra) in enumerate(
            [
                ("ml-prod", "e1", TaskState.SUCCEEDED, {"fetch_error": "timed out"}),
                ("mixpeek-prod", "s1", TaskState.SUCCEEDED, {"task_type": "batch"}),
                ("ml-prod", "f1", TaskState.FAILED, {"labels": ("urgent",), "error": "=1+1 OOM"}),
                ("ml-prod", "r1", TaskState.RUNNING, {"note": "watch this"}),
                ("mixpeek-prod", "r2", TaskState.RUNNING, {"task_type": "batch"}),
            ]
        ):
            add_task(source, task_id, state=state, created=now - timedelta(minutes=10 - i), **extra)
        db.session.commit()
    return app


# -- the page ----------------------------------------------------------------------------------
def test_every_control_has_a_label_and_the_table_is_semantic(client, seeded):
    page = soup(client.get("/?view=all"))
    form = page.select_one("form#filters[role=search]")
    assert form["method"] == "get" and form["action"] == "/"
    for control in page.select("main input:not([type=hidden]), main select, main textarea"):
        labelled = control.get("aria-label") or page.select_one(f"label[for='{control.get('id')}']")
        wrapped = control.find_parent("label")
        assert labelled or wrapped, control
    table = page.select_one("table.tasks")
    assert table.caption.get_text(strip=True).startswith("Tracked tasks, sorted by created")
    headers = table.select("thead th[scope=col]")
    assert [h.get_text(" ", strip=True) for h in headers][1:] == [
        "State", "Upstream", "Task", "Type", "Source", "Created ↓", "Updated", "Age", "Fresh",
    ]  # fmt: skip
    assert table.select_one("th[aria-sort]")["aria-sort"] == "descending"
    assert row_ids(page) == ["r2", "r1", "f1", "s1", "e1"]
    failed = page.select_one("#task-rows tr:has(a.task-link:-soup-contains('f1'))")
    assert failed.select_one(".badge-state").get_text() == "failed"  # state as text
    assert failed.select_one(".label").get_text() == "urgent"
    assert failed.select_one("input[type=checkbox]")["aria-label"] == "Tick f1"
    erring = page.select_one("#task-rows tr:has(a.task-link:-soup-contains('e1'))")
    assert "fetch error" in erring.select_one(".fetch-error").get_text()


def test_summary_counts_the_view_per_state_and_links_to_each(client, seeded):
    page = soup(client.get("/?source=ml-prod"))
    summary = page.select_one("#summary")
    assert summary.select_one(".summary-total strong").get_text() == "3"
    links = {a.get_text(" ", strip=True): a["href"] for a in summary.select("a.count")}
    assert set(links) == {"1 running", "1 failed", "1 succeeded"}
    assert parse_qs(urlsplit(links["1 failed"]).query) == {
        "source": ["ml-prod"],
        "state": ["failed"],
    }
    problems = soup(client.get("/?state=problems")).select_one("#summary")
    # The failed task and the one that cannot be fetched.
    assert problems.select_one(".summary-total strong").get_text() == "2"


def test_the_form_shows_the_view_it_filters(client, seeded):
    page = soup(client.get("/?type=batch&upstream=RUNNING&created_from=1h&sort=state"))
    assert page.select_one("#f-type option[selected]")["value"] == "batch"
    assert page.select_one("#f-upstream option[selected]")["value"] == "RUNNING"
    assert page.select_one("#f-created-from")["value"] == "1h"
    assert page.select_one("details.more-filters").has_attr("open")
    assert page.select_one("#filters input[name=sort]")["value"] == "state"
    assert row_ids(page) == ["r2"]


def test_fragment_for_the_form_full_page_otherwise_and_a_clean_pushed_url(client, seeded):
    url = "/?q=&source=&state=active&type=&limit="
    partial = client.get(url, headers=HX)
    assert "HX-Request" in partial.headers["Vary"]
    assert soup(partial).select_one("html") is None
    assert soup(partial).select_one("section#results table.tasks")
    assert partial.headers["HX-Push-Url"] == "/?state=active"
    # Without JavaScript the form sends its empty fields too: the same view, shorter.
    plain = client.get(url)
    assert plain.status_code == 302 and plain.headers["Location"] == "/?state=active"
    boosted = client.get("/?state=active", headers={**HX, "HX-Boosted": "true"})
    assert soup(boosted).select_one("html") is not None


def test_a_bad_view_explains_itself_in_the_fragment_too(client, seeded):
    response = client.get("/?q=state:happy", headers=HX)
    assert response.status_code == 400
    assert response.headers["HX-Push-Url"] == "false"
    alert = soup(response).select_one("#results [role=alert]")
    assert "state: unknown state 'happy'" in alert.get_text()


def test_paging_links_keep_the_view_and_a_page_past_the_end_says_so(client, seeded):
    first = soup(client.get("/?view=all&limit=2&sort=-created"))
    assert first.select_one("a[rel=prev]") is None
    second_url = first.select_one("a[rel=next]")["href"]
    assert parse_qs(urlsplit(second_url).query)["limit"] == ["2"]
    second = soup(client.get(second_url))
    assert row_ids(second) == ["f1", "s1"]
    assert second.select_one(".pager a:-soup-contains('First page')")
    with seeded.app_context():
        store.untrack(store.get_task("ml-prod", "e1"))
        db.session.commit()
    last = soup(client.get(second.select_one("a[rel=next]")["href"]))
    assert "past the last task" in last.select_one("p.empty").get_text()


def test_empty_states(client, app):
    nothing = soup(client.get("/"))
    assert "No tasks are tracked yet" in nothing.select_one("#results .empty").get_text()
    assert nothing.select_one("details.track-panel").has_attr("open")
    assert nothing.select_one("#charts") is None
    add_task_in(app, "ml-prod", "x")
    filtered = soup(client.get("/?state=failed"))
    assert "No task matches this view" in filtered.select_one("p.empty").get_text()


def add_task_in(app, source, task_id, **fields):
    with app.app_context():
        add_task(source, task_id, **fields)
        db.session.commit()


# -- live updates ----------------------------------------------------------------------------
def test_live_update_sends_changed_rows_counts_and_removals_out_of_band(client, seeded):
    page = soup(client.get("/?view=all"))
    poller = page.select_one("#live-poller")
    assert poller["hx-trigger"] == "every 3s"
    url = poller["hx-get"]
    assert parse_qs(urlsplit(url).query)["view"] == ["all"]
    # Nothing changed: nothing to draw. (On SQLite the poll recounts the view from the few
    # rows of task_counts, so a change anywhere in the view brings new counts; PostgreSQL
    # counts by reading tasks, so only a change on the page brings them.)
    quiet = client.get(url)
    assert quiet.status_code == 204 and quiet.data == b""
    with seeded.app_context():
        r1 = store.get_task("ml-prod", "r1")
        r1_pk = r1.id
        store.apply_fetch(
            r1, NormalizedTask("r1", TaskState.SUCCEEDED, "COMPLETED", True, raw={}), utcnow()
        )
        r2 = store.get_task("mixpeek-prod", "r2")
        r2_pk = r2.id
        store.untrack(r2)
        db.session.commit()
    update = soup(client.get(url))
    rows = templated_rows(update)
    assert [(r["id"], r["hx-swap-oob"]) for r in rows] == [
        (f"task-row-{r1_pk}", "true"),
        (f"task-row-{r2_pk}", "delete"),
    ]
    assert rows[0].find(class_="badge-state").decode_contents() == "succeeded"
    assert "r1 is now succeeded" in update.select_one("#live-announce").get_text()
    summary = update.select_one("#summary")
    assert {a.get_text(" ", strip=True) for a in summary.select("a.count")} == {
        "1 failed",
        "3 succeeded",
    }
    # No active row is left, but a view's first page still watches for newly tracked tasks
    # (issue 13: intended change, it used to stop here).
    watching = client.get(url)
    assert watching.status_code == 200
    assert "since" in parse_qs(urlsplit(soup(watching).select_one("#live-poller")["hx-get"]).query)
    # Without that watch (a later page's poller), it stops, and says so in the markup too.
    query = {k: v for k, v in parse_qs(urlsplit(url).query).items() if k != "since"}
    final = client.get("/tasks/live", query_string=query)
    assert final.status_code == 286
    assert not soup(final).select_one("#live-poller").has_attr("hx-trigger")


def track_as_a_follow_would(app, source: str, task_id: str, state=TaskState.RUNNING) -> int:
    """A task tracked after the page was drawn, with its search result written."""
    with app.app_context():
        task, _ = store.track(source, task_id, via="follow")
        terminal = state in (TaskState.SUCCEEDED, TaskState.FAILED)
        store.apply_fetch(task, NormalizedTask(task_id, state, "X", terminal, raw={}), utcnow())
        db.session.commit()
        return task.id


def poll(client, page: BeautifulSoup) -> tuple[int, BeautifulSoup]:
    response = client.get(page.select_one("#live-poller")["hx-get"])
    return response.status_code, soup(response)


def test_tasks_tracked_after_the_page_was_drawn_go_on_top_of_its_view(client, seeded):
    page = soup(client.get("/?source=ml-prod"))
    assert poll(client, page)[1].find("tbody") is None  # nothing new yet
    new_pk = track_as_a_follow_would(seeded, "ml-prod", "followed-1")
    track_as_a_follow_would(seeded, "mixpeek-prod", "elsewhere-1")  # not in this view
    status, update = poll(client, page)
    assert status == 200
    inserted = [t.find("tbody") for t in update.find_all("template") if t.find("tbody")]
    assert [b["hx-swap-oob"] for b in inserted] == ["afterbegin:#task-rows"]
    assert [tr["id"] for tr in inserted[0].find_all("tr")] == [f"task-row-{new_pk}"]
    assert not inserted[0].find("tr").has_attr("hx-swap-oob")
    assert page.select_one("tbody#task-rows") is not None  # where they go
    total = update.select_one("#summary[hx-swap-oob=true] .summary-total strong")
    assert total.get_text() == "4"
    assert "1 new task at the top" in update.select_one("#live-announce").get_text()
    # The next poll follows the new (active) row and looks past it only.
    poller = update.select_one("#live-poller")
    args = parse_qs(urlsplit(poller["hx-get"]).query)
    # Past the last row shown: a newer task that does not match yet is looked at again.
    assert args["since"] == [str(new_pk)]
    assert f"{new_pk}." in args["rows"][0]
    assert poll(client, update)[1].find("tbody") is None


def test_a_page_left_open_gains_at_most_a_page_of_rows_then_counts_the_rest(client, seeded):
    def inserted(update: BeautifulSoup) -> list[str]:
        bodies = [t.find("tbody") for t in update.find_all("template") if t.find("tbody")]
        return [tr["id"] for body in bodies for tr in body.find_all("tr")]

    page = soup(client.get("/?source=ml-prod&limit=2"))
    first = track_as_a_follow_would(seeded, "ml-prod", "followed-1")
    update = poll(client, page)[1]
    assert inserted(update) == [f"task-row-{first}"]
    second = track_as_a_follow_would(seeded, "ml-prod", "followed-2")
    update = poll(client, update)[1]
    assert inserted(update) == [f"task-row-{second}"]  # two added: a page's worth
    track_as_a_follow_would(seeded, "ml-prod", "followed-3")
    update = poll(client, update)[1]
    assert inserted(update) == []
    note = update.select_one("#live-arrivals[hx-swap-oob=true] a")
    assert note.get_text() == "1 new task matches this view — show it"


def test_a_task_that_matches_only_later_still_arrives(client, seeded):
    page = soup(client.get("/?state=failed"))
    with seeded.app_context():
        task, _ = store.track("ml-prod", "late-1", via="follow")  # not fetched: unknown state
        db.session.commit()
    assert poll(client, page)[1].find("tbody") is None
    with seeded.app_context():
        task = store.get_task("ml-prod", "late-1")
        store.apply_fetch(
            task, NormalizedTask("late-1", TaskState.FAILED, "FAILED", True, raw={}), utcnow()
        )
        db.session.commit()
    rows = poll(client, page)[1].select("template")
    assert any(t.find("a", class_="task-link", string="late-1") for t in rows)


def test_finished_tasks_of_other_views_are_not_looked_at_again(client, seeded):
    page = soup(client.get("/?source=ml-prod"))
    elsewhere = track_as_a_follow_would(seeded, "mixpeek-prod", "done-1", TaskState.SUCCEEDED)
    status, update = poll(client, page)
    assert status == 200 and update.find("tbody") is None
    # It cannot come to match (finished), so the next poll starts past it: nothing new to read.
    since = parse_qs(urlsplit(update.select_one("#live-poller")["hx-get"]).query)["since"]
    assert since == [str(elsewhere)]


def test_other_orders_say_how_many_new_tasks_match(client, seeded):
    page = soup(client.get("/?sort=id&source=ml-prod"))
    track_as_a_follow_would(seeded, "ml-prod", "followed-1")
    track_as_a_follow_would(seeded, "ml-prod", "followed-2")
    track_as_a_follow_would(seeded, "mixpeek-prod", "elsewhere-1")
    status, update = poll(client, page)
    assert status == 200 and update.find("tbody") is None
    note = update.select_one("#live-arrivals[hx-swap-oob=true] a")
    assert note.get_text() == "2 new tasks match this view — show them"
    assert parse_qs(urlsplit(note["href"]).query) == {"sort": ["id"], "source": ["ml-prod"]}
    assert page.select_one("#live-arrivals") is not None


def test_an_empty_first_page_fills_itself(client, app):
    page = soup(client.get("/?source=ml-prod"))
    assert page.select_one("p.empty") is not None
    assert page.select_one("#live-poller")["data-polling"] == "true"
    status, _ = poll(client, page)  # nothing yet: 204, and the same poll later fills the page
    assert status == 204
    track_as_a_follow_would(app, "ml-prod", "first-1")
    response = client.get(page.select_one("#live-poller")["hx-get"])
    assert response.headers["HX-Retarget"] == "#results"
    assert response.headers["HX-Reswap"] == "outerHTML"
    assert row_ids(soup(response)) == ["first-1"]


def test_a_later_page_stops_polling_once_its_rows_settle(client, app):
    for i in range(3):
        add_task_in(app, "ml-prod", f"done-{i}", created=utcnow() - timedelta(minutes=i))
    first = soup(client.get("/?limit=2&source=ml-prod"))
    later = soup(client.get(first.select_one("a[rel=next]")["href"]))
    assert row_ids(later) == ["done-2"]
    poller = later.select_one("#live-poller")
    assert poller["data-polling"] == "false" and not poller.has_attr("hx-get")


def test_without_javascript_polling_is_a_refresh_link(client, seeded):
    poller = soup(client.get("/?state=active")).select_one("#live-poller")
    assert poller.noscript.a["href"] == "/?state=active"


# -- bulk untrack --------------------------------------------------------------------------------
def test_untrack_ticked_rows(client, seeded):
    page = soup(client.get("/?view=all"))
    form = page.select_one("form#bulk-untrack")
    boxes = page.select("#bulk-untrack input[name=task]")
    assert len(boxes) == 5
    chosen = [b["value"] for b in boxes[:2]]
    response = client.post(
        form["action"],
        data={"csrf_token": csrf(client), "task": chosen, "next": "/?view=all"},
    )
    assert response.status_code == 303 and response.headers["Location"] == "/?view=all"
    after = soup(client.get("/?view=all"))
    assert row_ids(after) == ["f1", "s1", "e1"]
    assert "Stopped tracking 2 tasks." in after.select_one(".messages").get_text()
    nothing = client.post(form["action"], data={"csrf_token": csrf(client), "next": "https://x"})
    assert nothing.headers["Location"] == "/"  # never off the site


# -- charts ----------------------------------------------------------------------------------------
def test_charts_are_server_side_svg_with_text_alternatives(client, seeded):
    placeholder = soup(client.get("/?view=all")).select_one("#charts")
    assert placeholder["hx-trigger"] == "load"
    fragment = soup(client.get(placeholder["hx-get"], headers=HX))
    assert fragment.select_one("html") is None
    timeline, durations = fragment.select("svg.chart[role=img]")
    assert timeline.title.get_text() == "Tasks by state over time"
    per_state: dict[str, int] = {}
    for segment in timeline.select("rect.seg"):
        count, state = segment.title.get_text().rsplit(": ", 1)[1].split()
        per_state[state] = per_state.get(state, 0) + int(count)
    assert per_state == {"running": 2, "succeeded": 2, "failed": 1}
    assert "DEPLOY_MODEL" in durations.desc.get_text()
    table = fragment.select("details.chart-data table")[0]
    assert [th.get_text() for th in table.select("thead th")][1:] == [
        "running",
        "succeeded",
        "failed",
    ]
    legend = [li.get_text(strip=True) for li in fragment.select(".chart-legend li")]
    assert legend == ["running", "succeeded", "failed"]
    # Without JavaScript the same URL is a page of its own.
    page = soup(client.get(placeholder["hx-get"]))
    assert page.select_one("h1").get_text() == "Charts for this view"
    assert page.select_one("#charts svg.chart")


def test_charts_of_an_empty_view(client, seeded):
    fragment = soup(client.get("/tasks/charts?state=expired", headers=HX))
    assert "Nothing to chart" in fragment.get_text()


# -- export ----------------------------------------------------------------------------------------
def test_export_streams_every_page_of_the_view_as_csv(client, seeded, monkeypatch):
    monkeypatch.setattr(task_export, "BATCH", 2)
    links = soup(client.get("/?source=ml-prod&sort=id")).select(".export a")
    assert [a.get_text() for a in links] == ["CSV", "JSON"]
    response = client.get(links[0]["href"])
    assert response.is_streamed
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="tasks-')
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [r["task_id"] for r in rows] == ["e1", "f1", "r1"]
    failed = rows[1]
    assert failed["error"] == "'=1+1 OOM"  # a spreadsheet must not run upstream text
    assert failed["labels"] == "urgent" and failed["url"].endswith("/tasks/ml-prod/f1")
    assert rows[2]["note"] == "watch this"


def test_export_as_json_is_the_api_object_plus_annotations(client, seeded, monkeypatch):
    monkeypatch.setattr(task_export, "BATCH", 2)
    response = client.get("/tasks/export.json?q=label:urgent")
    data = json.loads(response.get_data(as_text=True))
    assert [t["task_id"] for t in data] == ["f1"]
    assert data[0]["labels"] == ["urgent"] and data[0]["state"] == "failed"
    assert set(data[0]) >= {"source", "upstream_status", "raw", "links", "note"}
    everything = json.loads(client.get("/tasks/export.json?view=all").get_data(as_text=True))
    assert len(everything) == 5
    assert client.get("/tasks/export.json?sort=colour").status_code == 400


# -- saved views -------------------------------------------------------------------------------
def test_save_a_view_share_it_and_make_it_the_teams_default(client, seeded):
    page = soup(client.get("/?state=problems&sort=type"))
    form = page.select_one(".save-view form")
    assert form.select_one("input[name=query]")["value"] == "state=problems&sort=type"
    data = {i["name"]: i.get("value", "") for i in form.select("input[type=hidden]")}
    response = client.post(form["action"], data={**data, "name": "  Problems  ", "default": "1"})
    assert response.status_code == 303
    assert response.headers["Location"] == "/?state=problems&sort=type"
    with seeded.app_context():
        view = db.session.query(SavedView).one()
        assert (view.name, view.is_default) == ("Problems", True)
        view_id = view.id
    # "/" now opens the team's default, and every task is still a click away.
    opened = client.get("/")
    assert opened.status_code == 302 and opened.headers["Location"] == "/?state=problems&sort=type"
    shown = soup(client.get(opened.headers["Location"]))
    assert shown.select_one(".view-links a[aria-current=page]").get_text() == "Problems"
    assert shown.select_one("title").get_text().startswith("Problems")
    everything = soup(
        client.get(shown.select_one(".view-links a:-soup-contains('All tasks')")["href"])
    )
    assert len(row_ids(everything)) == 5
    # The lasting link follows the view.
    assert client.get(f"/views/{view_id}").headers["Location"] == "/?state=problems&sort=type"
    duplicate = client.post(
        form["action"], data={**data, "name": "Problems"}, follow_redirects=True
    )
    assert "exists already" in soup(duplicate).select_one(".message-error").get_text()


def test_manage_views_default_off_and_delete(client, seeded):
    token = csrf(client)
    client.post(
        "/views",
        data={"csrf_token": token, "name": "Mine", "query": "source=ml-prod", "default": "1"},
    )
    manage = soup(client.get("/?view=all")).select_one("details.manage-views")
    default_form, delete_form = manage.select("form")
    assert default_form.button.get_text() == "Stop being the default"
    data = {i["name"]: i["value"] for i in default_form.select("input[type=hidden]")}
    client.post(default_form["action"], data=data)
    assert client.get("/").status_code == 200  # no default: every task
    data = {i["name"]: i["value"] for i in delete_form.select("input[type=hidden]")}
    client.post(delete_form["action"], data=data)
    with client.application.app_context():
        assert db.session.query(SavedView).count() == 0
    assert client.get("/views/999").status_code == 404
    bad = client.post("/views", data={"csrf_token": token, "name": "x", "query": "sort=colour"})
    assert bad.status_code == 303


def test_a_row_read_as_a_task_row_draws_as_the_task_itself_does(app):
    """The list reads rows as :class:`TaskRow` (the columns a row shows). A row that starts to
    show a column TaskRow lacks would draw it empty; drawn from the whole task it would not."""
    long_error = "the upstream says: " + "x" * 120
    with app.app_context():
        task = add_task(
            "ml-prod",
            "every-field",
            state=TaskState.FAILED,
            name="named",
            error=long_error,
            labels=("urgent", "b&w"),
            note="a <note>",
            fetch_error="timed out",
        )
        task.overdue, task.overdue_reason = True, "running 3x longer than usual"
        db.session.commit()
        with app.test_request_context("/"):
            rows = app.jinja_env.get_template("tasks/_row.html").module.task_rows
            as_row = str(rows(rows_by_ids([task.id]), True))
            as_task = str(rows([store.get_task("ml-prod", "every-field")], True))
    assert as_row == as_task
    for shown in ("named", "urgent", "b&amp;w", "overdue", "fetch error", 'title="the upstream'):
        assert shown in as_row
