"""Every route of the app, as a stranger and as each role: refused or let through as
``tests/access/routes.py`` says, and no route missing from it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from flask import request
from werkzeug.test import TestResponse

from tests.access.conftest import sign_in_as
from tests.access.routes import EXPECTED_ROLE
from tests.access.routes import PUBLIC
from tests.access.routes import is_machine_path
from tests.access.urlmap import ROUTES
from tests.access.urlmap import module_app
from tests.access.urlmap import sample_url
from tests.helpers import csrf
from webapp.access.roles import Role

GUARDED = [(endpoint, method) for endpoint, method in ROUTES if endpoint not in PUBLIC]


@pytest.fixture(scope="module")
def shared_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    """One ``local`` app for the module, recording which requests got past the gate."""
    with module_app(tmp_path_factory.mktemp("url-map"), AUTH="local") as app:
        app.config["PASSED"] = passed = []

        @app.before_request
        def note_passed() -> None:
            # Runs after the app's own before-request checks (sign-in, role, CSRF), only if
            # all of them let the request through.
            passed.append(request.endpoint)

        yield app


def test_every_route_is_in_exactly_one_table() -> None:
    endpoints = {endpoint for endpoint, _ in ROUTES}
    assert not PUBLIC & EXPECTED_ROLE.keys(), "an endpoint cannot be public and need a role"
    unlisted = endpoints - PUBLIC - EXPECTED_ROLE.keys()
    assert not unlisted, f"add these endpoints to tests/access/routes.py: {sorted(unlisted)}"
    stale = (PUBLIC | EXPECTED_ROLE.keys()) - endpoints
    assert not stale, f"tests/access/routes.py names endpoints that no longer exist: {stale}"


@pytest.mark.parametrize(("endpoint", "method"), ROUTES)
def test_a_stranger_is_refused_everywhere_but_public_endpoints(
    shared_app: Flask, endpoint: str, method: str
) -> None:
    assert endpoint in PUBLIC or endpoint in EXPECTED_ROLE, f"{endpoint}: in neither table"
    path = sample_url(shared_app, endpoint)
    client = shared_app.test_client()
    data = {"csrf_token": csrf(client, "/login")} if method != "GET" else None
    with client.open(path, method=method, data=data) as response:
        check_refused(endpoint, path, response)


def check_refused(endpoint: str, path: str, response: TestResponse) -> None:
    if endpoint in PUBLIC:
        assert response.status_code not in (401, 403), response.status_code
        assert "/login?" not in response.headers.get("Location", "")
    elif is_machine_path(path):
        assert response.status_code == 401
        assert response.is_json and "Sign in" in response.get_json()["error"]
    else:
        assert response.status_code == 302, (endpoint, response.status_code)
        assert response.headers["Location"].startswith("/login?next=")


@pytest.mark.parametrize("role", [Role.VIEWER, Role.EDITOR, Role.ADMIN], ids=lambda r: r.label)
@pytest.mark.parametrize(("endpoint", "method"), GUARDED)
def test_role_matrix(shared_app: Flask, endpoint: str, method: str, role: Role) -> None:
    """Each role gets 403 below the endpoint's role and gets past the gate from it on."""
    expected = EXPECTED_ROLE[endpoint]
    client = sign_in_as(shared_app, shared_app.config["USER_IDS"][role])
    token = csrf(client)
    passed: list[str] = shared_app.config["PASSED"]
    passed.clear()
    response = client.open(
        sample_url(shared_app, endpoint),
        method=method,
        data={"csrf_token": token} if method != "GET" else None,
        headers={"X-CSRF-Token": token},
    )
    if role >= expected:
        assert passed == [endpoint], (endpoint, method, response.status_code)
        assert response.status_code not in (401, 403)
    else:
        assert response.status_code == 403, (endpoint, method, response.status_code)
        assert passed == []
        assert f"needs the {expected.label} role" in response.get_data(as_text=True)
