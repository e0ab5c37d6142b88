"""Configuration: Flask defaults, ``TASKDECK_*`` environment variables, and the sources file.

A *source* is one configured upstream account or cluster (DESIGN.md, Configuration). The TOML
file is validated with pydantic; any error stops start-up with one message that names the
source and the field. Credentials never live in the file: it names the environment variables
that hold them, and they are read here into ``SecretStr`` values.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo
from zoneinfo import ZoneInfoNotFoundError

from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
from pydantic import SecretStr
from pydantic import ValidationError
from pydantic import field_validator
from pydantic import model_validator

ProviderName = Literal["opensearch-ml", "mixpeek", "conductor", "nclue"]

#: Which ``*_env`` fields each provider may use, and which pairs must come together.
CREDENTIAL_FIELDS: dict[str, tuple[str, ...]] = {
    "opensearch-ml": ("username_env", "password_env"),
    "mixpeek": ("api_key_env",),
    "conductor": ("key_id_env", "key_secret_env", "token_env"),
    "nclue": ("access_key_env", "secret_key_env"),
}
REQUIRED_CREDENTIALS: dict[str, tuple[str, ...]] = {
    "mixpeek": ("api_key_env",),
    "nclue": ("access_key_env", "secret_key_env"),
}
PAIRED_CREDENTIALS: tuple[tuple[str, str], ...] = (
    ("username_env", "password_env"),
    ("key_id_env", "key_secret_env"),
    ("access_key_env", "secret_key_env"),
)

#: Source names that would collide with Taskdeck's own pages under ``/tasks/``.
RESERVED_SOURCE_NAMES = frozenset({"import", "live", "charts", "track", "untrack", "export"})

#: Defaults for the per-source request budget (issue 4): NCLUE asks for at most 1 request/s.
DEFAULT_RATE_LIMIT: dict[str, float] = {"nclue": 1.0}


class ConfigError(Exception):
    """A configuration problem, with one message naming the source and the field."""


class SourceConfig(BaseModel):
    """One ``[[sources]]`` entry, after validation and credential lookup."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$", max_length=64)
    provider: ProviderName
    base_url: str
    poll_interval: float = Field(default=5.0, gt=0, le=86400)
    #: The upstream's web UI root, for "open upstream" links (Conductor's execution page).
    ui_url: str | None = None
    verify_tls: bool = True
    ca_bundle: str | None = None
    timeout: float = Field(default=10.0, gt=0, le=300)
    #: At most this many requests to the source at once.
    max_concurrency: int = Field(default=4, ge=1, le=64)
    #: Requests per second to the source (token bucket); ``None`` means no limit of our own.
    rate_limit: float | None = Field(default=None, gt=0)
    #: Zone for upstream times sent without one (NCLUE).
    timezone: str = "UTC"

    # opensearch-ml
    username_env: str | None = None
    password_env: str | None = None
    tenant_id: str | None = None
    # mixpeek
    api_key_env: str | None = None
    namespace: str | None = None
    # conductor
    key_id_env: str | None = None
    key_secret_env: str | None = None
    token_env: str | None = None
    # nclue
    access_key_env: str | None = None
    secret_key_env: str | None = None

    #: Where this source was defined: the config file, the web UI (database) or the demo.
    origin: Literal["file", "database", "demo"] = "file"
    #: Secrets read from the named environment variables; never written anywhere.
    credentials: dict[str, SecretStr] = Field(default_factory=dict, exclude=True, repr=False)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if value in RESERVED_SOURCE_NAMES:
            raise ValueError(f"{value!r} names a page of Taskdeck's own (/tasks/{value})")
        return value

    @field_validator("base_url", "ui_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if parts.query or parts.fragment:
            raise ValueError("must not have a query string or fragment")
        return value.rstrip("/")

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _check_credentials(self) -> SourceConfig:
        allowed = set(CREDENTIAL_FIELDS[self.provider])
        for field_name in {f for fields in CREDENTIAL_FIELDS.values() for f in fields} - allowed:
            if getattr(self, field_name) is not None:
                raise ValueError(f"{field_name}: not used by provider {self.provider!r}")
        for first, second in PAIRED_CREDENTIALS:
            if (getattr(self, first) is None) != (getattr(self, second) is None):
                raise ValueError(f"{first} and {second} go together")
        for field_name in REQUIRED_CREDENTIALS.get(self.provider, ()):
            if getattr(self, field_name) is None:
                raise ValueError(f"{field_name}: required for provider {self.provider!r}")
        if self.provider == "conductor" and self.token_env and self.key_id_env:
            raise ValueError("token_env: give either token_env or key_id_env/key_secret_env")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def effective_rate_limit(self) -> float | None:
        return (
            self.rate_limit
            if self.rate_limit is not None
            else DEFAULT_RATE_LIMIT.get(self.provider)
        )

    def secret(self, env_field: str) -> str | None:
        """The secret read from the variable that ``env_field`` names, if any."""
        value = self.credentials.get(env_field)
        return value.get_secret_value() if value is not None else None

    def public_settings(self) -> dict[str, Any]:
        """Settings safe to show on /sources: names of variables, never their values."""
        return self.model_dump(exclude={"credentials"}, exclude_none=True)


class SourcesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sources: list[dict[str, Any]] = Field(default_factory=list)


def build_source(
    data: Mapping[str, Any], environ: Mapping[str, str] | None = None, *, origin: str = "file"
) -> SourceConfig:
    """Validate one source and read its credentials; raises :class:`ConfigError`."""
    environ = os.environ if environ is None else environ
    label = data.get("name") if isinstance(data.get("name"), str) else "?"
    try:
        source = SourceConfig.model_validate({**data, "origin": origin})
    except ValidationError as exc:
        raise ConfigError(f"source {label!r}: {_first_error(exc)}") from None
    credentials: dict[str, SecretStr] = {}
    for field_name in CREDENTIAL_FIELDS[source.provider]:
        variable = getattr(source, field_name)
        if variable is None:
            continue
        value = environ.get(variable)
        if not value:
            raise ConfigError(
                f"source {source.name!r}: field {field_name!r}: "
                f"environment variable {variable} is not set"
            )
        credentials[field_name] = SecretStr(value)
    return source.model_copy(update={"credentials": credentials})


def load_sources_file(
    path: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> list[SourceConfig]:
    """Read and validate a sources TOML file; raises :class:`ConfigError` with one message."""
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path}: not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path}: cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: not valid TOML: {exc}") from None
    try:
        parsed = SourcesFile.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(f"config file {path}: {_first_error(exc)}") from None
    sources: list[SourceConfig] = []
    seen: set[str] = set()
    for entry in parsed.sources:
        source = build_source(entry, environ)
        if source.name in seen:
            raise ConfigError(f"source {source.name!r}: field 'name': used by two sources")
        seen.add(source.name)
        sources.append(source)
    return sources


