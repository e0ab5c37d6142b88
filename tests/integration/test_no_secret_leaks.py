"""A full run, grepped for secrets: upstream credentials (from environment variables and typed
in the UI), the Flask and encryption keys, a user's password and its hash, and an API token
must appear in no page, fragment, export, API answer, error page, CLI output or log line.

Everything goes over real HTTP on loopback, as a person and a script would use it: sign in,
add sources with typed secrets, track tasks, let the refresher fetch them from the simulators
(including failures: a refused key, a server error), then read every kind of page.
"""

from __future__ import annotations

import io
import logging
import random
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from tests.conftest import RefreshDriver
from tests.web.security import add_api_token
from webapp import logs
from webapp.access.accounts import hash_password
from webapp.access.tokens import token_digest
from webapp.db.models import Source
from webapp.db.models import User
from webapp.db.models import db
from webapp.simulators import SIMULATORS
from webapp.simulators import SimulatorSuite
from webapp.simulators.core import Fault
from webapp.simulators.core import ManualClock
from webapp.simulators.server import ServerThread
from webapp.sources.registry import registry

#: What each simulator accepts, by credential field of its sources: distinctive values only.
UPSTREAM_SECRETS = {
    "opensearch-ml": {"username_env": "grep-os-user-1f9a", "password_env": "grep-os-pass-7c2e9b"},
    "conductor": {"key_id_env": "grep-cond-id-3b3b", "key_secret_env": "grep-cond-secret-9d9d"},
    "mixpeek": {"api_key_env": "grep-mixpeek-key-55aa1"},
    "nclue": {"access_key_env": "GREPNCLUEACCESS8E8E", "secret_key_env": "grep-nclue-secret-4f4f"},
}
SIMULATOR_CREDENTIALS = {
    "opensearch-ml": {"username": "grep-os-user-1f9a", "password": "grep-os-pass-7c2e9b"},
    "conductor": {
        "auth": "keys",
        "key_id": "grep-cond-id-3b3b",
        "key_secret": "grep-cond-secret-9d9d",
    },
    "mixpeek": {"api_key": "grep-mixpeek-key-55aa1"},
    "nclue": {
        "access_key": "GREPNCLUEACCESS8E8E",
        "secret_key": "grep-nclue-secret-4f4f",
        "max_skew_seconds": None,
    },
}
#: Sources from the file (secrets in environment variables) and from the UI (typed).
FILE_SOURCES = {"ml-file": "opensearch-ml", "cond-file": "conductor"}
UI_SOURCES = {"mx-ui": "mixpeek", "nc-ui": "nclue"}
FLASK_SECRET = "grep-flask-secret-key-0a0a0a0a"
PASSWORD = "grep-user-password-6e6e6e"


@pytest.fixture
def suite(clock: ManualClock) -> SimulatorSuite:
    """The simulators, accepting only the distinctive credentials above."""
    return SimulatorSuite(clock=clock, credentials=SIMULATOR_CREDENTIALS)


