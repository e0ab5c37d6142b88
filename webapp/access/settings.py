"""The access settings, checked once at start-up: sign-in mode, trusted proxies, roles given on
first sight, read-only, and the session cookie.

Flask reads ``TASKDECK_*`` variables as JSON where they parse (``true``, ``14``) and as text
otherwise, so every value is normalised here and a wrong one stops start-up with a
:class:`ConfigError` naming the variable.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import Flask
from flask import current_app

from webapp.access.roles import Role
from webapp.config import ConfigError

#: Sign-in modes (DESIGN.md, "Accounts and access"); OpenID Connect joins them in its own change.
AUTH_MODES = ("local", "proxy", "oidc", "none")
#: Modes where people sign in somewhere else, so accounts here need no password.
OUTSIDE_SIGN_IN = ("proxy", "oidc")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True)
class AccessSettings:
    mode: str
    #: Peers whose user header is believed (``proxy`` mode).
    trusted_proxies: tuple[IPNetwork, ...]
    proxy_user_header: str
    proxy_email_header: str | None
    #: What people named by a proxy (or another outside sign-in) are on first sight.
    default_role: Role
    read_only: bool

    def is_trusted_proxy(self, address: str | None) -> bool:
        """Whether ``address`` (the direct peer, never ``X-Forwarded-For``) is a trusted proxy."""
        if not address:
            return False
        try:
            peer = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped is not None:
            peer = peer.ipv4_mapped  # ::ffff:10.0.0.1 from a dual-stack socket
        return any(peer in network for network in self.trusted_proxies)


def parse_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"TASKDECK_{name}: {value!r} is not true or false")


def parse_trusted_proxies(value: Any) -> tuple[IPNetwork, ...]:
    """``"10.0.0.5, 192.168.1.0/24, ::1"`` (or a list) as networks; a host is a /32 or /128."""
    if value is None or value == "":
        return ()
    entries = value if isinstance(value, list | tuple) else str(value).split(",")
    networks = []
    for entry in entries:
        text = str(entry).strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ConfigError(
                f"TASKDECK_TRUSTED_PROXIES: {text!r} is not an IP address or network "
                "(write addresses or CIDR networks, separated by commas)"
            ) from None
    return tuple(networks)


def _header_name(name: str, value: Any, *, required: bool) -> str | None:
    text = "" if value is None else str(value).strip()
    if not text:
        if required:
            raise ConfigError(f"TASKDECK_{name}: must name a request header")
        return None
    if not all(c.isalnum() or c == "-" for c in text):
        raise ConfigError(f"TASKDECK_{name}: {text!r} is not a header name")
    return text


def load(app: Flask) -> AccessSettings:
    """Check the access settings in ``app.config``; raises :class:`ConfigError`."""
    config = app.config
    mode = str(config["AUTH"]).strip().lower()
    if mode not in AUTH_MODES:
        raise ConfigError(
            f"TASKDECK_AUTH: unknown sign-in mode {config['AUTH']!r}; "
            f"expected one of {', '.join(AUTH_MODES)}"
        )
    try:
        default_role = Role.parse(str(config["DEFAULT_ROLE"]))
    except ValueError as exc:
        raise ConfigError(f"TASKDECK_DEFAULT_ROLE: {exc}") from None
    trusted = parse_trusted_proxies(config["TRUSTED_PROXIES"])
    if mode == "proxy" and not trusted:
        raise ConfigError(
            "TASKDECK_TRUSTED_PROXIES: required with TASKDECK_AUTH=proxy "
            "(the addresses of the proxies whose user header is believed)"
        )
    return AccessSettings(
        mode=mode,
        trusted_proxies=trusted,
        proxy_user_header=_header_name(
            "PROXY_USER_HEADER", config["PROXY_USER_HEADER"], required=True
        )
        or "",
        proxy_email_header=_header_name(
            "PROXY_EMAIL_HEADER", config["PROXY_EMAIL_HEADER"], required=False
        ),
        default_role=default_role,
        read_only=parse_bool("READ_ONLY", config["READ_ONLY"]),
    )


def configure_session(app: Flask) -> None:
    """The session cookie: ``HttpOnly``, ``SameSite=Lax``, ``Secure`` unless told otherwise or
    run for development, and kept ``SESSION_DAYS`` days."""
    config = app.config
    secure = config["SECURE_COOKIES"]
    if secure is None or secure == "":
        # Whether the browser sees HTTPS cannot be told from here behind a proxy that ends TLS,
        # so the safe answer is the default; plain-HTTP set-ups say so explicitly.
        secure = not (app.debug or app.testing or config["DEMO"])
    config["SESSION_COOKIE_SECURE"] = parse_bool("SECURE_COOKIES", secure)
    config["SESSION_COOKIE_HTTPONLY"] = True
    config["SESSION_COOKIE_SAMESITE"] = "Lax"
    try:
        days = float(config["SESSION_DAYS"])
    except (TypeError, ValueError):
        days = 0
    if days <= 0:
        raise ConfigError(f"TASKDECK_SESSION_DAYS: {config['SESSION_DAYS']!r} is not a number > 0")
    config["PERMANENT_SESSION_LIFETIME"] = timedelta(days=days)


def init_app(app: Flask) -> AccessSettings:
    settings = load(app)
    app.config["AUTH"] = settings.mode
    app.config["READ_ONLY"] = settings.read_only
    app.extensions["taskdeck.access"] = settings
    configure_session(app)
    return settings


def access_settings(app: Flask | None = None) -> AccessSettings:
    settings: AccessSettings = (app or current_app).extensions["taskdeck.access"]
    return settings


def is_read_only(app: Flask | None = None) -> bool:
    return access_settings(app).read_only