def _first_error(exc: ValidationError) -> str:
    """``field 'x': message`` for the first pydantic error, in words a person can act on."""
    error = exc.errors()[0]
    location = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown field"
    elif error["type"] == "literal_error" and location == "provider":
        message = "unknown provider; expected one of opensearch-ml, mixpeek, conductor, nclue"
    elif error["type"] == "string_pattern_mismatch" and location == "name":
        message = "must be a slug: lower-case letters, digits and single dashes"
    if location:
        return f"field {location!r}: {message}"
    return message


DEFAULTS: dict[str, Any] = {
    "SECRET_KEY": None,
    "DATABASE_URL": None,
    "CONFIG": None,
    #: Run the refresher in the web process (``taskdeck run``, gunicorn, the demo); set it to
    #: false when separate ``taskdeck worker`` processes do the fetching.
    "REFRESHER": True,
    #: Seconds between refresher passes when it runs in-process or as ``taskdeck worker``.
    "REFRESH_TICK": 1.0,
    #: Rows per page on the task list.
    "PAGE_SIZE": 50,
    #: How often a page polls for live updates, in seconds.
    "UI_POLL_SECONDS": 3,
    #: Delete finished tasks this many days after they finished; ``None`` keeps them.
    "RETENTION_DAYS": None,
    #: Seconds a worker holds a claimed task before another may take it over (after a crash).
    "LEASE_SECONDS": None,
    #: ``text`` or ``json`` (one JSON object per line).
    "LOG_FORMAT": "text",
    "DEMO": False,
}
