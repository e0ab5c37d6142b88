"""``/users`` (admins) and ``taskdeck create-user`` / ``taskdeck users``."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Flask

from tests.access.conftest import PASSWORD
from tests.access.conftest import login
from tests.helpers import csrf
from tests.helpers import soup
from webapp.access.roles import Role
from webapp.db.models import User
from webapp.db.models import db


def roles(app: Flask) -> dict[str, str]:
    with app.app_context():
        return {
            name: role for name, role in db.session.execute(sa.select(User.username, User.role))
        }


def flashed(client, response) -> str:
    assert response.status_code == 303 and response.headers["Location"] == "/users"
    return soup(client.get("/users")).select_one(".messages").get_text(" ", strip=True)


def test_the_page_lists_users_with_role_kind_and_last_sign_in(local_app, as_role):
    admin = as_role(Role.ADMIN)
    login(local_app.test_client(), "vera")
    rows = {
        row.th.get_text(" ", strip=True).split()[0]: [
            td.get_text(" ", strip=True) for td in row("td")
        ]
        for row in soup(admin.get("/users")).select("table.users tbody tr")
    }
    assert set(rows) == {"ada", "ed", "vera"}
    assert rows["vera"][0] == "with a password"
    assert rows["ed"][2] == "never" and rows["vera"][2] != "never"
    me = soup(admin.get("/users")).select_one("tr th:-soup-contains('(you)')")
    assert me is not None and me.get_text().startswith("ada")


def test_an_admin_adds_changes_and_removes_users(local_app, as_role, user_ids):
    admin = as_role(Role.ADMIN)
    token = csrf(admin, "/users")
    added = admin.post(
        "/users",
        data={"csrf_token": token, "username": "bo", "role": "editor", "password": PASSWORD},
    )
    assert flashed(admin, added) == "Added bo as editor."
    assert login(local_app.test_client(), "bo").status_code == 303
    short = admin.post(
        "/users", data={"csrf_token": token, "username": "cy", "role": "viewer", "password": "x"}
    )
    assert "at least 10 characters" in flashed(admin, short)
    twice = admin.post(
        "/users",
        data={"csrf_token": token, "username": "bo", "role": "viewer", "password": PASSWORD},
    )
    assert "user 'bo' exists" in flashed(admin, twice)

    promoted = admin.post(
        f"/users/{user_ids['ed']}/role", data={"csrf_token": token, "role": "admin"}
    )
    assert flashed(admin, promoted) == "ed is admin."
    removed = admin.post(f"/users/{user_ids['vera']}/delete", data={"csrf_token": token})
    assert flashed(admin, removed) == "Removed vera."
    assert roles(local_app) == {"ada": "admin", "ed": "admin", "bo": "editor"}


def test_the_last_admin_cannot_be_demoted_or_removed(local_app, as_role, user_ids):
    admin = as_role(Role.ADMIN)
    token = csrf(admin, "/users")
    me = user_ids["ada"]
    demoted = admin.post(f"/users/{me}/role", data={"csrf_token": token, "role": "viewer"})
    assert "ada is the last admin" in flashed(admin, demoted)
    removed = admin.post(f"/users/{me}/delete", data={"csrf_token": token})
    assert "ada is the last admin" in flashed(admin, removed)
    assert roles(local_app)["ada"] == "admin"
    # With a second admin, one may step down; their next request has the new role.
    admin.post(f"/users/{user_ids['ed']}/role", data={"csrf_token": token, "role": "admin"})
    stepped = admin.post(f"/users/{me}/role", data={"csrf_token": token, "role": "viewer"})
    assert stepped.status_code == 303
    assert admin.get("/users").status_code == 403


def test_create_user_takes_a_role_and_an_email_and_updates(local_app):
    runner = local_app.test_cli_runner()
    made = runner.invoke(
        args=[
            "create-user",
            "zoe",
            "--role",
            "editor",
            "--email",
            "z@example.org",
            "--password-stdin",
        ],
        input=PASSWORD + "\n",
    )
    assert made.exit_code == 0 and made.output == "user zoe created (editor)\n"
    viewer = runner.invoke(args=["create-user", "yan", "--password-stdin"], input=PASSWORD + "\n")
    assert viewer.output == "user yan created (viewer)\n"
    role = runner.invoke(args=["create-user", "zoe", "--update", "--role", "admin"])
    assert role.exit_code == 0 and role.output == "user zoe updated (admin)\n"
    missing = runner.invoke(args=["create-user", "nobody", "--update", "--role", "admin"])
    assert missing.exit_code != 0 and "there is no user 'nobody'" in missing.output
    bad = runner.invoke(args=["create-user", "x", "--role", "owner", "--password-stdin"])
    assert bad.exit_code != 0 and "'owner' is not one of 'viewer', 'editor', 'admin'" in bad.output
    with local_app.app_context():
        zoe = db.session.scalar(sa.select(User).where(User.username == "zoe"))
        assert zoe.email == "z@example.org" and zoe.role == "admin"


def test_the_last_admin_stays_one_on_the_command_line_too(local_app):
    result = local_app.test_cli_runner().invoke(
        args=["create-user", "ada", "--update", "--role", "viewer"]
    )
    assert result.exit_code != 0
    assert result.output.strip() == (
        "Error: ada is the last admin: make someone else admin before changing their role"
    )


def test_users_lists_name_role_kind_and_last_sign_in(local_app):
    login(local_app.test_client(), "ed")
    result = local_app.test_cli_runner().invoke(args=["users"])
    assert result.exit_code == 0
    lines = [line.split() for line in result.output.splitlines()]
    assert [line[:3] for line in lines] == [
        ["ada", "admin", "local"],
        ["ed", "editor", "local"],
        ["vera", "viewer", "local"],
    ]
    assert lines[0][3] == "never" and lines[1][-1] == "UTC"


def test_with_proxy_sign_in_create_user_asks_no_password(app_factory):
    app = app_factory(AUTH="proxy", TRUSTED_PROXIES="127.0.0.1")
    result = app.test_cli_runner().invoke(args=["create-user", "ana", "--role", "admin"])
    assert result.exit_code == 0 and result.output == "user ana created (admin)\n"
    listing = app.test_cli_runner().invoke(args=["users"])
    assert listing.output.split()[:4] == ["ana", "admin", "proxy", "never"]
