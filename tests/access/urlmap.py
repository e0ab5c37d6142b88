"""The app's routes as the URL-map tests walk them: read from a real app's ``url_map``."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask import url_for

from tests.access.conftest import add_user
from tests.access.routes import IMPLICIT_METHODS
from tests.access.routes import SAMPLE_VALUES
from tests.conftest import close_app
from webapp import create_app
from webapp.access.roles import Role
from webapp.db.setup import upgrade_database

BASE_CONFIG = {
    "TESTING": True,
    "SECRET_KEY": "test",
    "SOURCES": [],
    "REFRESHER": False,
}


def app_routes() -> list[tuple[str, str]]:
    """``(endpoint, method)`` for every rule of a freshly built app (for parametrizing, at
    collection time, before any fixture exists)."""
    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as patch:
        patch.setenv("TASKDECK_INSTANCE_PATH", folder)
        app = create_app({**BASE_CONFIG, "DATABASE_URL": f"sqlite:///{folder}/map.sqlite"})
        found = {
            (rule.endpoint, method)
            for rule in app.url_map.iter_rules()
            for method in (rule.methods or set()) - IMPLICIT_METHODS
        }
        close_app(app)
    return sorted(found)


@contextmanager
def module_app(folder: Path, **config: Any) -> Iterator[Flask]:
    """An app for a whole test module (its requests change nothing), on a database of its own in
    ``folder``, with one user of each role; ``app.config["USER_IDS"]`` maps role to user id."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TASKDECK_INSTANCE_PATH", str(folder))
        app = create_app({**BASE_CONFIG, "DATABASE_URL": f"sqlite:///{folder}/db.sqlite", **config})
    upgrade_database(app)
    app.config["USER_IDS"] = {role: add_user(app, role.label, role) for role in Role}
    try:
        yield app
    finally:
        close_app(app)


def sample_url(app: Flask, endpoint: str) -> str:
    """The endpoint's URL with :data:`SAMPLE_VALUES` for its variables."""
    rule = next(app.url_map.iter_rules(endpoint))
    missing = [name for name in rule.arguments if name not in SAMPLE_VALUES]
    assert not missing, f"add sample values for {missing} to tests/access/routes.py"
    with app.test_request_context():
        return url_for(endpoint, **{name: SAMPLE_VALUES[name] for name in rule.arguments})


ROUTES = app_routes()
WRITES = [(endpoint, method) for endpoint, method in ROUTES if method not in ("GET",)]
