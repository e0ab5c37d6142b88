"""Configuration: Flask defaults, ``TASKDECK_*`` environment variables, and the sources file.

A *source* is one configured upstream account or cluster (DESIGN.md, Configuration). The TOML
file is validated with pydantic; any error stops start-up with one message that names the
source and the field. Which fields a source may set beyond the common ones, and how its
credential fields combine, is its provider's (``ProviderSpec``). Credentials never live in the
file: it names the environment variables that hold them, and they are read here into
``SecretStr`` values.
"""

from __future__ import annotations

import functools
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated
from typing import Any
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo
from zoneinfo import ZoneInfoNotFoundError

from pydantic import AfterValidator
from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
from pydantic import SecretStr
from pydantic import ValidationError
from pydantic import ValidationInfo
from pydantic import create_model
from pydantic import field_validator
from pydantic import model_validator

from webapp.overdue.setting import parse_overdue_after
from webapp.providers import find_provider_spec
from webapp.providers import provider_class
from webapp.providers import provider_names
from webapp.providers import provider_spec
from webapp.providers import provider_specs
from webapp.providers.addresses import refusal_message
from webapp.providers.addresses import refused_host
from webapp.providers.spec import ProviderSpec

#: Source names that would collide with Taskdeck's own pages under ``/tasks/``.
RESERVED_SOURCE_NAMES = frozenset({"import", "live", "charts", "track", "untrack", "export"})


class ConfigError(Exception):
    """A configuration problem, with one message naming the source and the field."""


def check_url(value: str | None, *, allow_link_local: bool = False) -> str | None:
    """An http(s) URL with a host and no query or fragment, without its trailing slash; not
    a link-local or cloud-metadata address unless ``allow_link_local``
    (:mod:`webapp.providers.addresses`; the connection itself is checked again)."""
    if value is None:
        return value
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query string or fragment")
    reason = None if allow_link_local else refused_host(parts.hostname)
    if reason is not None:
        raise ValueError(refusal_message(reason))
    return value.rstrip("/")


def _checked_url(value: str | None, info: ValidationInfo) -> str | None:
    """:func:`check_url` as a validator: the validation context says whether link-local
    addresses are allowed (:func:`build_source`'s ``allow_link_local``)."""
    return check_url(value, allow_link_local=_context(info).get("allow_link_local", False))


def _context(info: ValidationInfo) -> dict[str, Any]:
    return info.context if isinstance(info.context, dict) else {}


