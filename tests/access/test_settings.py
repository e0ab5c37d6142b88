"""The access settings are checked at start-up, each mistake named in one line."""

from __future__ import annotations

import pytest

from tests.conftest import close_app
from tests.helpers import soup
from webapp import create_app
from webapp.config import DEFAULTS
from webapp.config import ConfigError


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"AUTH": "ldap"}, "TASKDECK_AUTH: unknown sign-in mode 'ldap'; expected one of local,"),
        ({"AUTH": "proxy"}, "TASKDECK_TRUSTED_PROXIES: required with TASKDECK_AUTH=proxy"),
        (
            {"AUTH": "proxy", "TRUSTED_PROXIES": "10.0.0.1, proxy.internal"},
            "TASKDECK_TRUSTED_PROXIES: 'proxy.internal' is not an IP address or network",
        ),
        ({"TRUSTED_PROXIES": "10.0.0.0/33"}, "TASKDECK_TRUSTED_PROXIES: '10.0.0.0/33'"),
        ({"DEFAULT_ROLE": "owner"}, "TASKDECK_DEFAULT_ROLE: unknown role 'owner'"),
        ({"READ_ONLY": "perhaps"}, "TASKDECK_READ_ONLY: 'perhaps' is not true or false"),
        ({"SECURE_COOKIES": "sometimes"}, "TASKDECK_SECURE_COOKIES: 'sometimes'"),
        ({"SESSION_DAYS": 0}, "TASKDECK_SESSION_DAYS: 0 is not a number > 0"),
        ({"PROXY_USER_HEADER": "X User"}, "TASKDECK_PROXY_USER_HEADER: 'X User' is not a header"),
    ],
)
def test_a_wrong_setting_stops_start_up(bare_app_factory, config, message):
    with pytest.raises(ConfigError) as refused:
        bare_app_factory(**config)
    assert str(refused.value).startswith(message)


def test_settings_from_the_environment_are_read(instance_path, monkeypatch):
    monkeypatch.setenv("TASKDECK_INSTANCE_PATH", str(instance_path))
    monkeypatch.setenv("TASKDECK_AUTH", "proxy")
    monkeypatch.setenv("TASKDECK_TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8,::1")
    monkeypatch.setenv("TASKDECK_READ_ONLY", "true")
    monkeypatch.setenv("TASKDECK_DEFAULT_ROLE", "editor")
    app = create_app({"TESTING": True, "SECRET_KEY": "test", "SOURCES": [], "REFRESHER": False})
    try:
        settings = app.extensions["taskdeck.access"]
        assert app.config["AUTH"] == "proxy" and app.config["READ_ONLY"] is True
        assert settings.default_role.label == "editor"
        assert [str(n) for n in settings.trusted_proxies] == [
            "127.0.0.1/32",
            "10.0.0.0/8",
            "::1/128",
        ]
        assert settings.is_trusted_proxy("10.20.30.40")
        assert settings.is_trusted_proxy("::ffff:127.0.0.1")  # IPv4 on a dual-stack socket
        assert not settings.is_trusted_proxy("192.168.0.1")
        assert not settings.is_trusted_proxy(None)
    finally:
        close_app(app)


def test_sign_in_is_local_unless_said_otherwise():
    assert DEFAULTS["AUTH"] == "local"


def test_with_sign_in_off_every_page_says_so(client):
    # The shared fixtures run with AUTH="none", as the demo does.
    for path in ("/", "/sources", "/tasks/import", "/users", "/login"):
        notice = soup(client.get(path)).select_one("#sign-in-off")
        assert notice is not None and "Sign-in is off" in notice.get_text(), path
