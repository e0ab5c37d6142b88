"""Upstream secrets typed on the sources form: stored encrypted, never shown, kept or cleared
on edit, re-encrypted on key rotation; a wrong key makes that source misconfigured, not the
app broken."""

from __future__ import annotations

import logging

import pytest
from cryptography.fernet import Fernet

from tests.helpers import csrf
from tests.helpers import soup
from webapp.config import ConfigError
from webapp.db.models import Source
from webapp.db.models import db
from webapp.sources.registry import registry
from webapp.sources.sealed import SealedCredentialsError
from webapp.sources.sealed import open_sealed
from webapp.sources.sealed import parse_keys

SECRET = "sk_test_demo_key"  # what the Mixpeek simulator accepts
KEY = Fernet.generate_key().decode()


def form(sim_server, **fields):  # type: ignore[no-untyped-def]
    return {
        "name": "team-mixpeek",
        "provider": "mixpeek",
        "base_url": f"{sim_server.url}/mixpeek",
        "verify_tls": "on",
        **fields,
    }


def stored_row(app) -> Source:  # type: ignore[no-untyped-def]
    with app.app_context():
        row = db.session.get(Source, "team-mixpeek")
        db.session.expunge(row)
        return row


@pytest.fixture
def keyed_app(app_factory):  # type: ignore[no-untyped-def]
    return app_factory(SECRETS_KEY=KEY)


def test_a_typed_secret_is_stored_encrypted_and_never_shown(keyed_app, app_factory, sim_server):
    client = keyed_app.test_client()
    response = client.post(
        "/sources", data=form(sim_server, csrf_token=csrf(client), **{"secret-api_key_env": SECRET})
    )
    assert response.status_code == 303
    assert registry(keyed_app).get("team-mixpeek").secret("api_key_env") == SECRET

    row = stored_row(keyed_app)
    assert SECRET not in str(row.settings) and "api_key_env" not in row.settings
    assert SECRET not in row.encrypted_credentials
    assert open_sealed(row.encrypted_credentials, parse_keys(KEY)) == {"api_key_env": SECRET}

    edit = client.get("/sources/team-mixpeek/edit")
    assert SECRET not in edit.get_data(as_text=True)
    field = soup(edit).select_one("#f-secret-api_key_env")
    assert field["type"] == "password" and field["value"] == ""
    assert soup(edit).select_one("input[name=clear-api_key_env]") is not None
    assert SECRET not in client.get("/sources").get_data(as_text=True)

    # A restart opens it again.
    restarted = registry(app_factory(SECRETS_KEY=KEY)).get("team-mixpeek")
    assert restarted.secret("api_key_env") == SECRET


def test_a_blank_field_keeps_the_secret_and_clear_removes_it(keyed_app, sim_server):
    client = keyed_app.test_client()
    client.post(
        "/sources", data=form(sim_server, csrf_token=csrf(client), **{"secret-api_key_env": SECRET})
    )
    kept = client.post(
        "/sources/team-mixpeek", data=form(sim_server, csrf_token=csrf(client), poll_interval="9")
    )
    assert kept.status_code == 303
    assert registry(keyed_app).get("team-mixpeek").secret("api_key_env") == SECRET

    # Mixpeek needs its key: clearing it without another is refused, and the key stays.
    cleared = client.post(
        "/sources/team-mixpeek",
        data=form(sim_server, csrf_token=csrf(client), **{"clear-api_key_env": "on"}),
    )
    assert cleared.status_code == 422
    assert "api_key_env: required" in soup(cleared).select_one("#form-error").get_text()
    assert registry(keyed_app).get("team-mixpeek").secret("api_key_env") == SECRET