class SourceConfig(BaseModel):
    """One ``[[sources]]`` entry, after validation and credential lookup.

    The fields below are every source's. The settings and ``*_env`` credential fields that the
    source's provider declares in its spec are checked against it and kept as extra fields,
    read with :meth:`setting`; a field no provider declares is refused.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$", max_length=64)
    provider: str
    base_url: str
    #: Seconds between polls of an active task (the provider's default when not set).
    poll_interval: float = Field(gt=0, le=86400)
    verify_tls: bool = True
    ca_bundle: str | None = None
    timeout: float = Field(default=10.0, gt=0, le=300)
    #: At most this many requests to the source at once.
    max_concurrency: int = Field(default=4, ge=1, le=64)
    #: Requests per second to the source (token bucket); ``None``: the provider's default.
    rate_limit: float | None = Field(default=None, gt=0)
    #: Zone for upstream times sent without one.
    timezone: str = "UTC"
    #: Seconds an active task may run before it is overdue, for every type or per type
    #: (:mod:`webapp.overdue.setting`); ``None``: learned from the cache's history.
    overdue_after: float | dict[str, float] | None = None
    #: The upstream's own query (as ``taskdeck import --query`` takes it) that the refresher
    #: processes re-run, tracking each new match (:mod:`webapp.follows`); ``None``: no follow.
    follow: str | None = Field(default=None, max_length=4000)
    #: Seconds between runs of ``follow``.
    follow_interval: float = Field(default=60.0, ge=5, le=86400)
    #: The most tasks the first run of ``follow`` tracks (the newest matches).
    follow_backfill: int = Field(default=200, ge=1, le=10_000)
    #: Track the tasks this source's tasks link to (named in their payloads or listed beside
    #: them upstream) automatically (:mod:`webapp.links`).
    track_related: bool = False

    #: Where this source was defined: the config file, the web UI (database) or the demo.
    origin: Literal["file", "database", "demo"] = "file"
    #: Secrets read from the named environment variables, or typed in the UI and stored
    #: encrypted (:mod:`webapp.sources.sealed`); never written anywhere in clear.
    credentials: dict[str, SecretStr] = Field(default_factory=dict, exclude=True, repr=False)

    @model_validator(mode="before")
    @classmethod
    def _provider_fields(cls, data: Any, info: ValidationInfo) -> Any:
        """Check the fields that the provider declares, and fill in its defaults.

        A credential counts as given when the entry names its variable or when the
        validation context's ``typed_credentials`` holds it (a secret typed in the UI).
        """
        if not isinstance(data, dict):
            return data
        spec = (
            find_provider_spec(data["provider"]) if isinstance(data.get("provider"), str) else None
        )
        if spec is None:
            return data  # the provider field's own check says what is wrong
        common = {key: value for key, value in data.items() if key in cls.model_fields}
        own = {key: value for key, value in data.items() if key not in cls.model_fields}
        declared = provider_options(spec).model_fields
        for key in own:
            if key not in declared and any(
                key in provider_options(other).model_fields for other in provider_specs()
            ):
                raise ValueError(f"{key}: not used by provider {spec.name!r}")
        try:
            options = provider_options(spec).model_validate(own, context=info.context)
        except ValidationError as exc:
            raise ValueError(_first_error(exc)) from None
        settings = options.model_dump(exclude_none=True)
        typed = set(_context(info).get("typed_credentials", ()))
        _check_credentials(spec, set(settings) | typed)
        return {"poll_interval": spec.default_poll_interval, **common, **settings}

    @field_validator("provider", mode="before")
    @classmethod
    def _check_provider(cls, value: Any) -> str:
        if not isinstance(value, str) or find_provider_spec(value) is None:
            raise ValueError(f"unknown provider; expected one of {', '.join(provider_names())}")
        return value

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if value in RESERVED_SOURCE_NAMES:
            raise ValueError(f"{value!r} names a page of Taskdeck's own (/tasks/{value})")
        return value

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str, info: ValidationInfo) -> str:
        return _checked_url(value, info) or value

    @field_validator("overdue_after", mode="before")
    @classmethod
    def _check_overdue_after(cls, value: Any) -> float | dict[str, float] | None:
        return parse_overdue_after(value)

    @field_validator("follow", mode="before")
    @classmethod
    def _no_empty_follow(cls, value: Any) -> Any:
        # An empty follow is how a file says "no follow" without deleting the line.
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _check_follow(self) -> SourceConfig:
        """A follow needs an upstream search that can read its query."""
        if self.follow is None:
            return self
        provider = provider_class(self.provider)
        if not provider.can_search:
            raise ValueError(f"field 'follow': {provider.label} has no task search to follow")
        try:
            provider.parse_query(self.follow)
        except ValueError as exc:
            reason = str(exc).removeprefix("--query").lstrip(": ")
            raise ValueError(f"field 'follow': the query cannot be read: {reason}") from None
        return self

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @property
    def spec(self) -> ProviderSpec:
        return provider_spec(self.provider)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def effective_rate_limit(self) -> float | None:
        return self.rate_limit if self.rate_limit is not None else self.spec.default_rate_limit

    def setting(self, name: str) -> str | None:
        """A setting of the provider's own (``tenant_id``...), or the variable a credential
        field names (``api_key_env``...); ``None`` when the source does not set it."""
        value = (self.model_extra or {}).get(name)
        return None if value is None else str(value)

    def secret(self, env_field: str) -> str | None:
        """The secret read from the variable that ``env_field`` names, if any."""
        value = self.credentials.get(env_field)
        return value.get_secret_value() if value is not None else None

    def public_settings(self) -> dict[str, Any]:
        """Settings safe to show on /sources: names of variables, never their values."""
        return self.model_dump(exclude={"credentials"}, exclude_none=True)


@functools.cache
def provider_options(spec: ProviderSpec) -> type[BaseModel]:
    """The model of the fields ``spec``'s provider adds to a source: its ``*_env`` credential
    fields and its settings, every one optional text (URLs checked)."""
    url = Annotated[str | None, AfterValidator(_checked_url)]
    fields: dict[str, Any] = {name: (str | None, None) for name in spec.credentials.fields}
    for setting in spec.settings:
        fields[setting.name] = (url if setting.kind == "url" else str | None, None)
    return create_model(
        f"{spec.name} source settings", __config__=ConfigDict(extra="forbid"), **fields
    )


def _check_credentials(spec: ProviderSpec, given: set[str]) -> None:
    rules = spec.credentials
    for first, second in rules.pairs:
        if (first in given) != (second in given):
            raise ValueError(f"{first} and {second} go together")
    for name in rules.required:
        if name not in given:
            raise ValueError(f"{name}: required for provider {spec.name!r}")
    used = [group for group in rules.alternatives if given.intersection(group)]
    if len(used) > 1:
        either = " or ".join("/".join(group) for group in rules.alternatives)
        raise ValueError(f"{used[0][0]}: give either {either}")


class SourcesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sources: list[dict[str, Any]] = Field(default_factory=list)
    #: Alert rules (``[[notifications]]``), validated by :mod:`webapp.notify.rules`.
    notifications: list[dict[str, Any]] = Field(default_factory=list)


def build_source(
    data: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    *,
    origin: str = "file",
    typed: Mapping[str, str] | None = None,
    allow_link_local: bool = False,
) -> SourceConfig:
    """Validate one source and read its credentials; raises :class:`ConfigError`.

    Each credential field (``api_key_env``…) either names an environment variable, read from
    ``environ``, or has its secret in ``typed`` (typed in the UI, stored encrypted). URLs
    may point at link-local and cloud-metadata addresses only with ``allow_link_local``
    (``TASKDECK_ALLOW_LINK_LOCAL``).
    """
    environ = os.environ if environ is None else environ
    typed = {field: value for field, value in (typed or {}).items() if value}
    label = data.get("name") if isinstance(data.get("name"), str) else "?"
    context = {"typed_credentials": set(typed), "allow_link_local": allow_link_local}
    try:
        source = SourceConfig.model_validate({**data, "origin": origin}, context=context)
    except ValidationError as exc:
        raise ConfigError(f"source {label!r}: {_first_error(exc)}") from None
    credentials: dict[str, SecretStr] = {}
    for field_name in source.spec.credentials.fields:
        variable = source.setting(field_name)
        if variable is not None and field_name in typed:
            raise ConfigError(
                f"source {source.name!r}: field {field_name!r}: give either the name of the "
                "environment variable or the secret itself, not both"
            )
        if field_name in typed:
            credentials[field_name] = SecretStr(typed[field_name])
            continue
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
    path: str | os.PathLike[str],
    environ: Mapping[str, str] | None = None,
    *,
    allow_link_local: bool = False,
) -> list[SourceConfig]:
    """Read and validate a sources TOML file; raises :class:`ConfigError` with one message."""
    parsed = read_config_file(path)
    sources: list[SourceConfig] = []
    seen: set[str] = set()
    for entry in parsed.sources:
        source = build_source(entry, environ, allow_link_local=allow_link_local)
        if source.name in seen:
            raise ConfigError(f"source {source.name!r}: field 'name': used by two sources")
        seen.add(source.name)
        sources.append(source)
    return sources


def read_config_file(path: str | os.PathLike[str]) -> SourcesFile:
    """The config TOML file, its top-level shape checked; raises :class:`ConfigError`."""
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
    return parsed


def _first_error(exc: ValidationError) -> str:
    """``field 'x': message`` for the first pydantic error, in words a person can act on."""
    error = exc.errors()[0]
    location = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown field"
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
    #: ``local`` (users and passwords here), ``proxy``, ``oidc``, or ``none`` (no sign-in).
    "AUTH": "local",
    #: ``oidc`` mode (README, "Sign-in with OpenID Connect"): the provider's issuer URL, or
    #: its discovery document's URL; the client registered there; what to ask for, and how
    #: claims become a user name and a role.
    "OIDC_ISSUER": None,
    "OIDC_METADATA_URL": None,
    "OIDC_CLIENT_ID": None,
    "OIDC_CLIENT_SECRET": None,
    "OIDC_SCOPES": "openid email profile",
    "OIDC_USERNAME_CLAIM": "preferred_username",
    "OIDC_ROLES_CLAIM": None,
    "OIDC_ADMIN_VALUES": "",
    "OIDC_EDITOR_VALUES": "",
    "OIDC_PROVIDER_NAME": None,
    "OIDC_REDIRECT_URI": None,
    "OIDC_TIMEOUT": 10.0,
    #: Refuse and hide every write, whoever asks.
    "READ_ONLY": False,
    #: Fernet key(s) for upstream secrets typed in the UI, comma-separated, the first one
    #: encrypting (older ones still decrypt: key rotation). ``None``: such secrets are refused.
    "SECRETS_KEY": None,
    #: Let sources use link-local and cloud-metadata addresses (169.254.169.254…), refused
    #: by default (webapp/providers/addresses.py).
    "ALLOW_LINK_LOCAL": False,
    #: ``proxy`` mode: the header naming the user, and the one with their e-mail (optional).
    "PROXY_USER_HEADER": "X-Forwarded-User",
    "PROXY_EMAIL_HEADER": "X-Forwarded-Email",
    #: Addresses or CIDR networks of the proxies whose user header is believed (comma-separated).
    "TRUSTED_PROXIES": "",
    #: The role of someone a proxy names the first time they come.
    "DEFAULT_ROLE": "viewer",
    #: Days a sign-in lasts.
    "SESSION_DAYS": 14,
    #: This dashboard's public address (``https://taskdeck.example.com``), for the links that
    #: alerts carry; ``None``: the address of the request that caused them, else localhost.
    "BASE_URL": None,
    #: Where alert e-mail goes out: ``smtp://user:pass@host:port`` (``?starttls=true``) or
    #: ``smtps://…``; ``None``: e-mail targets are refused. And the ``From`` address.
    "SMTP_URL": None,
    "SMTP_FROM": None,
    #: ``Secure`` session cookie; empty: on, except in debug, testing and the demo.
    "SECURE_COOKIES": None,
}
