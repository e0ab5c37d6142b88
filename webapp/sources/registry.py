"""The configured sources at run time, and one provider (with its HTTP client) per source."""

from __future__ import annotations

import threading
from collections.abc import Callable
from collections.abc import Iterable

import httpx
from flask import Flask
from flask import current_app

from webapp.config import SourceConfig
from webapp.logs import redactor
from webapp.providers import PROVIDERS
from webapp.providers import Provider

TransportFactory = Callable[[SourceConfig], httpx.BaseTransport | None]


class SourceRegistry:
    """Sources by name; providers are built on first use and reused (httpx clients pool)."""

    def __init__(
        self,
        sources: Iterable[SourceConfig] = (),
        transport_factory: TransportFactory | None = None,
    ) -> None:
        self._sources: dict[str, SourceConfig] = {}
        self._providers: dict[str, Provider] = {}
        self._lock = threading.Lock()
        self._transport_factory = transport_factory
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
            old = self._providers.pop(source.name, None)
        if old is not None:
            old.close()

    def provider(self, name: str) -> Provider:
        """The provider for source ``name``; ``KeyError`` for an unknown source."""
        with self._lock:
            provider = self._providers.get(name)
            if provider is None:
                source = self._sources[name]
                transport = self._transport_factory(source) if self._transport_factory else None
                provider = PROVIDERS[source.provider].create(source, transport=transport)
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
    app.extensions[EXTENSION_KEY] = SourceRegistry(sources, transport_factory)


def registry(app: Flask | None = None) -> SourceRegistry:
    """The running app's sources (``current_app``'s unless ``app`` is given)."""
    target = app if app is not None else current_app
    found: SourceRegistry = target.extensions[EXTENSION_KEY]
    return found
