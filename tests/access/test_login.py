"""Local sign-in: the first-admin page, the form, throttling, the session cookie, signing out."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import timedelta

import pytest
import sqlalchemy as sa
from flask import Flask

from tests.access.conftest import PASSWORD
from tests.access.conftest import add_user
from tests.access.conftest import login
from tests.helpers import csrf
from tests.helpers import soup
from webapp.access import throttle
from webapp.access.roles import Role
from webapp.db.models import LoginThrottle
from webapp.db.models import User
from webapp.db.models import db
from webapp.db.models import utcnow


def from_address(address: str) -> dict[str, object]:
    return {"environ_base": {"REMOTE_ADDR": address}}


# -- no user yet ------------------------------------------------------------------------------


@pytest.fixture
def empty_app(app_factory: Callable[..., Flask]) -> Flask:
    return app_factory(AUTH="local")


@pytest.mark.parametrize("path", ["/", "/sources", "/tasks/ml/1", "/users", "/no-such-page"])
def test_with_no_user_pages_explain_how_to_create_the_first_admin(empty_app, path):
    response = empty_app.test_client().get(path)
    if path == "/no-such-page":
        assert response.status_code == 404  # nothing there to explain
        return
    assert response.status_code == 503
    page = soup(response)
    assert page.h1.get_text() == "Taskdeck is waiting for its first admin"
    assert page.select_one(".first-admin pre code").get_text() == (
        "taskdeck create-user NAME --role admin"
    )
    assert not page.select("table, form[method=post]")  # nothing else is served


def test_with_no_user_the_api_answers_401_saying_the_same(empty_app):
    client = empty_app.test_client()
    for path in ("/api/v1/tasks", "/metrics"):
        response = client.get(path)
        assert response.status_code == 401
        assert "taskdeck create-user NAME --role admin" in response.get_json()["error"]
    assert client.get("/healthz").status_code == 200
    with client.get("/static/css/app.css") as static:
        assert static.status_code == 200
    login_page = soup(client.get("/login"))
    assert login_page.select_one(".first-admin") is not None
    assert login_page.select_one("form.login-form") is not None


def test_the_first_admin_made_on_the_command_line_opens_the_dashboard(empty_app):
    result = empty_app.test_cli_runner().invoke(
        args=["create-user", "ada", "--role", "admin", "--password-stdin"],
        input=PASSWORD + "\n",
    )
    assert result.exit_code == 0 and "user ada created (admin)" in result.output
    client = empty_app.test_client()
    assert client.get("/").status_code == 302
    assert login(client, "ada").status_code == 303
    assert client.get("/users").status_code == 200


# -- the form ----------------------------------------------------------------------------------


def test_sign_in_starts_a_new_session_and_records_the_time(local_app):
    client = local_app.test_client()
    token_before = csrf(client, "/login")
    with client.session_transaction() as session:
        session["planted"] = "by someone else"
    before = utcnow()
    response = login(client, "ed")
    assert response.status_code == 303 and response.headers["Location"] == "/"
    with client.session_transaction() as session:
        assert "planted" not in session
        assert session.get("csrf_token") != token_before
        assert session.permanent
    with local_app.app_context():
        user = db.session.scalar(sa.select(User).where(User.username == "ed"))
        assert user.last_login_at is not None and user.last_login_at >= before
    header = soup(client.get("/")).select_one(".site-header").get_text()
    assert "ed (editor)" in header


@pytest.mark.parametrize(
    ("asked", "landed"),
    [
        ("/sources?q=a%5Cb", "/sources?q=a%5Cb"),
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
        # Browsers read "\" as "/" and drop tabs and newlines: these lead off the site too.
        ("/\\evil.example/", "/"),
        ("\\\\evil.example/", "/"),
        ("/\t/evil.example/", "/"),
        ("/\n/evil.example/", "/"),
    ],
    ids=repr,
)
def test_sign_in_lands_on_a_page_of_this_site_only(local_app, asked, landed):
    response = login(local_app.test_client(), "ed", query_string={"next": asked})
    assert response.status_code == 303 and response.headers["Location"] == landed


def test_logout_is_a_post_and_ends_the_session(local_app):
    client = local_app.test_client()
    login(client, "vera")
    assert client.get("/").status_code == 200
    assert client.get("/logout").status_code == 405
    page = soup(client.get("/"))
    token = page.select_one("form[action='/logout'] input[name=csrf_token]")["value"]
    response = client.post("/logout", data={"csrf_token": token})
    assert response.status_code == 303 and response.headers["Location"] == "/login"
    assert client.get("/").status_code == 302


def test_a_removed_user_is_signed_out_at_the_next_request(local_app, as_role):
    client = as_role(Role.EDITOR)
    assert client.get("/").status_code == 200
    with local_app.app_context():
        db.session.execute(sa.delete(User).where(User.username == "ed"))
        db.session.commit()
    assert client.get("/").status_code == 302


# -- throttling ----------------------------------------------------------------------------------


def test_five_failures_from_one_address_block_it_even_with_the_right_password(local_app):
    client = local_app.test_client()
    here = from_address("10.0.0.1")
    for _ in range(throttle.ADDRESS_LIMIT - 1):
        wrong = login(client, "ed", "not the password", **here)
        assert wrong.status_code == 200
        assert "wrong password" in soup(wrong).select_one(".message-error").get_text()
    fifth = login(client, "ed", "not the password", **here)
    assert fifth.status_code == 429
    sixth = login(client, "ed", PASSWORD, **here)
    assert sixth.status_code == 429
    assert 14 * 60 <= int(sixth.headers["Retry-After"]) <= 15 * 60 + 1
    message = soup(sixth).select_one(".message-error").get_text(" ", strip=True)
    assert "Too many failed sign-ins. Try again after" in message and "UTC" in message
    assert client.get("/").status_code == 302  # not signed in
    # Any name from that address: the address is blocked, not the name.
    assert login(local_app.test_client(), "vera", **here).status_code == 429
    # The same name from elsewhere is not blocked by one address's guesses...
    assert login(local_app.test_client(), "ed", **from_address("10.0.0.2")).status_code == 303


def test_failures_for_one_name_from_many_addresses_block_the_name(local_app):
    client = local_app.test_client()
    for attempt in range(throttle.NAME_LIMIT):
        address = from_address(f"10.1.{attempt // 4}.{attempt % 4}")  # four tries each
        login(client, "ada", "guess", **address)
    # ...but once guesses at a name add up, it is blocked from every address, for a while.
    fresh = from_address("192.168.7.7")
    assert login(local_app.test_client(), "ada", **fresh).status_code == 429
    assert login(local_app.test_client(), "vera", **fresh).status_code == 303
    with local_app.app_context():
        db.session.execute(
            sa.update(LoginThrottle).values(
                blocked_until=utcnow() - timedelta(seconds=1),
                window_started_at=utcnow() - throttle.WINDOW - timedelta(seconds=1),
            )
        )
        db.session.commit()
    assert login(local_app.test_client(), "ada", **fresh).status_code == 303
    # The next failure anywhere clears out the counters that are over.
    login(local_app.test_client(), "vera", "wrong", **fresh)
    with local_app.app_context():
        assert set(db.session.scalars(sa.select(LoginThrottle.key))) == {
            "name:vera",
            "addr:192.168.7.7",
        }


def test_the_counters_are_shared_by_every_process(local_app, app_factory):
    # A second app on the same database stands for another gunicorn worker.
    other = app_factory(AUTH="local")
    assert other.config["SQLALCHEMY_DATABASE_URI"] == local_app.config["SQLALCHEMY_DATABASE_URI"]
    here = from_address("10.9.9.9")
    for index in range(throttle.ADDRESS_LIMIT - 1):
        app = local_app if index % 2 else other
        assert login(app.test_client(), "ed", "wrong", **here).status_code == 200
    assert login(other.test_client(), "ed", "wrong", **here).status_code == 429
    assert login(local_app.test_client(), "ed", **here).status_code == 429


def test_a_success_clears_the_name_counter(local_app):
    for _ in range(3):
        login(local_app.test_client(), "vera", "wrong", **from_address("10.2.0.1"))
    assert login(local_app.test_client(), "vera", **from_address("10.2.0.2")).status_code == 303
    with local_app.app_context():
        keys = set(db.session.scalars(sa.select(LoginThrottle.key)))
    assert keys == {"addr:10.2.0.1"}


def test_basic_auth_is_throttled_too(local_app):
    def basic(password: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"ed:{password}".encode()).decode()}

    client = local_app.test_client()
    for _ in range(throttle.ADDRESS_LIMIT):
        assert client.get("/api/v1/tasks", headers=basic("wrong")).status_code == 401
    blocked = client.get("/api/v1/tasks", headers=basic(PASSWORD))
    assert blocked.status_code == 429 and "Too many failed sign-ins" in blocked.get_json()["error"]


# -- the session cookie ------------------------------------------------------------------------


def session_cookie(response) -> str:
    cookies = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("session=")]
    assert cookies, response.headers
    return cookies[-1]


def test_session_cookie_is_httponly_samesite_lax_secure_and_lasts_session_days(app_factory):
    app = app_factory(AUTH="local", SECURE_COOKIES=True, SESSION_DAYS=3)
    add_user(app, "ed", Role.EDITOR)
    client = app.test_client()
    # A Secure cookie comes back only over HTTPS: sign in as a browser on https would.
    token = csrf(client, "https://localhost/login")
    response = client.post(
        "https://localhost/login",
        data={"csrf_token": token, "username": "ed", "password": PASSWORD},
        # Over HTTPS, Flask-WTF also wants the same-origin Referer a browser sends.
        headers={"Referer": "https://localhost/login"},
    )
    assert response.status_code == 303
    cookie = session_cookie(response)
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"secure", "httponly", "expires", "path"} <= attributes
    assert "SameSite=Lax" in cookie
    assert app.permanent_session_lifetime == timedelta(days=3)


@pytest.mark.parametrize(
    ("config", "secure"),
    [
        ({}, False),  # testing
        ({"TESTING": False}, True),  # a deployment
        ({"TESTING": False, "SECURE_COOKIES": "false"}, False),  # plain HTTP, said explicitly
        ({"DEMO": True, "TESTING": False}, False),
    ],
)
def test_secure_cookies_default_on_outside_development(app_factory, config, secure):
    app = app_factory(AUTH="local", **config)
    assert app.config["SESSION_COOKIE_SECURE"] is secure
    assert app.config["SESSION_COOKIE_HTTPONLY"] is True
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"


def test_behind_a_trusted_proxy_each_client_is_counted_by_its_forwarded_address(app_factory):
    app = app_factory(AUTH="local", TRUSTED_PROXIES="10.0.0.1")
    add_user(app, "ed", Role.EDITOR)
    proxy = from_address("10.0.0.1")

    def through_proxy(client_chain: str, password: str) -> int:
        response = login(
            app.test_client(), "ed", password, headers={"X-Forwarded-For": client_chain}, **proxy
        )
        return response.status_code

    # The proxy appends the address it saw; what the client wrote to the left is not believed.
    for _ in range(throttle.ADDRESS_LIMIT):
        through_proxy("6.6.6.6, 203.0.113.9", "wrong")
    assert through_proxy("7.7.7.7, 203.0.113.9", PASSWORD) == 429
    assert through_proxy("203.0.113.10", PASSWORD) == 303  # another client of the same proxy
    # From a peer that is not a trusted proxy, X-Forwarded-For changes nothing.
    stranger = from_address("198.51.100.1")
    for _ in range(throttle.ADDRESS_LIMIT):
        login(app.test_client(), "ed", "wrong", headers={"X-Forwarded-For": "1.1.1.1"}, **stranger)
    spoofed = login(app.test_client(), "ed", headers={"X-Forwarded-For": "2.2.2.2"}, **stranger)
    assert spoofed.status_code == 429
