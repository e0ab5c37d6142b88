"""Pages and fragments, read from the cache: structure asserted with a parser."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import pytest

from tests.helpers import list_cell
from tests.helpers import soup
from webapp.db import store
from webapp.db.models import Task
from webapp.db.models import db
from webapp.db.models import utcnow
from webapp.domain import NormalizedTask
from webapp.domain import TaskState
from webapp.version import __version__


def seed_tasks(app, source="ml-prod", count=5, state=TaskState.RUNNING, **fields):
    now = utcnow()
    with app.app_context():
        for i in range(count):
            task, _ = store.track(source, f"{state.value}-{i}", now=now)
            result = NormalizedTask(
                task_id=task.task_id,
                state=state,
                upstream_status=fields.get("word", "RUNNING"),
                terminal=state not in (TaskState.RUNNING, TaskState.QUEUED),
                raw={"state": "x"},
                task_type=fields.get("task_type", "DEPLOY_MODEL"),
                created_at=now - timedelta(minutes=count - i),
            )
            store.apply_fetch(task, result, now)
        db.session.commit()


@pytest.fixture
def client(ml_app):
    return ml_app.test_client()


def test_list_shows_rows_newest_first_with_state_and_upstream_word(ml_app, client):
    seed_tasks(ml_app)
    page = soup(client.get("/"))
    rows = page.select("#task-rows tr")
    assert [r.select_one("a.task-link").get_text() for r in rows] == [
        f"running-{i}" for i in range(4, -1, -1)
    ]
    first = rows[0]
    assert first.select_one(".badge-state").get_text() == "running"
    assert list_cell(first, "Upstream").get_text() == "RUNNING"
    assert list_cell(first, "Type").get_text() == "DEPLOY_MODEL"
    assert list_cell(first, "Created").select_one("time")["datetime"].endswith("Z")
    assert page.select_one("th[aria-sort]").get_text(strip=True).startswith("Created")


def test_the_narrow_layout_names_each_cell_as_its_header_does(ml_app, client):
    """Rows carry no labels; the stylesheet names cells by their place from the end, which
    must stay in step with the table's headers."""
    seed_tasks(ml_app, count=1)
    headers = [th.get_text(strip=True) for th in soup(client.get("/")).select("table.tasks th")]
    css = (Path(ml_app.root_path).parent / "static/css/app.css").read_text()
    named = dict(
        re.findall(r'table\.tasks td:nth-last-child\((\d+)\)::before \{ content: "([^"]+)"', css)
    )
    assert headers[0] == ""  # the tick box (editors only), tenth from the end
    for place, header in enumerate(reversed(headers[1:]), start=1):
        assert header.startswith(named[str(place)]), (place, header)


def test_filters_by_state_group_source_and_qualifiers(ml_app, client):
    seed_tasks(ml_app, count=3)
    seed_tasks(ml_app, count=2, state=TaskState.FAILED, word="FAILED", task_type="TRAINING")
    ids = lambda r: sorted(a.get_text() for a in soup(r).select("a.task-link"))  # noqa: E731
    assert ids(client.get("/?state=problems")) == ["failed-0", "failed-1"]
    assert ids(client.get("/?state=active")) == ["running-0", "running-1", "running-2"]
    assert ids(client.get("/?q=state:failed")) == ["failed-0", "failed-1"]
    assert ids(client.get("/?q=type:TRAINING")) == ["failed-0", "failed-1"]
    assert ids(client.get("/?q=running-1")) == ["running-1"]
    assert ids(client.get("/?source=other")) == []
    summary = soup(client.get("/")).select_one(".summary")
    assert {a.get_text() for a in summary.select("a.count")} == {"2 failed", "3 running"}


def test_keyset_pages_cover_every_task_once(ml_app, client):
    seed_tasks(ml_app, count=7)
    seen = []
    url = "/?limit=3"
    while url:
        page = soup(client.get(url))
        seen += [a.get_text() for a in page.select("a.task-link")]
        older = page.select_one("a[rel=next]")
        url = older["href"] if older else None
    assert seen == [f"running-{i}" for i in range(6, -1, -1)]


def test_keyset_pages_back_with_newer(ml_app, client):
    seed_tasks(ml_app, count=7)
    second = soup(client.get(soup(client.get("/?limit=3")).select_one("a[rel=next]")["href"]))
    assert [a.get_text() for a in second.select("a.task-link")] == [
        "running-3",
        "running-2",
        "running-1",
    ]
    first = soup(client.get(second.select_one("a[rel=prev]")["href"]))
    assert [a.get_text() for a in first.select("a.task-link")] == [
        "running-6",
        "running-5",
        "running-4",
    ]
    assert first.select_one("a[rel=prev]") is None


def test_bad_query_values_get_a_clear_message(client):
    response = client.get("/?sort=colour")
    assert response.status_code == 400
    assert "sort: unknown column 'colour'" in soup(response).select_one("[role=alert]").get_text()
    assert (
        client.get("/api/v1/tasks?state=happy").get_json()["error"]
        == "state: unknown state 'happy'"
    )


