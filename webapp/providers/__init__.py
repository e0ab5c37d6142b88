"""The provider registry: the one place that lists the upstreams Taskdeck speaks to.

Each entry maps a provider's name (as written in the sources file) to its class, whose
``spec`` (:class:`~webapp.providers.spec.ProviderSpec`) is everything else Taskdeck knows about
the upstream. Code outside the provider modules reads providers through the functions below.
"""

from __future__ import annotations

import httpx

from webapp.providers.base import Provider
from webapp.providers.conductor import ConductorProvider
from webapp.providers.mixpeek import MixpeekProvider
from webapp.providers.nclue import NclueProvider
from webapp.providers.opensearch_ml import OpenSearchMLProvider
from webapp.providers.source import SourceSettings
from webapp.providers.spec import ProviderSpec

PROVIDERS: dict[str, type[Provider]] = {
    OpenSearchMLProvider.spec.name: OpenSearchMLProvider,
    MixpeekProvider.spec.name: MixpeekProvider,
    ConductorProvider.spec.name: ConductorProvider,
    NclueProvider.spec.name: NclueProvider,
}


def provider_names() -> list[str]:
    """Every provider's name, in registry order."""
    return list(PROVIDERS)


def provider_specs() -> list[ProviderSpec]:
    """Every provider's spec, in registry order."""
    return [provider.spec for provider in PROVIDERS.values()]


def provider_spec(name: str) -> ProviderSpec:
    """The spec of provider ``name``; ``KeyError`` for a name no provider has."""
    return PROVIDERS[name].spec


def find_provider_spec(name: str) -> ProviderSpec | None:
    """The spec of provider ``name``, or ``None`` (a task left by a provider since removed)."""
    provider = PROVIDERS.get(name)
    return provider.spec if provider is not None else None


def provider_class(name: str) -> type[Provider]:
    """The client class of provider ``name``; ``KeyError`` for a name no provider has."""
    return PROVIDERS[name]


def provider_for(
    source: SourceSettings, *, transport: httpx.BaseTransport | None = None
) -> Provider:
    """A ready provider (with its client) for one configured source."""
    return PROVIDERS[source.provider].create(source, transport=transport)


__all__ = [
    "PROVIDERS",
    "Provider",
    "ProviderSpec",
    "find_provider_spec",
    "provider_class",
    "provider_for",
    "provider_names",
    "provider_spec",
    "provider_specs",
]
