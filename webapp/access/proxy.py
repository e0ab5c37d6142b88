"""``TASKDECK_AUTH=proxy``: a trusted reverse proxy (oauth2-proxy, a company SSO gateway) signs
people in and names them in a request header. Behind a proxy in any mode, :func:`client_address`
tells the client apart for sign-in throttling.

The header is believed only from a peer listed in ``TASKDECK_TRUSTED_PROXIES``. The peer is the
TCP connection's other end (``REMOTE_ADDR``), never an address from ``X-Forwarded-For``, which
any client can write (only a trusted proxy's own entries in it are believed, and only to count
failed sign-ins). A header from anyone else is ignored and logged, and the request refused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import request

from webapp.access import accounts
from webapp.access.principal import Principal
from webapp.access.settings import access_settings

log = logging.getLogger(__name__)


def client_address() -> str | None:
    """The client's address, for counting its failed sign-ins: the direct peer, unless that is
    a trusted proxy; then the nearest address in ``X-Forwarded-For`` that is not one (the
    entries to its left are the client's to write)."""
    settings = access_settings()
    address = request.remote_addr
    if not settings.is_trusted_proxy(address):
        return address
    forwarded = request.headers.get("X-Forwarded-For", "")
    for hop in reversed([entry.strip() for entry in forwarded.split(",") if entry.strip()]):
        address = hop
        if not settings.is_trusted_proxy(hop):
            break
    return address


@dataclass(frozen=True)
class ProxyRefusal:
    """Why a request in proxy mode has no principal: what to tell the person, and the status."""

    status: int
    message: str


def identify() -> Principal | ProxyRefusal:
    """The person the trusted proxy names, made on first sight with the default role."""
    settings = access_settings()
    header = settings.proxy_user_header
    named = request.headers.get(header, "").strip()
    peer = request.remote_addr
    if not settings.is_trusted_proxy(peer):
        if named:
            log.warning(
                "ignored %s from %s, which is not in TASKDECK_TRUSTED_PROXIES", header, peer
            )
        return ProxyRefusal(
            403,
            "Sign-in here goes through the organisation's proxy, and this request did not come "
            "through it. Use the dashboard's usual address.",
        )
    if not named:
        return ProxyRefusal(
            401,
            f"The sign-in proxy did not say who you are (no {header} header). "
            "Sign in through the proxy again, or ask an administrator to check its set-up.",
        )
    email_header = settings.proxy_email_header
    email = request.headers.get(email_header, "").strip() if email_header else ""
    try:
        user = accounts.outside_user(named, email or None, settings.default_role)
    except accounts.AccountError as exc:
        log.warning("refused the name the proxy sent in %s: %s", header, exc)
        return ProxyRefusal(403, f"The sign-in proxy sent a user name Taskdeck cannot use: {exc}.")
    return accounts.principal_for_user(user)