def test_naming_a_variable_replaces_the_stored_secret(keyed_app, sim_server, monkeypatch):
    monkeypatch.setenv("TEAM_KEY", "sk-from-the-environment")
    client = keyed_app.test_client()
    client.post(
        "/sources", data=form(sim_server, csrf_token=csrf(client), **{"secret-api_key_env": SECRET})
    )
    both = client.post(
        "/sources/team-mixpeek",
        data=form(
            sim_server,
            csrf_token=csrf(client),
            api_key_env="TEAM_KEY",
            **{"secret-api_key_env": "typed-too"},
        ),
    )
    assert both.status_code == 422
    assert "not both" in soup(both).select_one("#form-error").get_text()
    assert "typed-too" not in both.get_data(as_text=True)

    named = client.post(
        "/sources/team-mixpeek",
        data=form(sim_server, csrf_token=csrf(client), api_key_env="TEAM_KEY"),
    )
    assert named.status_code == 303
    assert (
        registry(keyed_app).get("team-mixpeek").secret("api_key_env") == "sk-from-the-environment"
    )
    assert stored_row(keyed_app).encrypted_credentials is None


def test_without_a_key_typed_secrets_are_refused_and_variables_still_work(
    app_factory, sim_server, monkeypatch
):
    app = app_factory()
    client = app.test_client()
    page = soup(client.get("/sources/new"))
    assert "TASKDECK_SECRETS_KEY" in page.select_one("#typed-secrets-off").get_text()
    assert page.select_one("#f-secret-api_key_env").has_attr("disabled")

    refused = client.post(
        "/sources", data=form(sim_server, csrf_token=csrf(client), **{"secret-api_key_env": SECRET})
    )
    assert refused.status_code == 422
    assert "TASKDECK_SECRETS_KEY" in soup(refused).select_one("#form-error").get_text()
    assert SECRET not in refused.get_data(as_text=True)
    assert registry(app).get("team-mixpeek") is None

    monkeypatch.setenv("TEAM_KEY", SECRET)
    named = client.post(
        "/sources", data=form(sim_server, csrf_token=csrf(client), api_key_env="TEAM_KEY")
    )
    assert named.status_code == 303


def test_a_wrong_key_makes_the_source_misconfigured_not_the_app(
    keyed_app, app_factory, sim_server, caplog
):
    client = keyed_app.test_client()
    client.post(
        "/sources", data=form(sim_server, csrf_token=csrf(client), **{"secret-api_key_env": SECRET})
    )
    other = app_factory(SECRETS_KEY=Fernet.generate_key().decode())
    caplog.set_level(logging.ERROR)
    page = other.test_client().get("/sources")
    assert page.status_code == 200
    problem = soup(page).select_one("#source-team-mixpeek").get_text(" ")
    assert "misconfigured" in problem and "cannot be decrypted" in problem
    assert registry(other).get("team-mixpeek") is None
    assert "team-mixpeek from the database is not usable" in caplog.text

    unkeyed = app_factory()
    problem = soup(unkeyed.test_client().get("/sources")).select_one("#source-team-mixpeek")
    assert "TASKDECK_SECRETS_KEY is not set" in problem.get_text(" ")


def test_rotation_a_new_key_first_opens_and_reseals_old_secrets(keyed_app, app_factory, sim_server):
    client = keyed_app.test_client()
    client.post(
        "/sources", data=form(sim_server, csrf_token=csrf(client), **{"secret-api_key_env": SECRET})
    )
    sealed_before = stored_row(keyed_app).encrypted_credentials
    new_key = Fernet.generate_key().decode()

    rotated = app_factory(SECRETS_KEY=f"{new_key},{KEY}")
    assert registry(rotated).get("team-mixpeek").secret("api_key_env") == SECRET
    sealed_after = stored_row(rotated).encrypted_credentials
    assert sealed_after != sealed_before
    # Sealed with the new key alone now: the old one can be dropped.
    assert open_sealed(sealed_after, parse_keys(new_key)) == {"api_key_env": SECRET}
    with pytest.raises(SealedCredentialsError):
        open_sealed(sealed_after, parse_keys(KEY))


def test_a_bad_key_stops_start_up_without_echoing_it(app_factory):
    with pytest.raises(ConfigError) as raised:
        app_factory(SECRETS_KEY="not-a-fernet-key-but-a-password")
    assert "TASKDECK_SECRETS_KEY: not a Fernet key" in str(raised.value)
    assert "Fernet.generate_key()" in str(raised.value)
    assert "not-a-fernet-key-but-a-password" not in str(raised.value)
