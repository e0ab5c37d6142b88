"""The application factory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Flask

from webapp import access
from webapp import commands
from webapp import logs
from webapp import metrics
from webapp import views
from webapp.config import DEFAULTS
from webapp.config import ConfigError
from webapp.config import SourceConfig
from webapp.config import load_sources_file
from webapp.config import read_config_file
from webapp.db import setup as db_setup
from webapp.notify import rules as notify_rules
from webapp.refresher import background as refresher
from webapp.sources import registry as sources_registry
from webapp.sources import sealed
from webapp.web import headers
from webapp.web import htmx

ROOT = Path(__file__).resolve().parent.parent


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the Taskdeck app: defaults, then ``TASKDECK_*`` variables, then ``test_config``.

    ``test_config`` may carry ``SOURCES`` (a list of :class:`SourceConfig`) instead of a file,
    and ``TRANSPORT_FACTORY`` to give providers a custom httpx transport.
    Raises :class:`ConfigError` with one message when the configuration is wrong.
    """
    app = Flask(
        "webapp",
        root_path=str(ROOT / "webapp"),
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
        instance_path=os.environ.get("TASKDECK_INSTANCE_PATH") or str(ROOT / "instance"),
    )
    app.config.from_mapping(DEFAULTS)
    app.config.from_prefixed_env("TASKDECK")
    if test_config:
        app.config.from_mapping(test_config)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)

    if not app.config["SECRET_KEY"]:
        if app.debug or app.testing or app.config["DEMO"]:
            app.config["SECRET_KEY"] = os.urandom(24).hex()
        else:
            raise ConfigError(
                "TASKDECK_SECRET_KEY is not set: set it to a long random string "
                "(it signs the session cookie)"
            )
    database_url = app.config["DATABASE_URL"] or "sqlite:///" + str(
        Path(app.instance_path) / "taskdeck.sqlite"
    )
    app.config["SQLALCHEMY_DATABASE_URI"] = database_url
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {})

    sources = app.config.get("SOURCES")
    if sources is None:
        sources = _load_configured_sources(app)
    app.config["SOURCES"] = list(sources)
    app.config["NOTIFICATIONS"] = _configured_rules(app)

    metrics.ensure_multiprocess_dir()
    logs.init_app(app)
    sealed.init_app(app)
    db_setup.init_app(app)
    sources_registry.init_app(app, app.config["SOURCES"], app.config.get("TRANSPORT_FACTORY"))
    logs.redactor.add(s.secret(f) for s in app.config["SOURCES"] for f in s.credentials)
    htmx.init_app(app)
    headers.init_app(app)
    access.init_app(app)
    views.init_app(app)
    commands.init_app(app)
    refresher.init_app(app)
    return app


def _config_path(app: Flask) -> str | Path | None:
    path = app.config["CONFIG"]
    if not path:
        default = Path(app.instance_path) / "taskdeck.toml"
        return default if default.exists() else None
    return str(path)


def _load_configured_sources(app: Flask) -> list[SourceConfig]:
    path = _config_path(app)
    if path is None:
        return []
    return load_sources_file(path, allow_link_local=bool(app.config["ALLOW_LINK_LOCAL"]))


def _configured_rules(app: Flask) -> list[notify_rules.RuleConfig]:
    """The config file's alert rules (or ``NOTIFICATIONS`` given as data: tests, the demo)."""
    entries = app.config.get("NOTIFICATIONS")
    if entries is None:
        path = _config_path(app)
        entries = read_config_file(path).notifications if path is not None else []
    smtp_url = app.config.get("SMTP_URL")
    if smtp_url:
        logs.redactor.add([urlsplit(str(smtp_url)).password or ""])
    return notify_rules.load_rules(
        [e if isinstance(e, dict) else e.model_dump(exclude_none=True) for e in entries],
        smtp_configured=bool(smtp_url),
        allow_link_local=bool(app.config["ALLOW_LINK_LOCAL"]),
    )
