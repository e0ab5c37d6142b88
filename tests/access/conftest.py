"""Apps with sign-in on, and people of each role to sign in as."""

from __future__ import annotations

import functools
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask import request
from flask.testing import FlaskClient
from werkzeug.security import generate_password_hash

from tests.helpers import csrf
from webapp.access import accounts
from webapp.access.roles import Role
from webapp.db.models import db

PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def quick_password_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hash the tests' passwords with a small scrypt cost (checking reads the cost from the
    hash): the default's tenth of a second per user adds up over hundreds of apps."""
    monkeypatch.setattr(
        accounts,
        "generate_password_hash",
        functools.partial(generate_password_hash, method="scrypt:1024:8:1"),
    )


def add_user(app: Flask, name: str, role: Role, password: str | None = PASSWORD) -> int:
    with app.app_context():
        user = accounts.create_user(name, role, password)
        db.session.commit()
        return user.id


def sign_in_as(app: Flask, user_id: int) -> FlaskClient:
    """A client whose session names ``user_id``, as a sign-in leaves it."""
    client = app.test_client()
    with client.session_transaction() as session:
        session["user_id"] = user_id
    return client


def login(client: FlaskClient, name: str, password: str = PASSWORD, **kwargs: Any) -> Any:
    """A real sign-in through the form."""
    token = csrf(client, "/login")
    return client.post(
        "/login", data={"csrf_token": token, "username": name, "password": password}, **kwargs
    )


@pytest.fixture
def local_app(app_factory: Callable[..., Flask]) -> Flask:
    """``local`` sign-in with one person of each role: ``vera`` (viewer), ``ed`` (editor) and
    ``ada`` (admin)."""
    app = app_factory(AUTH="local")
    for name, role in (("vera", Role.VIEWER), ("ed", Role.EDITOR), ("ada", Role.ADMIN)):
        add_user(app, name, role)
    return app


@pytest.fixture
def user_ids(local_app: Flask) -> dict[str, int]:
    with local_app.app_context():
        return {user.username: user.id for user in accounts.list_users()}


@pytest.fixture
def as_role(local_app: Flask, user_ids: dict[str, int]) -> Callable[[Role], FlaskClient]:
    names = {Role.VIEWER: "vera", Role.EDITOR: "ed", Role.ADMIN: "ada"}
    return lambda role: sign_in_as(local_app, user_ids[names[role]])


@pytest.fixture
def gate_log(local_app: Flask) -> Iterator[list[str]]:
    """Endpoints whose requests got past every check before the view (sign-in, role, CSRF):
    a ``before_request`` added after the app's own runs only then."""
    passed: list[str] = []

    @local_app.before_request
    def note_passed() -> None:
        passed.append(str(request.endpoint))

    yield passed