class RawRecords(logging.Handler):
    """Every record's message as logged, before any handler's filter could mask a secret."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name}: {record.getMessage()}")
        if record.exc_info:
            self.lines.append(logging.Formatter().formatException(record.exc_info))


@pytest.fixture
def captured_logs(caplog: pytest.LogCaptureFixture) -> Iterator[tuple[io.StringIO, RawRecords]]:
    """What Taskdeck's own handler writes (after its redaction), and every record at DEBUG as
    it was logged: the raw handler goes first, so the redaction cannot hide a secret that some
    code logs and only the safety net catches."""
    logs.configure()  # installs the handler, if no app did yet
    caplog.set_level(logging.DEBUG)
    root = logging.getLogger()
    handler = next(h for h in root.handlers if h.get_name() == logs.HANDLER_NAME)
    stream = io.StringIO()
    previous = handler.setStream(stream)  # type: ignore[attr-defined]
    raw = RawRecords()
    root.handlers.insert(0, raw)
    try:
        yield stream, raw
    finally:
        root.removeHandler(raw)
        handler.setStream(previous)  # type: ignore[attr-defined]


def write_sources_file(path: Path, sim_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = []
    for name, provider in FILE_SOURCES.items():
        entry, environ = SIMULATORS[provider].demo_source(
            name, SimulatorSuite.base_url(sim_url, provider)
        )
        lines.append("[[sources]]")
        lines += [f"{key} = {value!r}".replace("'", '"') for key, value in entry.items()]
        for field, secret in UPSTREAM_SECRETS[provider].items():
            monkeypatch.setenv(entry[field], secret)
    path.write_text("\n".join(lines) + "\n")


def ui_source_form(name: str, provider: str, sim_url: str) -> dict[str, str]:
    entry, _environ = SIMULATORS[provider].demo_source(
        name, SimulatorSuite.base_url(sim_url, provider)
    )
    form = {key: str(value) for key, value in entry.items() if not key.endswith("_env")}
    form["verify_tls"] = "on"
    for field, secret in UPSTREAM_SECRETS[provider].items():
        form[f"secret-{field}"] = secret
    return form


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


def test_a_full_run_shows_and_logs_no_secret(
    app_factory, sim_server, suite, clock, tmp_path, monkeypatch, captured_logs, caplog
):
    config = tmp_path / "taskdeck.toml"
    write_sources_file(config, sim_server.url, monkeypatch)
    secrets_key = ",".join([Fernet.generate_key().decode(), Fernet.generate_key().decode()])
    app = app_factory(
        SOURCES=None,
        CONFIG=str(config),
        AUTH="local",
        SECRET_KEY=FLASK_SECRET,
        SECRETS_KEY=secrets_key,
    )
    with app.app_context():
        user = User(username="ana", role="admin", password_hash=hash_password(PASSWORD))
        db.session.add(user)
        db.session.commit()
        password_hash = user.password_hash
    api_token = add_api_token(app, "grep-ci", "admin")

    server = ServerThread(app).start()
    outputs: dict[str, str] = {}
    driver = RefreshDriver(app)
    try:
        browser = httpx.Client(base_url=server.url, follow_redirects=True)
        script = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {api_token}"})

        def read(client: httpx.Client, url: str, **kwargs: object) -> httpx.Response:
            response = client.get(url, **kwargs)  # type: ignore[arg-type]
            outputs[f"GET {url}"] = f"{response.headers}\n{response.text}"
            return response

        def send(client: httpx.Client, url: str, data: dict[str, str]) -> httpx.Response:
            response = client.post(url, data=data)
            outputs[f"POST {url}"] = f"{response.headers}\n{response.text}"
            return response

        # Sign in, with a wrong password first (the refusal and its log line are grepped too).
        login = read(browser, "/login")
        send(browser, "/login", {"csrf_token": csrf_of(login), "username": "ana", "password": "x"})
        signed_in = send(
            browser,
            "/login",
            {"csrf_token": csrf_of(login), "username": "ana", "password": PASSWORD},
        )
        assert signed_in.status_code == 200 and "Sign in" not in signed_in.text

        # Sources with typed secrets, through the form.
        for name, provider in UI_SOURCES.items():
            form = read(browser, "/sources/new")
            added = send(
                browser,
                "/sources",
                {"csrf_token": csrf_of(form), **ui_source_form(name, provider, sim_server.url)},
            )
            assert added.status_code == 200 and f"source-{name}" in added.text, added.text[:400]
        assert set(registry(app).names()) == set(FILE_SOURCES) | set(UI_SOURCES)

        # Tasks on every source: some finish, some fail, one is refused (401), one errs (500).
        rng = random.Random(3)
        sources = {**FILE_SOURCES, **UI_SOURCES}
        for name, provider in sources.items():
            module, state = SIMULATORS[provider], suite.states[provider]
            ids = [
                module.add_demo_task(state, rng, final=final, running_seconds=5).task_id
                for final in ("succeeded", "failed")
            ]
            running = module.add_demo_task(state, rng, running_seconds=10_000).task_id
            page = read(browser, "/")
            send(
                browser,
                "/tasks/track",
                {
                    "csrf_token": csrf_of(page),
                    "source": name,
                    "task_ids": "\n".join([*ids, running]),
                },
            )
        suite.states["mixpeek"].set_fault(Fault.UNAUTHORIZED, times=1)
        suite.states["conductor"].set_fault(Fault.SERVER_ERROR, times=1)
        driver.pass_()
        clock.advance(30)
        driver.pass_()
        driver.pass_()
        with app.app_context():
            fetched = db.session.scalar(
                db.select(db.func.count())
                .select_from(Source)
                .where(Source.last_success_at.is_not(None))
            )
        assert fetched == len(sources), "every source answered at least once"

        # Every kind of page, fragment, export and answer.
        listing = read(browser, "/?view=all")
        detail_links = sorted(set(re.findall(r'href="(/tasks/[a-z-]+/[^"/]+)"', listing.text)))
        assert len(detail_links) >= len(sources) * 3
        for link in detail_links:
            read(browser, link)
            read(browser, link + "/status", headers={"HX-Request": "true"})
            read(browser, link + "/raw.json")
        poller = re.search(r'id="live-poller"[^>]*hx-get="([^"]+)"', listing.text, re.S)
        if poller:
            read(browser, poller.group(1).replace("&amp;", "&"), headers={"HX-Request": "true"})
        for url in [
            "/",
            "/?view=all&state=problems",
            "/?view=all&q=failed",
            "/sources",
            "/sources/new",
            "/sources/mx-ui/edit",
            "/sources/nc-ui/edit",
            "/tasks/import",
            "/tasks/export.csv?view=all",
            "/tasks/export.json?view=all",
            "/tasks/charts?view=all",
            "/api/v1/tasks?view=all&limit=100",
            "/no/such/page",
            "/sources/ml-file/edit",
            "/tokens",
            "/users",
            "/account",
            "/notifications",
            "/notifications/deliveries",
            "/audit",
            "/audit/export.csv",
            "/audit/export.json",
        ]:
            read(browser, url)
        # A share link, and its page as someone with no session reads it.
        share_path = detail_links[0] + "/share"
        made = send(browser, share_path, {"csrf_token": csrf_of(listing), "expires": "1h"})
        shared = re.search(r'id="share-url"[^>]*value="([^"]+)"', made.text)
        assert shared, made.text[:500]
        stranger = httpx.Client(base_url=server.url)
        assert read(stranger, shared.group(1)).status_code == 200
        read(stranger, shared.group(1) + "/status", headers={"HX-Request": "true"})
        send(browser, "/tasks/track", {"source": "ml-file", "task_ids": "x"})  # no CSRF token
        for url in ["/api/v1/tasks?limit=100", "/api/v1/openapi.json", "/metrics", "/healthz"]:
            read(script, url)
        for link in detail_links[:4]:
            read(script, "/api/v1" + link)
        read(httpx.Client(base_url=server.url), "/api/v1/tasks")  # 401
        read(
            httpx.Client(base_url=server.url, headers={"Authorization": "Bearer tdk_wrong"}),
            "/metrics",
        )
        cli = app.test_cli_runner().invoke(args=["sources"])
        outputs["taskdeck sources"] = cli.output
    finally:
        driver.close()
        server.stop()

    with app.app_context():
        stored = {
            row.name: row.encrypted_credentials for row in db.session.scalars(db.select(Source))
        }
    assert all(stored[name] for name in UI_SOURCES), "typed secrets are stored, encrypted"

    secrets = {
        **{f"{p}:{f}": v for p, fields in UPSTREAM_SECRETS.items() for f, v in fields.items()},
        "flask secret key": FLASK_SECRET,
        "password": PASSWORD,
        "password hash": password_hash,
        "password hash digest": password_hash.rsplit("$", 1)[-1],
        "api token": api_token,
        "api token digest": token_digest(api_token),
        **{f"secrets key {i}": key for i, key in enumerate(secrets_key.split(","))},
    }
    written, raw = captured_logs
    log_text = "\n".join([written.getvalue(), caplog.text, *raw.lines])
    # Not a vacuous grep: pages, failures and upstream requests were all seen and logged.
    assert len(outputs) > 40
    assert any(line.startswith("webapp.upstream") for line in raw.lines)
    assert any("401" in text or "refuses" in text for text in outputs.values())
    assert "mx-ui" in outputs["GET /audit"] and "grep-ci" in outputs["GET /tokens"]
    assert "ana" in outputs["GET /users"] and "Share link made" in outputs[f"POST {share_path}"]
    leaks = [
        f"{label} in {where}"
        for label, secret in secrets.items()
        for where, text in [*outputs.items(), ("the logs", log_text)]
        if secret in text
    ]
    assert leaks == []
