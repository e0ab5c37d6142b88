"""Link-local and cloud-metadata addresses: refused in the configuration (as written) and at
connection time (as resolved, so a name that rebinds to one is caught too); loopback and
private ranges stay allowed; ``TASKDECK_ALLOW_LINK_LOCAL`` lifts the rule."""

from __future__ import annotations

import socket
from pathlib import Path

import httpcore
import httpx
import pytest

from tests.helpers import csrf
from tests.helpers import soup
from webapp.config import ConfigError
from webapp.config import build_source
from webapp.config import load_sources_file
from webapp.domain import FetchError
from webapp.domain import FetchErrorKind
from webapp.providers import provider_for
from webapp.providers.addresses import GuardedBackend
from webapp.providers.addresses import refused_host
from webapp.providers.http import default_transport
from webapp.sources.registry import registry

REFUSED = [
    "169.254.169.254",
    "169.254.10.1",
    "[fe80::1]",
    "fe80::1%eth0",
    "[fd00:ec2::254]",
    "100.100.100.200",
    "metadata.google.internal",
    "METADATA.GOOGLE.INTERNAL.",
    "[::ffff:169.254.169.254]",
]
ALLOWED = ["127.0.0.1", "localhost", "10.1.2.3", "192.168.0.5", "172.16.0.1", "[::1]", "ml.corp"]


@pytest.mark.parametrize("host", REFUSED)
def test_link_local_and_metadata_hosts_are_refused(host):
    assert refused_host(host)


@pytest.mark.parametrize("host", ALLOWED)
def test_loopback_private_and_plain_names_are_allowed(host):
    assert refused_host(host) is None


def entry(base_url: str) -> dict[str, str]:
    return {"name": "cloud", "provider": "opensearch-ml", "base_url": base_url}


@pytest.mark.parametrize("url", ["http://169.254.169.254", "http://metadata.google.internal:80"])
def test_config_refuses_them_naming_the_field_and_the_setting(url):
    with pytest.raises(ConfigError) as raised:
        build_source(entry(url), {})
    message = str(raised.value)
    assert message.startswith("source 'cloud': field 'base_url': ")
    assert "TASKDECK_ALLOW_LINK_LOCAL=true" in message
    assert build_source(entry(url), {}, allow_link_local=True).base_url == url


def test_url_settings_of_a_provider_are_checked_too():
    data = {
        "name": "orkes",
        "provider": "conductor",
        "base_url": "http://conductor.corp",
        "token_env": "X",
        "ui_url": "http://169.254.169.254/ui",
    }
    with pytest.raises(ConfigError, match="ui_url.*cloud-metadata"):
        build_source(data, {"X": "t"})


def test_the_sources_file_honours_the_setting(tmp_path: Path):
    path = tmp_path / "taskdeck.toml"
    path.write_text(
        '[[sources]]\nname = "cloud"\nprovider = "opensearch-ml"\n'
        'base_url = "http://169.254.169.254:9200"\n'
    )
    with pytest.raises(ConfigError, match="cloud-metadata address"):
        load_sources_file(path, {})
    assert load_sources_file(path, {}, allow_link_local=True)[0].name == "cloud"


def test_the_sources_form_refuses_them(app):
    client = app.test_client()
    response = client.post(
        "/sources",
        data={"csrf_token": csrf(client), **entry("http://[fe80::1]:9200"), "verify_tls": "on"},
    )
    assert response.status_code == 422
    assert "link-local" in soup(response).select_one("#form-error").get_text()


@pytest.fixture
def rebinding_dns(monkeypatch: pytest.MonkeyPatch):
    """``rebind.test`` resolves to the metadata address (as a hostile DNS server would answer
    after the configuration check); ``mixed.test`` to a private address and that one."""
    real = socket.getaddrinfo

    def answer(address: str) -> list[tuple]:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, 80))]

    def getaddrinfo(host, port, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host == "rebind.test":
            return answer("169.254.169.254")
        if host == "mixed.test":
            return answer("10.0.0.7") + answer("fd00:ec2::254")
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.mark.parametrize("host", ["rebind.test", "mixed.test"])
def test_a_name_resolving_to_a_metadata_address_is_refused_when_connecting(rebinding_dns, host):
    source = build_source(entry(f"http://{host}:9200"), {})  # passes: only a name so far
    provider = provider_for(source)
    try:
        with pytest.raises(FetchError) as raised:
            provider.fetch("job-1")
    finally:
        provider.close()
    assert raised.value.kind is FetchErrorKind.NETWORK
    assert f"{host} resolves to" in raised.value.message
    assert "cloud-metadata address" in raised.value.message
    assert "TASKDECK_ALLOW_LINK_LOCAL=true" in raised.value.message


def test_the_guard_never_opens_a_connection_to_a_refused_address(rebinding_dns, monkeypatch):
    opened: list[object] = []
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: opened.append(a))
    with pytest.raises(httpcore.ConnectError):
        GuardedBackend().connect_tcp("rebind.test", 80)
    assert opened == []


def test_loopback_upstreams_still_work(ml_source, sim_server):
    client = httpx.Client(transport=default_transport(ml_source), base_url=sim_server.url)
    with client:
        assert client.get("/opensearch-ml/_control/stats").status_code == 200


def test_the_setting_lifts_the_connection_guard(app_factory, ml_source):
    assert isinstance(default_transport(ml_source)._pool._network_backend, GuardedBackend)
    lifted = default_transport(ml_source, allow_link_local=True)
    assert not isinstance(lifted._pool._network_backend, GuardedBackend)
    app = app_factory([ml_source], ALLOW_LINK_LOCAL=True)
    provider = registry(app).provider("ml-prod")
    assert not isinstance(provider.client._transport._pool._network_backend, GuardedBackend)
    default = registry(app_factory([ml_source])).provider("ml-prod")
    assert isinstance(default.client._transport._pool._network_backend, GuardedBackend)
