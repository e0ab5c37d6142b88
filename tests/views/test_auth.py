"""Local sign-in: nothing but the first-admin page until `taskdeck create-user` made someone;
then pages need a sign-in and the API takes basic auth."""

from __future__ import annotations

import base64

import pytest
from bs4 import BeautifulSoup


def create_user(app, name="ana", password="correct horse battery"):
    result = app.test_cli_runner().invoke(
        args=["create-user", name, "--password-stdin"], input=password + "\n"
    )
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def app(app_factory):
    return app_factory(AUTH="local")


def test_create_user_then_pages_need_sign_in(app):
    client = app.test_client()
    assert client.get("/?state=active").status_code == 503  # the first-admin page
    assert "user ana created (viewer)" in create_user(app).output
    response = client.get("/?state=active")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/?state%3Dactive"
    assert client.get("/healthz").status_code == 200
    page = BeautifulSoup(client.get("/login").text, "html.parser")
    token = page.select_one("input[name=csrf_token]")["value"]
    wrong = client.post("/login", data={"csrf_token": token, "username": "ana", "password": "nope"})
    assert (
        "wrong password"
        in BeautifulSoup(wrong.text, "html.parser").select_one(".message-error").get_text()
    )
    ok = client.post(
        "/login?next=/?state%3Dactive",
        data={"csrf_token": token, "username": "ana", "password": "correct horse battery"},
    )
    assert ok.status_code == 303 and ok.headers["Location"] == "/?state=active"
    signed_in = BeautifulSoup(client.get("/").text, "html.parser")
    assert "ana" in signed_in.select_one(".site-header").get_text()


def test_api_takes_basic_auth_and_fragments_get_hx_redirect(app):
    create_user(app)
    client = app.test_client()
    assert client.get("/api/v1/tasks").status_code == 401
    good = base64.b64encode(b"ana:correct horse battery").decode()
    assert (
        client.get("/api/v1/tasks", headers={"Authorization": f"Basic {good}"}).status_code == 200
    )
    fragment = client.get("/tasks/live?ids=1", headers={"HX-Request": "true"})
    assert fragment.status_code == 401 and fragment.headers["HX-Redirect"].startswith("/login")


def test_create_user_refuses_short_passwords_and_duplicates(app):
    runner = app.test_cli_runner()
    short = runner.invoke(args=["create-user", "bo", "--password-stdin"], input="short\n")
    assert short.exit_code != 0 and "at least 10 characters" in short.output
    create_user(app)
    again = runner.invoke(
        args=["create-user", "ana", "--password-stdin"], input="another long one\n"
    )
    assert again.exit_code != 0 and "exists" in again.output
    update = runner.invoke(
        args=["create-user", "ana", "--update", "--password-stdin"], input="another long one\n"
    )
    assert update.exit_code == 0
