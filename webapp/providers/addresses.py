"""Which upstream addresses Taskdeck refuses: link-local and cloud-metadata ones.

A source URL is typed by an admin (or comes from a file), but a host name can be made to
resolve anywhere, and the instance-metadata service of a cloud machine (169.254.169.254 and
its kin) hands out the machine's credentials to whoever asks from inside. So Taskdeck refuses
those addresses twice: when a source is configured (literal addresses and the metadata host
names, :func:`refused_host`) and when it connects (the address a name resolved to, which a
DNS-rebinding trick may change after the check: :class:`GuardedBackend` connects to the very
address it checked). Loopback and private ranges stay allowed: simulators and upstreams on the
same network live there. ``TASKDECK_ALLOW_LINK_LOCAL=true`` lifts the rule.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

import httpcore

ALLOW_SETTING = "TASKDECK_ALLOW_LINK_LOCAL"
#: Cloud instance-metadata services outside the link-local ranges, and their names.
METADATA_ADDRESSES = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack, Oracle
        ipaddress.ip_address("fd00:ec2::254"),  # AWS over IPv6
        ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
    }
)
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata.goog"})

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: httpcore's own type of a socket option (``httpcore._backends.base.SOCKET_OPTION``).
SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)


def refused_address(address: IPAddress) -> str | None:
    """Why Taskdeck will not talk to ``address``, or ``None`` when it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return f"{address} is a cloud-metadata address"
    if address.is_link_local:
        return f"{address} is a link-local address"
    return None


def refused_host(host: str) -> str | None:
    """Why a URL's host is refused as written (a literal address or a metadata name)."""
    name = host.strip("[]").rstrip(".").lower()
    if name in METADATA_HOSTS:
        return f"{name} is a cloud-metadata host"
    try:
        address = ipaddress.ip_address(name.split("%", 1)[0])  # fe80::1%eth0
    except ValueError:
        return None
    return refused_address(address)


def refusal_message(reason: str) -> str:
    return f"{reason}; Taskdeck does not connect there unless {ALLOW_SETTING}=true"


class AddressRefused(httpcore.ConnectError):
    """A connection not made because the host resolved to a refused address."""


class GuardedBackend(httpcore.NetworkBackend):
    """httpcore's network backend, resolving each host itself and connecting only to addresses
    :func:`refused_address` lets through (TLS still checks the certificate against the host
    name: httpcore passes the URL's host for SNI and verification, not the address)."""

    def __init__(self, inner: httpcore.NetworkBackend | None = None) -> None:
        self._inner = inner or httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = resolve(host, port)
        for address in addresses:
            reason = refused_address(address)
            if reason is not None:
                raise AddressRefused(refusal_message(f"{host} resolves to {reason}"))
        last_error: Exception | None = None
        for address in addresses:
            try:
                return self._inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last_error = exc
        assert last_error is not None  # resolve() returns at least one address
        raise last_error

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.NetworkStream:
        return self._inner.connect_unix_socket(path, timeout, socket_options)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def resolve(host: str, port: int) -> list[IPAddress]:
    """The addresses ``host`` resolves to, in the resolver's order, without repeats."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise httpcore.ConnectError(f"cannot resolve {host}: {exc.strerror}") from exc
    found: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    if not found:
        raise httpcore.ConnectError(f"cannot resolve {host}")
    return found
