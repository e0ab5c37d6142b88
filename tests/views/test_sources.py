"""/sources: health, and sources added and edited from the UI."""

from __future__ import annotations

from tests.helpers import csrf
from tests.helpers import soup
from webapp.db.models import Source
from webapp.db.models import db
from webapp.sources.registry import registry


def test_add_a_source_from_the_ui_and_edit_it(
    ml_app, ml_source, app_factory, monkeypatch, sim_server
):
    monkeypatch.setenv("TEAM_MIXPEEK_KEY", "sk_test_demo_key")
    client = ml_app.test_client()
    token = csrf(client)
    form = {
        "csrf_token": token,
        "name": "team-mixpeek",
        "provider": "mixpeek",
        "base_url": f"{sim_server.url}/mixpeek",
        "poll_interval": "7",
        "api_key_env": "TEAM_MIXPEEK_KEY",
        "verify_tls": "on",
    }
    response = client.post("/sources", data=form)
    assert response.status_code == 303
    page = soup(client.get("/sources"))
    row = page.select_one("#source-team-mixpeek")
    assert "added in the UI" in row.get_text()
    assert "sk_test_demo_key" not in page.get_text()
    assert registry(ml_app).get("team-mixpeek").poll_interval == 7
    # A restart loads it from the database.
    restarted = registry(app_factory([ml_source]))
    assert restarted.get("team-mixpeek").origin == "database"
    assert restarted.get("team-mixpeek").secret("api_key_env") == "sk_test_demo_key"

    edit = soup(client.get(row.select_one("a[href$='/edit']")["href"]))
    assert float(edit.select_one("#f-poll_interval")["value"]) == 7
    response = client.post("/sources/team-mixpeek", data={**form, "poll_interval": "30"})
    assert response.status_code == 303
    assert registry(ml_app).get("team-mixpeek").poll_interval == 30


def test_bad_source_is_refused_with_the_field_named(ml_app):
    client = ml_app.test_client()
    token = csrf(client)
    response = client.post(
        "/sources",
        data={
            "csrf_token": token,
            "name": "x",
            "provider": "mixpeek",
            "base_url": "http://h",
            "api_key_env": "NOT_SET_ANYWHERE",
        },
    )
    assert response.status_code == 422
    error = soup(response).select_one("#form-error").get_text()
    assert (
        error == "source 'x': field 'api_key_env': environment variable NOT_SET_ANYWHERE is not set"
    )
    # The form keeps what was typed.
    assert soup(response).select_one("#f-base_url")["value"] == "http://h"


def test_file_sources_cannot_be_edited_or_shadowed(ml_app):
    client = ml_app.test_client()
    assert client.get("/sources/ml-prod/edit").status_code == 403
    token = csrf(client)
    response = client.post(
        "/sources",
        data={
            "csrf_token": token,
            "name": "ml-prod",
            "provider": "opensearch-ml",
            "base_url": "http://h",
        },
    )
    assert response.status_code == 422
    assert "already used" in soup(response).select_one("#form-error").get_text()


def test_a_file_source_wins_over_a_database_one_of_the_same_name(
    app_factory, ml_source, instance_path
):
    app = app_factory([])
    with app.app_context():
        db.session.add(
            Source(
                name="ml-prod",
                provider="opensearch-ml",
                origin="database",
                settings={"name": "ml-prod", "provider": "opensearch-ml", "base_url": "http://old"},
            )
        )
        db.session.commit()
    assert registry(app_factory([])).get("ml-prod").base_url == "http://old"
    again = app_factory([ml_source])
    assert registry(again).get("ml-prod").origin == "file"
    assert registry(again).get("ml-prod").base_url == ml_source.base_url


def test_track_related_is_a_checkbox_of_the_source_form(ml_app, monkeypatch, sim_server):
    monkeypatch.setenv("TEAM_MIXPEEK_KEY", "sk_test_demo_key")
    client = ml_app.test_client()
    form = {
        "csrf_token": csrf(client),
        "name": "linked-mixpeek",
        "provider": "mixpeek",
        "base_url": f"{sim_server.url}/mixpeek",
        "api_key_env": "TEAM_MIXPEEK_KEY",
        "track_related": "on",
    }
    assert client.post("/sources", data=form).status_code == 303
    assert registry(ml_app).get("linked-mixpeek").track_related is True
    edit = soup(client.get("/sources/linked-mixpeek/edit"))
    assert edit.select_one("input#f-track_related[type=checkbox]").has_attr("checked")
    # Left unticked, it is off (a browser sends nothing for an unticked box).
    del form["track_related"]
    assert client.post("/sources/linked-mixpeek", data=form).status_code == 303
    assert registry(ml_app).get("linked-mixpeek").track_related is False
    edit = soup(client.get("/sources/linked-mixpeek/edit"))
    assert not edit.select_one("input#f-track_related").has_attr("checked")
