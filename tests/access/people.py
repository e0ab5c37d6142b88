"""Users of each role, signed in through the real sign-in form, for the tests of tokens, share
links and the audit log (apps built with ``AUTH="local"``)."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from tests.helpers import csrf
from tests.helpers import soup
from webapp.access.accounts import hash_password
from webapp.db.models import User
from webapp.db.models import db

PASSWORD = "correct horse battery"


def add_user(app: Flask, name: str, role: str) -> None:
    with app.app_context():
        db.session.add(User(username=name, role=role, password_hash=hash_password(PASSWORD)))
        db.session.commit()


def signed_in(app: Flask, name: str, role: str | None = None) -> FlaskClient:
    """A client signed in as ``name`` (made first with ``role`` when given)."""
    if role is not None:
        add_user(app, name, role)
    client = app.test_client()
    token = soup(client.get("/login")).select_one("input[name=csrf_token]")["value"]
    response = client.post(
        "/login", data={"csrf_token": token, "username": name, "password": PASSWORD}
    )
    assert response.status_code == 303, response.text
    return client


def form_token(client: FlaskClient, path: str = "/?view=all") -> str:
    """The CSRF token of the client's session."""
    return csrf(client, path)
