"""Pages offer each principal only the controls it may use, and nothing that writes under
``TASKDECK_READ_ONLY``, where every write is refused and every command that writes stops."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.access.conftest import PASSWORD
from tests.access.conftest import add_user
from tests.access.conftest import login
from tests.access.conftest import sign_in_as
from tests.access.urlmap import WRITES
from tests.access.urlmap import module_app
from tests.access.urlmap import sample_url
from tests.helpers import csrf
from tests.helpers import soup
from tests.helpers import track
from webapp.access import shares
from webapp.access import tokens
from webapp.access.guard import SESSION_ENDPOINTS
from webapp.access.roles import Role
from webapp.db import store
from webapp.db.models import db

TASK = "task/1"
DETAIL = f"/tasks/ml-prod/{quote(TASK, safe='')}"
PAGES = [
    "/?view=all",
    DETAIL,
    "/sources",
    "/tasks/import",
    "/users",
    "/sources/new",
    "/tokens",
    "/notifications",
    "/audit",
    "/account",
]


def post_forms(client: FlaskClient, path: str) -> set[str]:
    """Where the page's forms post to, but for signing out."""
    page = soup(client.get(path))
    return {
        form["action"].split("?")[0]
        for form in page.select("form")
        if form.get("method", "get").lower() == "post" and form["action"] != "/logout"
    }


def build(app_factory: Callable[..., Flask], ml_source, **config) -> tuple[Flask, dict]:
    app = app_factory([ml_source], AUTH="local", **config)
    track(app, "ml-prod", TASK)
    ids = {role: add_user(app, role.label, role) for role in Role}
    with app.app_context():
        # A token and a share link, so that their pages would offer to revoke them.
        tokens.create_token("ci", Role.VIEWER)
        shares.create_link(store.get_task("ml-prod", TASK), "1d")
        db.session.commit()
    return app, ids


def test_each_role_sees_the_controls_it_may_use(app_factory, ml_source):
    app, ids = build(app_factory, ml_source)
    viewer, editor, admin = (sign_in_as(app, ids[role]) for role in Role)

    assert post_forms(viewer, "/?view=all") == set()
    assert post_forms(viewer, DETAIL) == {f"{DETAIL}/refresh"}  # a re-fetch, not a change
    assert post_forms(viewer, "/tasks/import") == set()
    assert not soup(viewer.get("/sources")).select("a[href='/sources/new']")
    assert not soup(viewer.get("/")).select("nav a[href='/users']")

    assert post_forms(editor, "/?view=all") == {"/tasks/track", "/views", "/tasks/untrack"}
    assert post_forms(editor, DETAIL) == {
        f"{DETAIL}/refresh",
        f"{DETAIL}/untrack",
        f"{DETAIL}/annotations",
        f"{DETAIL}/share",
        "/share/links/1/revoke",
    }
    assert post_forms(editor, "/tasks/import") == {"/tasks/import"}
    assert not soup(editor.get("/sources")).select("a[href='/sources/new']")

    assert soup(admin.get("/sources")).select("a[href='/sources/new']")
    assert soup(admin.get("/")).select("nav a[href='/users']")
    assert post_forms(admin, "/sources/new") == {"/sources"}
    assert "/users" in post_forms(admin, "/users")


@pytest.fixture
def read_only_app(app_factory, ml_source) -> tuple[Flask, dict]:
    return build(app_factory, ml_source, READ_ONLY=True)


def test_read_only_shows_a_banner_and_no_control_that_writes(read_only_app):
    app, ids = read_only_app
    admin = sign_in_as(app, ids[Role.ADMIN])
    for path in PAGES:
        assert post_forms(admin, path) == set(), path
        assert not soup(admin.get(path)).select("[hx-post]"), path
        banner = soup(admin.get(path)).select_one("#read-only")
        assert banner is not None and "read-only" in banner.get_text(), path
    assert not soup(admin.get("/sources")).select("a[href='/sources/new']")


@pytest.fixture(scope="module")
def shared_read_only_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    with module_app(tmp_path_factory.mktemp("read-only"), AUTH="local", READ_ONLY=True) as app:
        yield app


@pytest.mark.parametrize(
    ("endpoint", "method"), [w for w in WRITES if w[0] not in SESSION_ENDPOINTS]
)
def test_read_only_refuses_every_write_even_to_admins(shared_read_only_app, endpoint, method):
    app = shared_read_only_app
    admin = sign_in_as(app, app.config["USER_IDS"][Role.ADMIN])
    token = csrf(admin)
    response = admin.open(
        sample_url(app, endpoint),
        method=method,
        data={"csrf_token": token},
        headers={"X-CSRF-Token": token},
    )
    assert response.status_code == 403, endpoint
    if response.is_json:
        assert "read-only" in response.get_json()["error"], endpoint
    else:
        page = soup(response)
        assert "read-only" in page.select_one("main").get_text(), endpoint
        assert "admin (admin)" in page.select_one(".site-header").get_text(), endpoint


def test_read_only_still_lets_people_sign_in_and_out(read_only_app):
    app, _ = read_only_app
    client = app.test_client()
    assert login(client, "editor").status_code == 303
    assert client.get("/").status_code == 200
    response = client.post("/logout", data={"csrf_token": csrf(client)})
    assert response.status_code == 303
    assert client.get("/").status_code == 302


@pytest.mark.parametrize(
    "args",
    [
        ["track", "ml-prod", "task/2"],
        ["import", "ml-prod"],
        ["create-user", "newcomer", "--password-stdin"],
        ["create-user", "viewer", "--update", "--role", "admin"],
        ["token", "create", "ci"],
        ["token", "revoke", "ci"],
    ],
    ids=lambda args: " ".join(args[:2]),
)
def test_read_only_commands_that_write_stop_with_one_line(read_only_app, args):
    app, _ = read_only_app
    result = app.test_cli_runner().invoke(args=args, input=PASSWORD + "\n")
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    command = " ".join(args[:2]) if args[0] == "token" else args[0]
    assert lines == [
        f"Error: Taskdeck is read-only (TASKDECK_READ_ONLY=true): {command!r} changes nothing"
    ]


def test_read_only_commands_that_read_or_migrate_still_work(read_only_app):
    app, _ = read_only_app
    runner = app.test_cli_runner()
    listing = runner.invoke(args=["users"])
    assert listing.exit_code == 0 and "admin" in listing.output
    assert runner.invoke(args=["token", "list"]).exit_code == 0
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
    assert runner.invoke(args=["sources"]).exit_code == 0
