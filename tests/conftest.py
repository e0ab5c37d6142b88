"""Shared fixtures: a manual clock, the upstream simulators on loopback, sources, the app, and a
throwaway PostgreSQL server."""

from __future__ import annotations

import os
import random
import sqlite3
import uuid
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask.testing import FlaskCliRunner

from tests.helpers import fetched_state  # noqa: F401 - tests import it from here too
from tests.helpers import track  # noqa: F401
from tests.helpers import wait_for  # noqa: F401
from tests.postgres import PostgresUnavailable
from tests.postgres import free_port  # noqa: F401 - tests import it from here
from tests.postgres import throwaway_server
from webapp import create_app
from webapp.config import SourceConfig
from webapp.config import build_source
from webapp.db.setup import upgrade_database
from webapp.simulators import SIMULATORS
from webapp.simulators import SimulatorSuite
from webapp.simulators.core import ManualClock
from webapp.simulators.server import ServerThread
from webapp.sources.registry import registry

PROVIDER_NAMES = list(SIMULATORS)


@pytest.fixture
def clock() -> ManualClock:
    """The simulators' clock: tasks move only when a test advances it."""
    return ManualClock()


@pytest.fixture
def rng() -> random.Random:
    return random.Random(1234)


@pytest.fixture
def suite(clock: ManualClock) -> SimulatorSuite:
    # Clients sign NCLUE requests with the real time while these simulators run on a manual
    # clock, so the gateway's 5-minute timestamp check is off here; tests/providers/test_nclue.py
    # turns it on with a clock that starts at the real time.
    nclue = SIMULATORS["nclue"]
    return SimulatorSuite(
        clock=clock, credentials={"nclue": {**nclue.DEMO_CREDENTIALS, "max_skew_seconds": None}}
    )


@pytest.fixture
def sim_server(suite: SimulatorSuite) -> Iterator[ServerThread]:
    """All four simulators over real HTTP on a free loopback port."""
    with ServerThread(suite.wsgi_app()) as server:
        yield server


SourceFactory = Callable[..., SourceConfig]


@pytest.fixture
def make_source(sim_server: ServerThread) -> SourceFactory:
    """``make_source("mixpeek", name=..., environ_overrides=..., **fields)``: a validated source
    pointing at the loopback simulator, with the simulator's demo credentials."""

    def factory(
        provider: str,
        name: str | None = None,
        *,
        environ_overrides: dict[str, str] | None = None,
        **fields: Any,
    ) -> SourceConfig:
        module = SIMULATORS[provider]
        name = name or f"{provider}-test"
        entry, environ = module.demo_source(name, SimulatorSuite.base_url(sim_server.url, provider))
        entry.update(fields)
        environ.update(environ_overrides or {})
        return build_source(entry, environ)

    return factory


@pytest.fixture
def instance_path(tmp_path: Path) -> Path:
    path = tmp_path / "instance"
    path.mkdir()
    return path


#: ``make test`` runs the suite twice: on SQLite files, then with
#: ``TASKDECK_TEST_DATABASE=postgresql`` on the real PostgreSQL server the tests start.
TEST_DATABASE = os.environ.get("TASKDECK_TEST_DATABASE", "sqlite")


