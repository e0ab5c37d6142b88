"""What a provider needs to know of the source it talks to.

:class:`webapp.config.SourceConfig` is the one implementation; providers are typed against this
protocol instead, so the provider layer does not depend on the configuration module (which
reads the providers' specs to validate a source).
"""

from __future__ import annotations

from typing import Protocol
from zoneinfo import ZoneInfo

from pydantic import SecretStr


class SourceSettings(Protocol):
    """A configured source, as the provider layer reads it."""

    @property
    def name(self) -> str: ...
    @property
    def provider(self) -> str: ...
    @property
    def base_url(self) -> str: ...
    @property
    def poll_interval(self) -> float: ...
    @property
    def timeout(self) -> float: ...
    @property
    def max_concurrency(self) -> int: ...
    @property
    def verify_tls(self) -> bool: ...
    @property
    def ca_bundle(self) -> str | None: ...
    @property
    def credentials(self) -> dict[str, SecretStr]: ...
    @property
    def zone(self) -> ZoneInfo: ...
    @property
    def effective_rate_limit(self) -> float | None: ...

    def setting(self, name: str) -> str | None:
        """A provider-specific setting (``tenant_id``, ``namespace``…), or ``None``."""
        ...

    def secret(self, env_field: str) -> str | None:
        """The secret read from the variable that ``env_field`` names, or ``None``."""
        ...