def test_partial_and_full_responses_vary_on_hx_request(ml_app, client):
    seed_tasks(ml_app, count=2)
    full = client.get("/?state=active")
    partial = client.get("/?state=active", headers={"HX-Request": "true"})
    boosted = client.get("/?state=active", headers={"HX-Request": "true", "HX-Boosted": "true"})
    assert "HX-Request" in full.headers["Vary"] and "HX-Request" in partial.headers["Vary"]
    assert soup(full).select_one("html") is not None
    assert soup(partial).select_one("html") is None
    assert soup(partial).select_one("section#results table.tasks") is not None
    assert soup(boosted).select_one("html") is not None


def test_live_poll_brings_new_counts_when_a_task_off_the_page_changes(ml_app, client):
    seed_tasks(ml_app, count=2)
    url = soup(client.get("/?view=all&limit=1")).select_one("#live-poller")["hx-get"]
    assert client.get(url).status_code == 204
    with ml_app.app_context():
        off_page = store.get_task("ml-prod", "running-0")
        store.apply_fetch(
            off_page,
            NormalizedTask("running-0", TaskState.FAILED, "FAILED", True, raw={}),
            utcnow() + timedelta(seconds=1),
        )
        db.session.commit()
    update = client.get(url)
    with ml_app.app_context():
        recounted = db.engine.dialect.name == "sqlite"
    if not recounted:
        # PostgreSQL counts by reading tasks, so a poll recounts only when its rows changed.
        assert update.status_code == 204
        return
    assert update.status_code == 200
    assert soup(update).find_all("template") == []  # the row on the page did not change
    summary = soup(update).select_one("#summary[hx-swap-oob]")
    assert "1 failed" in summary.get_text(" ", strip=True)
    again = soup(update).select_one("#live-poller")["hx-get"]
    assert again != url and client.get(again).status_code == 204


def test_live_poll_returns_changed_rows_out_of_band_and_stops_when_done(ml_app, client):
    seed_tasks(ml_app, count=2)
    page = soup(client.get("/"))
    poller = page.select_one("#live-poller")
    url = poller["hx-get"]
    assert poller["hx-trigger"].startswith("every ")
    nothing = client.get(url)
    # Nothing the page shows has changed: draw nothing, and keep asking the same.
    assert nothing.status_code == 204 and nothing.data == b""
    with ml_app.app_context():
        task = store.get_task("ml-prod", "running-0")
        task_pk = task.id
        store.apply_fetch(
            task,
            NormalizedTask("running-0", TaskState.SUCCEEDED, "COMPLETED", True, raw={}),
            utcnow() + timedelta(seconds=1),
        )
        db.session.commit()
    update = client.get(url)
    # Rows travel inside <template> (a bare <tr> cannot stand alone); soupsieve does not
    # look into template contents, so walk them directly.
    rows = [template.find("tr") for template in soup(update).find_all("template")]
    assert [r["id"] for r in rows] == [f"task-row-{task_pk}"]
    assert rows[0]["hx-swap-oob"] == "true"
    # (strings inside <template> are left out of get_text(), hence decode_contents)
    assert rows[0].find(class_="badge-state").decode_contents() == "succeeded"
    next_poller = soup(update).select_one("#live-poller")
    assert next_poller["hx-get"] != url
    with ml_app.app_context():
        other = store.get_task("ml-prod", "running-1")
        other.terminal = True
        other.state = "failed"
        other.changed_at = other.last_fetched_at = utcnow() + timedelta(seconds=5)
        db.session.commit()
    # No row is active; the first page still watches for newly tracked tasks (issue 13:
    # intended, it used to stop here). A poller that does not (a later page's) stops.
    watching = soup(client.get(next_poller["hx-get"])).select_one("#live-poller")
    args = parse_qs(urlsplit(watching["hx-get"]).query)
    assert "rows" not in args and "since" in args
    final = client.get("/tasks/live", query_string={k: v for k, v in args.items() if k != "since"})
    assert final.status_code == 286
    assert not soup(final).select_one("#live-poller").has_attr("hx-trigger")


def test_unknown_source_and_task_get_a_real_404_page(ml_app, client):
    for url, words in [
        ("/tasks/nope/x", "no source called"),
        ("/tasks/ml-prod/x", "is not tracked"),
    ]:
        response = client.get(url)
        assert response.status_code == 404
        assert words in soup(response).select_one("main").get_text()
        assert client.get(url + "/status").status_code == 404
        api = client.get("/api/v1" + url)
        assert api.status_code == 404 and words in api.get_json()["error"]


