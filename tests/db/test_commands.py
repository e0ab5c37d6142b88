"""``taskdeck db upgrade`` / ``db current`` / ``init-db``, and the one-line refusal of a
database that is not at the head revision, by the commands and by the web app (503)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import free_port
from tests.db.conftest import made_by_release
from webapp.db import migrate

#: These build SQLite files by hand (release DDL, foreign revisions); the PostgreSQL side of
#: upgrading is in test_schema.py.
pytestmark = pytest.mark.sqlite_only


UNMIGRATED = {
    "empty": "the database is empty: run `taskdeck db upgrade` to create its tables",
    "before migrations": (
        "the database was made before schema migrations: run `taskdeck db upgrade`"
    ),
}


@pytest.fixture
def sqlite_url(instance_path: Path) -> str:
    return f"sqlite:///{instance_path / 'taskdeck.sqlite'}"


@pytest.fixture
def sqlite_engine(sqlite_url: str):  # type: ignore[no-untyped-def]
    engine = sa.create_engine(sqlite_url, poolclass=sa.pool.NullPool)
    yield engine
    engine.dispose()


def make(kind: str, engine: sa.Engine) -> None:
    if kind == "before migrations":
        made_by_release(engine)


@pytest.mark.parametrize("kind", list(UNMIGRATED))
@pytest.mark.parametrize(
    "command",
    [
        ["sources"],
        ["track", "ml-prod", "task-1"],
        ["refresh", "--once"],
        ["import", "ml-prod"],
        ["create-user", "ana", "--password-stdin"],
    ],
)
def test_commands_refuse_an_unmigrated_database_in_one_line(
    kind, command, bare_app_factory, sqlite_engine, sqlite_url
):
    make(kind, sqlite_engine)
    app = bare_app_factory()
    result = app.test_cli_runner().invoke(args=command, input="correct horse battery\n")
    assert result.exit_code == 1
    assert result.output == f"Error: {UNMIGRATED[kind]} ({sqlite_url})\n"


@pytest.mark.parametrize("kind", list(UNMIGRATED))
def test_the_web_answers_503_until_the_database_is_upgraded(
    kind, bare_app_factory, sqlite_engine, sqlite_url
):
    make(kind, sqlite_engine)
    app = bare_app_factory()
    client = app.test_client()
    for path in ("/", "/tasks/ml-prod/task-1", "/sources"):
        refused = client.get(path)
        assert refused.status_code == 503
        assert refused.mimetype == "text/plain"
        assert refused.text == f"Taskdeck cannot serve yet: {UNMIGRATED[kind]} ({sqlite_url})\n"
    assert app.test_cli_runner().invoke(args=["db", "upgrade"]).exit_code == 0
    assert client.get("/").status_code == 200


def test_db_current_says_where_the_database_stands(bare_app_factory, sqlite_engine):
    app = bare_app_factory()
    runner = app.test_cli_runner()
    current = runner.invoke(args=["db", "current"])
    assert (current.exit_code, current.output) == (0, f"none: {UNMIGRATED['empty']}\n")

    made_by_release(sqlite_engine)
    current = runner.invoke(args=["db", "current"])
    assert current.output == f"none: {UNMIGRATED['before migrations']}\n"

    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
    current = runner.invoke(args=["db", "current"])
    assert (current.exit_code, current.output) == (0, f"{migrate.head()} (head)\n")


def test_a_database_upgraded_by_a_newer_taskdeck_is_refused(
    bare_app_factory, sqlite_engine, sqlite_url
):
    migrate.upgrade(sqlite_engine)
    with sqlite_engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    runner = bare_app_factory().test_cli_runner()
    newer = (
        "the database schema is at revision 9999, which this Taskdeck does not know: "
        "it was upgraded by a newer Taskdeck, so run that one"
    )
    assert runner.invoke(args=["db", "current"]).output == f"9999: {newer}\n"
    assert runner.invoke(args=["sources"]).output == f"Error: {newer} ({sqlite_url})\n"
    upgrade = runner.invoke(args=["db", "upgrade"])
    assert upgrade.exit_code == 1
    assert upgrade.output == (
        f"Error: cannot upgrade the database ({sqlite_url}): "
        "Can't locate revision identified by '9999'\n"
    )


def test_a_database_behind_head_is_told_to_upgrade():
    behind = migrate.SchemaState(current="0001", head="0002", has_tables=True)
    assert behind.refusal() == (
        "the database schema is at revision 0001 and this Taskdeck needs 0002: "
        "run `taskdeck db upgrade`"
    )


def test_init_db_on_an_empty_database_is_db_upgrade(bare_app_factory, sqlite_url):
    runner = bare_app_factory().test_cli_runner()
    result = runner.invoke(args=["init-db"])
    assert result.exit_code == 0
    assert result.output == (
        f"database schema upgraded from empty to {migrate.head()}\ndatabase ready: {sqlite_url}\n"
    )
    result = runner.invoke(args=["init-db"])
    assert result.output.splitlines()[0] == (
        f"database schema at {migrate.head()} (head): nothing to upgrade"
    )


def test_a_database_that_cannot_be_reached_fails_in_one_line(bare_app_factory):
    url = f"postgresql+psycopg://taskdeck@127.0.0.1:{free_port()}/taskdeck"
    runner = bare_app_factory(DATABASE_URL=url).test_cli_runner()
    for command, doing in (("upgrade", "upgrade"), ("current", "open")):
        result = runner.invoke(args=["db", command])
        assert result.exit_code == 1
        assert result.output.startswith(f"Error: cannot {doing} the database ({url}): ")
        assert result.output.count("\n") == 1


# -- two processes upgrading one database at once ------------------------------------------------


def start_upgrade(environment: dict[str, str]) -> subprocess.Popen[str]:
    script = Path(sys.executable).parent / "taskdeck"
    return subprocess.Popen(
        [str(script), "db", "upgrade"],
        env={**os.environ, **environment},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until(condition, what: str, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def opened(process: subprocess.Popen[str], path: Path) -> bool:
    """Whether the process holds the file open (it then waits on the lock, right after)."""
    fds = Path(f"/proc/{process.pid}/fd")
    try:
        return any(os.path.realpath(fd) == str(path) for fd in fds.iterdir())
    except OSError:
        return False


def waiting_for_a_lock(engine: sa.Engine) -> int:
    waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    with engine.connect() as connection:
        return int(connection.exec_driver_sql(waiting).scalar_one())


def test_two_processes_upgrading_at_once_upgrade_once(
    database_url, engine, instance_path, tmp_path
):
    """Both wait on the lock this test holds, then one upgrades and the other finds it done."""
    environment = {
        "TASKDECK_INSTANCE_PATH": str(instance_path),
        "TASKDECK_SECRET_KEY": "k",
        "TASKDECK_DATABASE_URL": database_url,
    }
    if engine.dialect.name == "sqlite":
        path = Path(engine.url.database or "").resolve()
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("PRAGMA journal_mode=WAL")
        holder.execute("BEGIN IMMEDIATE")
        processes = [start_upgrade(environment) for _ in range(2)]
        wait_until(lambda: all(opened(p, path) for p in processes), "both to open the file")
        time.sleep(0.5)
        holder.execute("COMMIT")
        holder.close()
    else:
        with engine.connect() as holder:
            holder.execute(
                sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": migrate.PG_LOCK}
            )
            processes = [start_upgrade(environment) for _ in range(2)]
            wait_until(lambda: waiting_for_a_lock(engine) == 2, "both to wait")
            holder.commit()
    outputs = []
    for process in processes:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        outputs.append(out.strip())
    head = migrate.head()
    assert sorted(outputs) == [
        f"database schema at {head} (head): nothing to upgrade",
        f"database schema upgraded from empty to {head}",
    ]


def test_the_upgrade_leaves_sqlite_connections_as_the_app_sets_them(app):
    """The upgrade turns foreign keys off and waits longer on its own connection; the pool
    hands that connection out again afterwards, with the app's settings back."""
    from webapp.db.models import db

    with app.app_context():
        assert db.engine.pool.checkedin() == 1  # the one the upgrade used
        assert db.session.execute(sa.text("PRAGMA foreign_keys")).scalar() == 1
        assert db.session.execute(sa.text("PRAGMA busy_timeout")).scalar() == 10000
