"""Sign-in with OpenID Connect (``TASKDECK_AUTH=oidc``), end to end over loopback HTTP.

The app runs on a real server and httpx plays the browser, following redirects between it and
the small provider in tests/oidc_provider.py, so the redirect URI, the session cookie, the state,
the PKCE verifier and the signed ID token all travel as they would for a person.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from flask import Flask

from tests.helpers import soup
from tests.oidc_provider import OpenIDProvider
from tests.oidc_provider import new_key
from tests.postgres import free_port
from webapp import logs
from webapp.access import oidc
from webapp.access import oidc_accounts
from webapp.config import ConfigError
from webapp.db.models import AuditEvent
from webapp.db.models import User
from webapp.db.models import db
from webapp.simulators.server import ServerThread


@dataclass
class Site:
    app: Flask
    url: str

    def browser(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, follow_redirects=True, timeout=10)

    def audit_events(self) -> list[tuple[str, str, str | None, dict[str, Any]]]:
        """``(actor, action, target, details)`` of each audit event, oldest first."""
        with self.app.app_context():
            events = db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.id))
            return [(e.actor, e.action, e.target, dict(e.details or {})) for e in events]

    def users(self) -> list[User]:
        with self.app.app_context():
            users = list(db.session.scalars(sa.select(User).order_by(User.id)))
            db.session.expunge_all()
            return users


@pytest.fixture
def provider() -> Iterator[OpenIDProvider]:
    with OpenIDProvider() as running:
        yield running


def oidc_config(provider: OpenIDProvider, **changes: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "AUTH": "oidc",
        "OIDC_ISSUER": provider.issuer,
        "OIDC_CLIENT_ID": provider.client_id,
        "OIDC_CLIENT_SECRET": provider.client_secret,
        "OIDC_PROVIDER_NAME": "Test SSO",
        "OIDC_ROLES_CLAIM": "groups",
        "OIDC_ADMIN_VALUES": "ops",
        "OIDC_EDITOR_VALUES": "staff, dev",
    }
    config.update(changes)
    return config


@pytest.fixture
def serve(app_factory, provider: OpenIDProvider) -> Iterator[Callable[..., Site]]:
    """``serve(**config)``: an app in ``oidc`` mode on its own loopback server, registered at
    the provider as the place to send browsers back to."""
    with ExitStack() as stack:

        def start(**config: Any) -> Site:
            app = app_factory(**oidc_config(provider, **config))
            server = stack.enter_context(ServerThread(app))
            provider.redirect_uri = f"{server.url}/login/oidc/callback"
            return Site(app, server.url)

        yield start


@pytest.fixture
def site(serve: Callable[..., Site]) -> Site:
    return serve()


def sign_in(browser: httpx.Client, path: str = "/?state=active") -> httpx.Response:
    """What a person does: open a page, get the sign-in page, press its button."""
    page = browser.get(path)
    assert page.url.path == "/login"
    button = soup(page).select_one("a#oidc-sign-in")
    assert button is not None and button.get_text(strip=True) == "Sign in with Test SSO"
    return browser.get(str(button["href"]))


def callback_url(browser: httpx.Client) -> str:
    """Start signing in and stop where the provider sends the browser back to Taskdeck."""
    start = browser.get("/login/oidc", follow_redirects=False)
    assert start.status_code == 302
    at_provider = browser.get(start.headers["Location"], follow_redirects=False)
    assert at_provider.status_code == 302
    return at_provider.headers["Location"]


def error_text(response: httpx.Response) -> str:
    return soup(response).select_one("main").get_text(" ", strip=True)


# -- the flow --------------------------------------------------------------------------------


def test_first_sign_in_creates_the_user_with_the_mapped_role_and_returns(site, provider):
    with site.browser() as browser:
        landed = sign_in(browser, "/?state=active")
        assert landed.status_code == 200
        assert (landed.url.path, landed.url.query) == ("/", b"state=active")
        assert "alice" in soup(landed).select_one("header").get_text()
        assert browser.get("/sources").status_code == 200  # signed in for the next pages too

    [user] = site.users()
    assert user.username == "alice"
    assert user.role == "editor"  # "staff" is in OIDC_EDITOR_VALUES
    assert user.oidc_subject == f"{provider.issuer} 0c2a-alice"
    assert user.email == "alice@example.test"
    assert user.password_hash is None
    assert user.last_login_at is not None

    # The code flow with PKCE, a nonce and the registered redirect URI.
    [asked] = provider.authorize_requests
    assert asked["response_type"] == "code"
    assert asked["code_challenge_method"] == "S256" and asked["code_challenge"]
    assert asked["nonce"] and asked["state"]
    assert asked["scope"].split() == ["openid", "email", "profile"]
    assert asked["redirect_uri"] == f"{site.url}/login/oidc/callback"
    [exchanged] = provider.token_requests
    assert exchanged["code_verifier"]
    assert site.audit_events() == [
        ("alice", "user.create", "alice", {"role": "editor", "via": "OpenID Connect"})
    ]


def test_second_sign_in_reuses_the_account_and_follows_the_providers_groups(site, provider):
    with site.browser() as browser:
        sign_in(browser)
    [first] = site.users()
    provider.user.claims["groups"] = ["staff", "ops"]
    provider.user.claims["preferred_username"] = "alice.renamed"
    with site.browser() as browser:
        assert sign_in(browser).status_code == 200
    [again] = site.users()
    assert again.id == first.id
    assert again.username == "alice"  # the subject is the key; the name stays
    assert again.role == "admin"
    assert again.last_login_at > first.last_login_at
    assert [event[:3] for event in site.audit_events()] == [
        ("alice", "user.create", "alice"),
        ("alice", "user.update", "alice"),
    ]
    assert site.audit_events()[1][3]["previous_role"] == "editor"
    with site.browser() as browser:
        sign_in(browser)  # nothing changed: nothing to record
    assert len(site.audit_events()) == 2


def test_without_a_roles_claim_newcomers_get_the_default_role_and_keep_roles_given_here(
    serve, provider
):
    site = serve(
        OIDC_ROLES_CLAIM=None, OIDC_ADMIN_VALUES="", OIDC_EDITOR_VALUES="", DEFAULT_ROLE="viewer"
    )
    with site.browser() as browser:
        sign_in(browser)
        assert browser.post("/sources", data={}).status_code in (400, 403)
    [user] = site.users()
    assert user.role == "viewer"
    with site.app.app_context():
        db.session.execute(sa.update(User).values(role="admin"))
        db.session.commit()
    with site.browser() as browser:
        sign_in(browser)
    assert [user.role for user in site.users()] == ["admin"]


def test_a_name_taken_by_someone_else_gets_a_number(site, provider):
    with site.app.app_context():
        db.session.add(User(username="alice", password_hash="local-account", role="admin"))
        db.session.commit()
    with site.browser() as browser:
        sign_in(browser)
    local, newcomer = site.users()
    assert local.oidc_subject is None and local.role == "admin"
    assert newcomer.username == "alice-2"
    assert newcomer.role == "editor"


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({"email": "bo@example.test", "name": "Bo"}, "bo@example.test"),
        ({"name": "Bo"}, "0c2a-alice"),
        ({"preferred_username": "  Bo  Lee\n"}, "Bo-Lee"),
    ],
    ids=["email", "subject", "cleaned"],
)
def test_the_user_name_falls_back_to_the_email_then_the_subject(site, provider, claims, expected):
    provider.user.claims = claims
    with site.browser() as browser:
        sign_in(browser)
    assert [user.username for user in site.users()] == [expected]


def test_claims_missing_from_the_id_token_come_from_userinfo(site, provider):
    provider.user.userinfo_only = ("preferred_username", "email", "groups")
    provider.user.claims["groups"] = ["ops"]
    with site.browser() as browser:
        sign_in(browser)
    [user] = site.users()
    assert (user.username, user.email, user.role) == ("alice", "alice@example.test", "admin")


def test_only_local_paths_are_followed_after_sign_in(site):
    with site.browser() as browser:
        browser.get("/login")
        landed = browser.get("/login/oidc", params={"next": "https://evil.example/steal"})
    assert landed.status_code == 200
    assert str(landed.url).startswith(site.url + "/")
    assert landed.url.path == "/"


def test_the_login_page_offers_the_provider_and_no_password(site):
    with site.browser() as browser:
        page = soup(browser.get("/login?next=/sources"))
    assert page.select_one("input[type=password]") is None
    button = page.select_one("a#oidc-sign-in")
    assert button.get_text(strip=True) == "Sign in with Test SSO"
    assert button["href"] == "/login/oidc?next=/sources"


def test_the_oidc_routes_are_not_found_in_other_modes(app_factory):
    client = app_factory(AUTH="local").test_client()
    assert client.get("/login/oidc").status_code == 404
    assert client.get("/login/oidc/callback?code=x&state=y").status_code == 404


# -- refusals --------------------------------------------------------------------------------


def test_a_tampered_state_is_refused(site):
    with site.browser() as browser:
        url = httpx.URL(callback_url(browser))
        tampered = url.copy_set_param("state", url.params["state"] + "x")
        response = browser.get(tampered)
        assert response.status_code == 400
        assert "not started from this browser" in error_text(response)
        assert browser.get("/sources").url.path == "/login"
    assert site.users() == []


def test_a_callback_from_another_browsers_sign_in_is_refused(site):
    """Someone cannot sign a victim in as themselves by sending them their callback link."""
    with site.browser() as attacker:
        url = callback_url(attacker)
    with site.browser() as victim:
        response = victim.get(url)
    assert response.status_code == 400
    assert site.users() == []


def _expired(now: int) -> dict[str, Any]:
    return {"exp": now - 600, "iat": now - 900}


BAD_ID_TOKENS: dict[str, Callable[[int], dict[str, Any]]] = {
    "wrong nonce": lambda now: {"nonce": "not-the-nonce-sent"},
    "no nonce": lambda now: {"nonce": None},
    "wrong audience": lambda now: {"aud": "another-client"},
    # Authlib alone would take this one: azp names us, so it only checks aud when told to.
    "wrong audience, our azp": lambda now: {"aud": ["another-client"], "azp": "taskdeck-test"},
    "wrong issuer": lambda now: {"iss": "http://127.0.0.1:9/other"},
    "expired": _expired,
    "no expiry": lambda now: {"exp": None},
}


@pytest.mark.parametrize("change", BAD_ID_TOKENS.values(), ids=BAD_ID_TOKENS.keys())
def test_an_id_token_that_does_not_verify_is_refused(site, provider, caplog, change):
    provider.id_token_changes = change(int(time.time()))
    with site.browser() as browser:
        response = sign_in(browser)
        assert response.status_code == 400
        assert "did not pass verification" in error_text(response)
        assert browser.get("/sources").url.path == "/login"
    assert site.users() == []
    assert any(
        r.levelno == logging.WARNING and "ID token refused" in r.getMessage()
        for r in caplog.records
    )


def test_an_id_token_signed_with_another_key_is_refused(site, provider):
    provider.sign_with = new_key()  # same key id as the published key, other key
    with site.browser() as browser:
        response = sign_in(browser)
    assert response.status_code == 400
    assert "did not pass verification" in error_text(response)
    assert site.users() == []


def test_an_answer_without_an_id_token_is_refused(site, provider):
    provider.omit_id_token = True
    with site.browser() as browser:
        response = sign_in(browser)
    assert response.status_code == 502
    assert "without an identity token" in error_text(response)
    assert site.users() == []


def test_a_token_answer_that_is_not_json_gives_a_clear_502(site, provider):
    provider.token_page_instead = True
    with site.browser() as browser:
        response = sign_in(browser)
    assert response.status_code == 502
    assert "Test SSO cannot be reached or answered with an error" in error_text(response)
    assert site.users() == []


def test_access_denied_at_the_provider_gives_a_clear_page(site, provider, caplog):
    provider.deny = "access_denied"
    with site.browser() as browser:
        response = sign_in(browser)
    assert response.status_code == 400
    text = error_text(response)
    assert "Test SSO did not sign you in" in text and "declined" in text
    assert "Traceback" not in response.text
    assert site.users() == []
    assert any("error='access_denied'" in r.getMessage() for r in caplog.records)


def test_a_provider_that_is_down_gives_a_clear_502(serve):
    site = serve(OIDC_ISSUER=f"http://127.0.0.1:{free_port()}")
    with site.browser() as browser:
        response = sign_in(browser)
    assert response.status_code == 502
    assert "Test SSO cannot be reached" in error_text(response)
    assert "Traceback" not in response.text


def test_a_provider_that_goes_down_before_the_callback_gives_a_clear_502(serve, provider):
    site = serve()
    with site.browser() as browser:
        url = callback_url(browser)
        provider.server.stop()
        response = browser.get(url)
    assert response.status_code == 502
    assert "cannot be reached" in error_text(response)
    assert site.users() == []


def test_a_provider_that_never_answers_times_out(serve):
    with socket.socket() as silent:
        # Connections are accepted by the kernel into the backlog, and never answered.
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        site = serve(OIDC_ISSUER=f"http://127.0.0.1:{silent.getsockname()[1]}", OIDC_TIMEOUT=0.3)
        with site.browser() as browser:
            started = time.monotonic()
            response = browser.get("/login/oidc")
            took = time.monotonic() - started
    assert response.status_code == 502
    assert took < 5


def test_a_discovery_document_naming_another_issuer_is_refused(serve, provider, caplog):
    site = serve(
        OIDC_ISSUER="https://sso.example.test/realms/main",
        OIDC_METADATA_URL=f"{provider.issuer}/.well-known/openid-configuration",
    )
    with site.browser() as browser:
        response = browser.get("/login/oidc")
    assert response.status_code == 502
    assert "ask your administrator" in error_text(response)
    assert provider.authorize_requests == []
    assert any("names the issuer" in r.getMessage() for r in caplog.records)


# -- secrets ---------------------------------------------------------------------------------


def test_the_client_secret_and_tokens_never_reach_a_page_or_a_log_line(serve, provider, caplog):
    caplog.set_level(logging.DEBUG)
    site = serve()
    pages: list[str] = []

    def browser() -> httpx.Client:
        client = site.browser()
        client.event_hooks["response"] = [lambda r: pages.append(r.read().decode())]
        return client

    with browser() as signed_in:
        sign_in(signed_in)
        signed_in.get("/sources")
    with browser() as tampering:
        tampering.get(callback_url(tampering).replace("state=", "state=x"))  # refused
    provider.id_token_changes = {"aud": "another-client"}
    with browser() as refused:
        sign_in(refused)
    provider.deny = "access_denied"
    with browser() as denied:
        sign_in(denied)
    secrets = [provider.client_secret, *provider.access_tokens]
    assert len(secrets) == 3 and len(pages) > 10
    logged = [record.getMessage() for record in caplog.records]
    for secret in secrets:
        assert not [page for page in pages if secret in page]
        assert not [line for line in logged if secret in line]


def test_the_client_secret_is_masked_should_anything_log_it(serve, provider):
    serve()
    record = logging.LogRecord(
        "webapp.test", logging.WARNING, __file__, 1, "secret: %s", (provider.client_secret,), None
    )
    logs.redactor.filter(record)
    assert record.getMessage() == "secret: ***"


# -- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("missing", "named"),
    [
        ({"OIDC_ISSUER": None}, "TASKDECK_OIDC_ISSUER"),
        ({"OIDC_CLIENT_ID": None}, "TASKDECK_OIDC_CLIENT_ID"),
        ({"OIDC_CLIENT_SECRET": ""}, "TASKDECK_OIDC_CLIENT_SECRET"),
        ({"OIDC_SCOPES": "email profile"}, "TASKDECK_OIDC_SCOPES"),
        ({"OIDC_ROLES_CLAIM": None}, "TASKDECK_OIDC_ROLES_CLAIM"),
        ({"OIDC_ISSUER": "sso.example.test"}, "TASKDECK_OIDC_ISSUER"),
        ({"OIDC_TIMEOUT": "soon"}, "TASKDECK_OIDC_TIMEOUT"),
        ({"DEFAULT_ROLE": "owner"}, "TASKDECK_DEFAULT_ROLE"),
    ],
    ids=["issuer", "client-id", "client-secret", "scopes", "roles-claim", "url", "timeout", "role"],
)
def test_a_missing_or_wrong_setting_stops_start_up_naming_it(
    bare_app_factory, provider, missing, named
):
    with pytest.raises(ConfigError, match=named) as raised:
        bare_app_factory(**oidc_config(provider, **missing))
    assert provider.client_secret not in str(raised.value)


def test_settings_from_the_environment_keep_their_text(bare_app_factory, monkeypatch, provider):
    """Flask reads TASKDECK_* variables as JSON: a client id of digits must stay text."""
    monkeypatch.setenv("TASKDECK_OIDC_CLIENT_ID", "12345")
    monkeypatch.setenv("TASKDECK_OIDC_CLIENT_SECRET", "1e3")
    monkeypatch.setenv("TASKDECK_OIDC_SCOPES", '["openid", "groups"]')
    config = oidc_config(provider)
    for name in ("OIDC_CLIENT_ID", "OIDC_CLIENT_SECRET"):
        del config[name]
    settings = oidc.oidc_client(bare_app_factory(**config)).settings
    assert (settings.client_id, settings.client_secret) == ("12345", "1e3")
    assert settings.scopes == ("openid", "groups")
    assert settings.metadata_url == f"{provider.issuer}/.well-known/openid-configuration"


def test_a_name_taken_between_the_check_and_the_insert_is_retried(app_factory, monkeypatch):
    """Two first sign-ins with one name at the same moment: the loser takes the next name."""
    app = app_factory()
    settings = oidc.OidcSettings(
        issuer="https://sso.example.test", metadata_url="unused", client_id="c", client_secret="s"
    )
    claims = {"iss": "https://sso.example.test", "sub": "s-1", "preferred_username": "alice"}
    real_free_username = oidc_accounts.free_username
    answers = iter(["alice"])  # what the check saw, before the other request inserted "alice"
    monkeypatch.setattr(
        oidc_accounts,
        "free_username",
        lambda wanted: next(answers, None) or real_free_username(wanted),
    )
    with app.app_context():
        db.session.add(User(username="alice", oidc_subject="https://sso.example.test s-0"))
        db.session.commit()
        user = oidc_accounts.sign_in(settings, claims)
        assert (user.username, user.oidc_subject) == ("alice-2", "https://sso.example.test s-1")
