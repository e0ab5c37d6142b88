"""One configured ``httpx.Client`` per source."""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Generator

import httpcore
import httpx

from webapp.providers.addresses import AddressRefused
from webapp.providers.addresses import GuardedBackend
from webapp.providers.source import SourceSettings
from webapp.version import __version__

log = logging.getLogger("webapp.upstream")


def build_client(
    source: SourceSettings,
    *,
    auth: httpx.Auth | None = None,
    headers: dict[str, str] | None = None,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """A client for one source: base URL, auth, explicit timeouts, pool limits and TLS options.

    ``transport`` lets unit tests plug in ``httpx.MockTransport``. Connection errors are retried
    once by the transport; status-based retries (429, 5xx) are the refresher's job.
    """
    if transport is None:
        transport = default_transport(source)
    return httpx.Client(
        base_url=source.base_url,
        auth=auth,
        headers={
            "User-Agent": f"taskdeck/{__version__}",
            "Accept": "application/json",
            **(headers or {}),
        },
        timeout=httpx.Timeout(source.timeout, connect=min(5.0, source.timeout)),
        limits=httpx.Limits(
            max_connections=source.max_concurrency,
            max_keepalive_connections=source.max_concurrency,
            keepalive_expiry=30.0,
        ),
        transport=transport,
        event_hooks={"request": [_mark_start], "response": [_log_response]},
    )


def default_transport(
    source: SourceSettings, *, allow_link_local: bool = False
) -> httpx.HTTPTransport:
    """The real network transport for a source: its TLS options, one retry of a failed
    connection, and (unless ``allow_link_local``) no connection to a link-local or
    cloud-metadata address, whatever the host name resolves to (:mod:`.addresses`)."""
    verify: ssl.SSLContext | bool = source.verify_tls
    if source.ca_bundle and source.verify_tls:
        verify = ssl.create_default_context(cafile=source.ca_bundle)
    transport = httpx.HTTPTransport(retries=1, verify=verify)
    if not allow_link_local:
        pool = transport._pool
        assert isinstance(pool, httpcore.ConnectionPool)  # no proxy is given to it
        # httpx has no parameter for httpcore's network backend; the pool is new and unused.
        pool._network_backend = GuardedBackend()
    return transport


def refusal(exc: httpx.TransportError) -> str | None:
    """The reason a connection was refused by the address guard, if that is what happened."""
    cause = exc.__cause__
    return str(cause) if isinstance(cause, AddressRefused) else None


def _mark_start(request: httpx.Request) -> None:
    request.extensions["taskdeck_started"] = time.perf_counter()


def _log_response(response: httpx.Response) -> None:
    started = response.request.extensions.get("taskdeck_started")
    elapsed_ms = (time.perf_counter() - started) * 1000 if started else 0.0
    # Only method, path and status: URLs carry no secrets here, headers might.
    log.debug(
        "%s %s -> %s in %.0f ms",
        response.request.method,
        response.request.url.raw_path.decode("ascii", "replace"),
        response.status_code,
        elapsed_ms,
    )


class BearerAuth(httpx.Auth):
    """``Authorization: Bearer <key>`` added per request, so the key is not a default header
    of the client (which could end up in a log or a repr)."""

    def __init__(self, api_key: str) -> None:
        self._api_key = api_key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._api_key}"
        yield request

    def __repr__(self) -> str:
        return "BearerAuth(<hidden>)"
