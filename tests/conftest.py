"""Shared fixtures: a manual clock, the upstream simulators on loopback, sources, the app."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask.testing import FlaskCliRunner

from webapp import create_app
from webapp.config import SourceConfig
from webapp.config import build_source
from webapp.simulators import SIMULATORS
from webapp.simulators import SimulatorSuite
from webapp.simulators.core import ManualClock
from webapp.simulators.server import ServerThread

PROVIDER_NAMES = list(SIMULATORS)


def pytest_report_header() -> str:
    return f"sqlite {sqlite3.sqlite_version}"


@pytest.fixture
def clock() -> ManualClock:
    """The simulators' clock: tasks move only when a test advances it."""
    return ManualClock()


@pytest.fixture
def rng() -> random.Random:
    return random.Random(1234)


@pytest.fixture
def suite(clock: ManualClock) -> SimulatorSuite:
    return SimulatorSuite(clock=clock)


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


@pytest.fixture
def app_factory(instance_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Flask]:
    """Build an app on a real SQLite file in a temporary instance folder."""
    monkeypatch.setenv("TASKDECK_INSTANCE_PATH", str(instance_path))

    def factory(sources: list[SourceConfig] | None = None, **config: Any) -> Flask:
        settings: dict[str, Any] = {
            "TESTING": True,
            "SECRET_KEY": "test",
            "DATABASE_URL": f"sqlite:///{instance_path / 'taskdeck.sqlite'}",
            "SOURCES": sources or [],
        }
        settings.update(config)
        return create_app(settings)

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
