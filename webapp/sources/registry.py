"""The configured sources at run time, and one provider (with its HTTP client) per source."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from collections.abc import Iterable

import httpx
import sqlalchemy as sa
from flask import Flask
from flask import current_app

from webapp.config import SourceConfig
from webapp.db.models import db
from webapp.db.rate_slots import DatabaseLimiter
from webapp.logs import redactor
from webapp.providers import PROVIDERS
from webapp.providers import Provider
from webapp.providers.http import default_transport
from webapp.providers.ratelimit import Limiter

TransportFactory = Callable[[SourceConfig], httpx.BaseTransport | None]
LimiterFactory = Callable[[SourceConfig], Limiter | None]


class SourceRegistry:
    """Sources by name; providers are built on first use and reused (httpx clients pool)."""

    def __init__(
        self,
        sources: Iterable[SourceConfig] = (),
        transport_factory: TransportFactory | None = None,
        limiter_factory: LimiterFactory | None = None,
    ) -> None:
        self._sources: dict[str, SourceConfig] = {}
        #: Sources stored in the database that cannot be used, and why (shown on /sources).
        self._problems: dict[str, str] = {}
        self._providers: dict[str, Provider] = {}
        self._lock = threading.Lock()
        self._transport_factory = transport_factory
        #: Where a source's request budget lives (the database, in the app); ``None``: in this
        #: process only.
        self._limiter_factory = limiter_factory
        for source in sources:
            self._sources[source.name] = source

    def __contains__(self, name: object) -> bool:
        return name in self._sources

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(sorted(self._sources.values(), key=lambda s: s.name))

    def names(self) -> list[str]:
        return sorted(self._sources)

    def get(self, name: str) -> SourceConfig | None:
        return self._sources.get(name)

    def put(self, source: SourceConfig) -> None:
        """Add or replace a source; its old provider (and client) is closed."""
        redactor.add(source.secret(name) for name in source.credentials)
        with self._lock:
            self._sources[source.name] = source
            self._problems.pop(source.name, None)
            old = self._providers.pop(source.name, None)
        if old is not None:
            old.close()

    def set_problem(self, name: str, message: str) -> None:
        """Note that source ``name`` could not be loaded, and why (no secret in ``message``)."""
        with self._lock:
            self._problems[name] = message

    def problems(self) -> dict[str, str]:
        """Sources that could not be loaded, by name, with the reason."""
        with self._lock:
            return dict(sorted(self._problems.items()))

    def provider(self, name: str) -> Provider:
        """The provider for source ``name``; ``KeyError`` for an unknown source."""
        with self._lock:
            provider = self._providers.get(name)
            if provider is None:
                source = self._sources[name]
                transport = self._transport_factory(source) if self._transport_factory else None
                limiter = self._limiter_factory(source) if self._limiter_factory else None
                provider = PROVIDERS[source.provider].create(
                    source, transport=transport, limiter=limiter
                )
                self._providers[name] = provider
            return provider

    def close(self) -> None:
        with self._lock:
            providers = list(self._providers.values())
            self._providers.clear()
        for provider in providers:
            provider.close()


EXTENSION_KEY = "taskdeck.sources"


def init_app(
    app: Flask, sources: Iterable[SourceConfig], transport_factory: TransportFactory | None
) -> None:
    if transport_factory is None and app.config.get("ALLOW_LINK_LOCAL"):
        transport_factory = functools.partial(default_transport, allow_link_local=True)
    app.extensions[EXTENSION_KEY] = SourceRegistry(sources, transport_factory, shared_limiters(app))


def shared_limiters(app: Flask) -> LimiterFactory:
    """Request budgets kept in the app's database, so a source's ``rate_limit`` holds across
    every process that uses it (:mod:`webapp.db.rate_slots`)."""
    engines: list[sa.Engine] = []

    def engine() -> sa.Engine:
        # Resolved on first use (fetch threads have no app context); the factory opens nothing.
        if not engines:
            with app.app_context():
                engines.append(db.engine)
        return engines[0]

    def factory(source: SourceConfig) -> Limiter | None:
        rate = source.effective_rate_limit
        return DatabaseLimiter(engine, source.name, rate) if rate else None

    return factory


def registry(app: Flask | None = None) -> SourceRegistry:
    """The running app's sources (``current_app``'s unless ``app`` is given)."""
    target = app if app is not None else current_app
    found: SourceRegistry = target.extensions[EXTENSION_KEY]
    return found