def pytest_report_header() -> list[str]:
    return [f"sqlite {sqlite3.sqlite_version}", f"apps' database: {TEST_DATABASE}"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In the PostgreSQL run, leave out what the SQLite run already did on PostgreSQL (tests
    parametrized over both) and what is about SQLite files themselves."""
    if TEST_DATABASE != "postgresql":
        return
    kept, dropped = [], []
    for item in items:
        skip = item.get_closest_marker("sqlite_only") or item.get_closest_marker("postgres")
        (dropped if skip else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture
def default_database_url(request: pytest.FixtureRequest, instance_path: Path) -> str:
    """Where apps keep their cache unless a test says otherwise."""
    if TEST_DATABASE == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{instance_path / 'taskdeck.sqlite'}"


@pytest.fixture
def bare_app_factory(
    instance_path: Path, monkeypatch: pytest.MonkeyPatch, default_database_url: str
) -> Iterator[Callable[..., Flask]]:
    """Build an app in a temporary instance folder, leaving the database as it is (the factory
    does no database work). Apps' connections are closed when the test ends."""
    monkeypatch.setenv("TASKDECK_INSTANCE_PATH", str(instance_path))
    made: list[Flask] = []

    def factory(sources: list[SourceConfig] | None = None, **config: Any) -> Flask:
        settings: dict[str, Any] = {
            "TESTING": True,
            "SECRET_KEY": "test",
            "DATABASE_URL": default_database_url,
            "SOURCES": sources or [],
            # Tests drive the refresher themselves, pass by pass.
            "REFRESHER": False,
            # Sign-in has tests of its own (tests/access); elsewhere it is off, as in the demo.
            "AUTH": "none",
        }
        settings.update(config)
        app = create_app(settings)
        made.append(app)
        return app

    yield factory
    for app in made:
        close_app(app)


def close_app(app: Flask) -> None:
    """Close an app's upstream clients and database connections (an open psycopg connection
    left to the garbage collector warns, and warnings are errors here)."""
    from webapp.db.models import db
    from webapp.refresher.background import stop_background

    stop_background(app)
    registry(app).close()
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def app_factory(bare_app_factory: Callable[..., Flask]) -> Callable[..., Flask]:
    """Build an app as ``bare_app_factory`` does, with its database upgraded to the schema."""

    def factory(sources: list[SourceConfig] | None = None, **config: Any) -> Flask:
        app = bare_app_factory(sources, **config)
        upgrade_database(app)
        return app

    return factory


@pytest.fixture
def app(app_factory: Callable[..., Flask]) -> Flask:
    """An app with no sources."""
    return app_factory()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


@pytest.fixture
def ml_source(make_source: SourceFactory) -> SourceConfig:
    """An OpenSearch ML Commons source on the loopback simulator, polled every 5 s."""
    return make_source("opensearch-ml", name="ml-prod", poll_interval=5.0)


@pytest.fixture
def ml_state(suite: SimulatorSuite):  # type: ignore[no-untyped-def]
    return suite.states["opensearch-ml"]


@pytest.fixture
def ml_app(app_factory: Callable[..., Flask], ml_source: SourceConfig) -> Flask:
    return app_factory([ml_source])


# -- PostgreSQL ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server of its own in a temporary directory, on a free loopback port
    (:func:`tests.postgres.throwaway_server`). Yields the URL of its ``postgres`` database;
    stopped and deleted at the end of the session."""
    with ExitStack() as stack:
        try:
            url = stack.enter_context(throwaway_server())
        except PostgresUnavailable as exc:
            pytest.fail(str(exc), pytrace=False)
        yield url


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database on the session's server; dropped after the test."""
    import psycopg

    name = f"taskdeck_{uuid.uuid4().hex[:12]}"
    admin = postgres_server.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_server.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, instance_path: Path) -> str:
    """The same test on a SQLite file and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{instance_path / 'taskdeck.sqlite'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def dispose_engines() -> Iterator[Callable[[Flask], Flask]]:
    """Register apps whose database connections must be closed at the end of the test (an open
    psycopg connection left to the garbage collector warns, and warnings are errors here)."""
    apps: list[Flask] = []
    yield lambda app: apps.append(app) or app  # type: ignore[func-returns-value]
    from webapp.db.models import db

    for app in apps:
        registry(app).close()
        with app.app_context():
            db.engine.dispose()


class RefreshDriver:
    """Runs refresher passes "as if" time had passed: due tasks are made due now.

    The refresher schedules with the wall clock while the simulators run on a manual one, so
    a test moves both: the simulator clock with ``clock.advance`` and the schedule with
    :meth:`pass_`, which makes every scheduled task due before running one pass.
    """

    def __init__(self, app: Flask) -> None:
        from webapp.refresher.engine import Refresher

        self.app = app
        self.refresher = Refresher(app, rng=random.Random(5))

    def pass_(self, *, all_due: bool = True):  # type: ignore[no-untyped-def]
        import sqlalchemy as sa

        from webapp.db.models import Source
        from webapp.db.models import Task
        from webapp.db.models import db
        from webapp.db.models import utcnow

        if all_due:
            with self.app.app_context():
                db.session.execute(
                    sa.update(Task)
                    .where(Task.next_poll_at.is_not(None))
                    .values(next_poll_at=utcnow())
                )
                db.session.execute(sa.update(Source).values(blocked_until=None))
                db.session.commit()
        return self.refresher.run_once()

    def close(self) -> None:
        self.refresher.close()


def refresh_once(app: Flask):  # type: ignore[no-untyped-def]
    """One refresher pass with every scheduled task due (:class:`RefreshDriver`); its report."""
    driver = RefreshDriver(app)
    try:
        return driver.pass_()
    finally:
        driver.close()


@pytest.fixture
def driver(ml_app: Flask) -> Iterator[RefreshDriver]:
    refresh_driver = RefreshDriver(ml_app)
    yield refresh_driver
    refresh_driver.close()