def test_track_form_tracks_and_redirects_to_the_task(ml_app, client):
    page = soup(client.get("/"))
    form = page.select_one("form.track-form")
    token = form.select_one("input[name=csrf_token]")["value"]
    response = client.post(
        form["action"], data={"csrf_token": token, "source": "ml-prod", "task_ids": "abc/1"}
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/tasks/ml-prod/abc%2F1"
    with ml_app.app_context():
        assert store.get_task("ml-prod", "abc/1") is not None


def test_track_form_accepts_many_ids_and_upstream_urls(ml_app, ml_source, client):
    token = soup(client.get("/")).select_one("input[name=csrf_token]")["value"]
    url = f"{ml_source.base_url}/_plugins/_ml/tasks/from-url"
    response = client.post(
        "/tasks/track", data={"csrf_token": token, "source": "", "task_ids": f"{url}\nbare-id"}
    )
    assert response.status_code == 303
    with ml_app.app_context():
        assert store.get_task("ml-prod", "from-url") is not None
        assert store.get_task("ml-prod", "bare-id") is None
    messages = soup(client.get("/")).select(".message-error")
    assert "bare-id: choose the source" in messages[0].get_text()


def test_posts_without_the_csrf_token_are_refused(client):
    response = client.post("/tasks/track", data={"source": "ml-prod", "task_ids": "x"})
    assert response.status_code == 400


def test_refresh_now_makes_the_task_due_without_calling_upstream(ml_app, client):
    seed_tasks(ml_app, count=1, state=TaskState.SUCCEEDED, word="COMPLETED")
    with ml_app.app_context():
        task = store.get_task("ml-prod", "succeeded-0")
        task.next_poll_at = None
        task_pk = task.id
        db.session.commit()
    token = soup(client.get("/")).select_one("input[name=csrf_token]")["value"]
    response = client.post(
        "/tasks/ml-prod/succeeded-0/refresh", headers={"HX-Request": "true", "X-CSRF-Token": token}
    )
    assert response.status_code == 200
    assert soup(response).select_one("button")["disabled"] is not None
    with ml_app.app_context():
        assert db.session.get(Task, task_pk).next_poll_at is not None


def test_detail_page_structure(ml_app, client):
    seed_tasks(ml_app, count=1)
    page = soup(client.get("/tasks/ml-prod/running-0"))
    assert page.select_one("h1 code.task-id").get_text() == "running-0"
    status = page.select_one("#task-status")
    assert status["aria-live"] == "polite"
    assert status["hx-get"].startswith("/tasks/ml-prod/running-0/status?v=")
    assert page.select_one("#task-history tbody tr code").get_text() == "RUNNING"
    assert page.select_one("details.raw pre.json").get_text().strip().startswith("{")
    assert {b.get_text() for b in page.select("button.copy")} == {"Copy id", "Copy link"}


def test_pages_load_htmx_from_our_static_path_only(client):
    page = soup(client.get("/"))
    scripts = [s["src"] for s in page.select("script[src]")]
    assert scripts and all(src.startswith("/static/") for src in scripts)
    assert any(src.startswith("/static/vendor/htmx-2.0.11") for src in scripts)
    assert not page.select('link[href^="http"]')


def test_healthz(client):
    answer = client.get("/healthz").get_json()
    assert {"status": "ok", "database": "ok"}.items() <= answer.items()
    with client.application.app_context():
        assert answer["backend"] == db.engine.dialect.name
        assert answer["database_url"] == db.engine.url.render_as_string(hide_password=True)
    assert answer["schema"]["current"] is True
    assert answer["schema"]["revision"] == answer["schema"]["head"]
    assert answer["version"] == __version__


def test_sources_page_lists_health(ml_app, client):
    page = soup(client.get("/sources"))
    row = page.select_one("#source-ml-prod")
    assert row.select_one(".health").get_text() == "unknown"
    assert "ML_PROD_PASS" in row.get_text() or "password_env" in row.get_text()
    assert "demo-password" not in page.get_text()


def test_time_display_preference_is_a_cookie_the_server_renders(ml_app, client):
    seed_tasks(ml_app, count=1)

    def created_cell() -> Any:
        row = soup(client.get("/")).select_one("#task-rows tr")
        return list_cell(row, "Created").select_one("time")

    utc_cell = created_cell()
    # The text says the exact time already, so the row spends no bytes on a hover title.
    assert utc_cell.get_text().endswith(" UTC") and not utc_cell.has_attr("title")
    response = client.get("/preferences/time?mode=relative&next=/?state=active")
    assert response.status_code == 303 and response.headers["Location"] == "/?state=active"
    relative = created_cell()
    assert relative.get_text().endswith(" ago") and relative["title"] == utc_cell["datetime"]
    client.set_cookie("taskdeck_tz", "Asia/Seoul")
    client.get("/preferences/time?mode=local")
    local = created_cell()
    assert local.get_text().endswith(" KST")
    assert soup(client.get("/")).select_one("#time-mode option[selected]")["value"] == "local"


def test_preference_redirects_stay_on_this_site(client):
    for target in (
        "https://evil.example/",
        "//evil.example/x",
        "javascript:alert(1)",
        # Browsers read "\" as "/" and drop tabs and newlines from a Location.
        "/\\evil.example/x",
        "/\t/evil.example/x",
    ):
        response = client.get("/preferences/time", query_string={"mode": "utc", "next": target})
        assert response.headers["Location"] == "/"
    assert client.get("/preferences/time?mode=sideways").status_code == 400
