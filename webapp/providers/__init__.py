"""The provider registry: provider name (as written in the sources file) -> class."""

from __future__ import annotations

import httpx

from webapp.config import SourceConfig
from webapp.domain import FetchError
from webapp.domain import FetchErrorKind
from webapp.domain import NormalizedTask
from webapp.domain import TaskState
from webapp.providers.base import Provider
from webapp.providers.conductor import ConductorProvider
from webapp.providers.mixpeek import MixpeekProvider
from webapp.providers.nclue import NclueProvider
from webapp.providers.opensearch_ml import OpenSearchMLProvider

PROVIDERS: dict[str, type[Provider]] = {
    ConductorProvider.name: ConductorProvider,
    OpenSearchMLProvider.name: OpenSearchMLProvider,
    MixpeekProvider.name: MixpeekProvider,
    NclueProvider.name: NclueProvider,
}


def provider_for(source: SourceConfig, *, transport: httpx.BaseTransport | None = None) -> Provider:
    """A ready provider (with its client) for one configured source."""
    return PROVIDERS[source.provider].create(source, transport=transport)


__all__ = [
    "PROVIDERS",
    "FetchError",
    "FetchErrorKind",
    "NormalizedTask",
    "Provider",
    "TaskState",
    "provider_for",
]
