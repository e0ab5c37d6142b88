"""Adding an upstream touches two modules: its provider (spec and client) and its simulator.

A tiny fake upstream is defined below, as a provider module and a simulator module would define
it, and registered with one line in each registry. Config validation, tracking by id and by URL,
fetching over loopback HTTP, the detail page, the sources form and the demo pick it up with no
other change to Taskdeck.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from flask import Flask
from flask import jsonify
from flask import request

from tests.conftest import RefreshDriver
from tests.helpers import soup
from webapp import providers
from webapp import simulators
from webapp.config import ConfigError
from webapp.config import SourceConfig
from webapp.config import build_source
from webapp.db import store
from webapp.demo import demo_sources
from webapp.domain import NormalizedTask
from webapp.domain import TaskState
from webapp.providers.base import Provider
from webapp.providers.base import map_status
from webapp.providers.base import status_table
from webapp.providers.http import BearerAuth
from webapp.providers.payload import Float
from webapp.providers.payload import Id
from webapp.providers.payload import Payload
from webapp.providers.payload import Text
from webapp.providers.payload import validate_payload
from webapp.providers.spec import Credentials
from webapp.providers.spec import DetailField
from webapp.providers.spec import ProviderSpec
from webapp.providers.spec import SourceSetting
from webapp.providers.spec import TaskUrl
from webapp.simulators import SimulatorSuite
from webapp.simulators.core import ManualClock
from webapp.simulators.core import SimulatorState
from webapp.simulators.server import ServerThread

# -- the provider module: its spec and its client ------------------------------------------

FAKE = ProviderSpec(
    name="fake",
    label="Fake Jobs",
    simulator=__name__,
    credentials=Credentials(fields=("fake_token_env",), required=("fake_token_env",)),
    settings=(
        SourceSetting("region", "Region", "the region its jobs run in."),
        SourceSetting("console_url", "Console URL", "where job pages are.", "url"),
    ),
    key_fields=("speed", "colour"),
    field_formats=(DetailField("speed", "Top speed", "metric"),),
    related_link_keys=("batch",),
    task_urls=(
        TaskUrl("/jobs/{task_id}"),
        TaskUrl("/projects/{project}/jobs/{task_id}", root="console_url"),
    ),
    times_note="Fake Jobs reports no times.",
)

STATUSES = status_table(
    {"waiting": TaskState.QUEUED, "going": TaskState.RUNNING, "done": TaskState.SUCCEEDED}
)


class FakeJob(Payload):
    state: str
    speed: Float = None
    colour: Text = None
    batch: Id = None


class FakeProvider(Provider):
    spec = FAKE
    api_prefix = "/jobs"

    @classmethod
    def client_auth(cls, source: SourceConfig) -> httpx.Auth | None:
        return BearerAuth(source.secret("fake_token_env") or "")

    def fetch(self, task_id: str) -> NormalizedTask:
        response = self.request("GET", self.api_path(task_id))
        if response.status_code != 200:
            raise self.status_error(response)
        payload = self.json_body(response)
        job = validate_payload(FakeJob, payload, "job has no string 'state'")
        mapping = map_status(STATUSES, job.state, source=self.source.name, provider=self.name)
        links = {"api": self.api_url(task_id), **({"batch": job.batch} if job.batch else {})}
        return NormalizedTask(
            task_id=task_id,
            state=mapping.state,
            upstream_status=job.state,
            terminal=mapping.terminal,
            raw=payload,
            links=links,
            details={"speed": job.speed, "colour": job.colour, "batch": job.batch},
        )


# -- the simulator module --------------------------------------------------------------------

TOKEN = "fake-secret-token"


def create_app(state: SimulatorState, *, token: str) -> Flask:
    app = Flask("fake-upstream")

    @app.get("/jobs/<job_id>")
    def job(job_id: str) -> Any:
        if request.headers.get("Authorization") != f"Bearer {token}":
            return jsonify(error="bad token"), 401
        task = state.get(job_id)
        if task is None:
            return jsonify(error="no such job"), 404
        return jsonify(state=task.status(state.clock.now()), **task.fields)

    return app


def add_demo_task(
    state: SimulatorState,
    rng: random.Random,
    *,
    task_id: str | None = None,
    final: str = "succeeded",
    queued_seconds: float = 1.0,
    running_seconds: float = 1.0,
) -> Any:
    return state.add(
        task_id or state.next_id("job-"),
        [("waiting", queued_seconds), ("going", running_seconds), ("done", None)],
        fields={"speed": rng.random(), "colour": "teal", "batch": "b-1"},
    )


def demo_source(name: str, base_url: str) -> tuple[dict[str, Any], dict[str, str]]:
    entry = {"name": name, "provider": "fake", "base_url": base_url, "fake_token_env": "FAKE_T"}
    return entry, {"FAKE_T": TOKEN}


FAKE_SIMULATOR = SimpleNamespace(
    PROVIDER="fake",
    DEMO_CREDENTIALS={"token": TOKEN},
    FINAL_STATUS={"succeeded": "done"},
    create_app=create_app,
    add_demo_task=add_demo_task,
    demo_source=demo_source,
    load_seed_tasks=lambda state: [],
)


# -- registering it: one line in each registry --------------------------------------------------


@pytest.fixture
def fake_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(providers.PROVIDERS, "fake", FakeProvider)
    monkeypatch.setitem(simulators.SIMULATORS, "fake", FAKE_SIMULATOR)


@pytest.fixture
def fake_suite(fake_registered: None) -> SimulatorSuite:
    return SimulatorSuite(clock=ManualClock())


@pytest.fixture
def fake_server(fake_suite: SimulatorSuite) -> Iterator[ServerThread]:
    with ServerThread(fake_suite.wsgi_app()) as server:
        yield server


@pytest.fixture
def fake_source(fake_server: ServerThread) -> SourceConfig:
    entry, environ = demo_source("jobs", SimulatorSuite.base_url(fake_server.url, "fake"))
    return build_source({**entry, "console_url": "https://console.fake.test/"}, environ)


# -- what it shows up in -------------------------------------------------------------------------


def test_config_validation_reads_its_spec(fake_source: SourceConfig) -> None:
    assert fake_source.provider == "fake"
    assert fake_source.secret("fake_token_env") == TOKEN
    assert fake_source.setting("console_url") == "https://console.fake.test"
    assert fake_source.poll_interval == FAKE.default_poll_interval
    base = {"name": "jobs", "provider": "fake", "base_url": "http://h"}
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "source 'jobs': fake_token_env: required for provider 'fake'"),
        (
            {"fake_token_env": "T", "api_key_env": "K"},
            "source 'jobs': api_key_env: not used by provider 'fake'",
        ),
        (
            {"fake_token_env": "T", "console_url": "ftp://x"},
            "source 'jobs': field 'console_url': must be an http:// or https:// URL with a host",
        ),
        ({"fake_token_env": "T", "colour": "red"}, "source 'jobs': field 'colour': unknown field"),
        (
            {"provider": "mixpeek", "api_key_env": "K", "region": "eu"},
            "source 'jobs': region: not used by provider 'mixpeek'",
        ),
        (
            {"provider": "jenkins"},
            "source 'jobs': field 'provider': unknown provider; "
            "expected one of opensearch-ml, mixpeek, conductor, nclue, fake",
        ),
    ]
    for fields, message in cases:
        with pytest.raises(ConfigError) as caught:
            build_source({**base, **fields}, {"T": "t", "K": "k"})
        assert str(caught.value) == message


def test_tracked_by_id_and_by_url_fetched_and_shown(
    fake_source: SourceConfig, fake_suite: SimulatorSuite, app_factory: Callable[..., Flask]
) -> None:
    state = fake_suite.states["fake"]
    for task_id in ("by-id", "by-api-url", "by-console-url"):
        add_demo_task(state, random.Random(1), task_id=task_id)
    state.clock.advance(10)
    app = app_factory([fake_source])
    client = app.test_client()
    token = soup(client.get("/")).select_one("input[name=csrf_token]")["value"]
    pasted = "\n".join(
        [
            "by-id",
            f"{fake_source.base_url}/jobs/by-api-url",
            "https://console.fake.test/projects/p-7/jobs/by-console-url",
        ]
    )
    response = client.post(
        "/tasks/track", data={"csrf_token": token, "source": "jobs", "task_ids": pasted}
    )
    assert response.status_code == 303
    driver = RefreshDriver(app)
    driver.pass_()
    driver.close()
    with app.app_context():
        for task_id in ("by-id", "by-api-url", "by-console-url"):
            task = store.get_task("jobs", task_id)
            assert task is not None and task.provider == "fake"
            assert (task.state, task.upstream_status) == ("succeeded", "done")

    page = soup(client.get("/tasks/jobs/by-id"))
    details = page.select_one("#task-details > dl.fields")
    labels = [dt.get_text(strip=True) for dt in details.select("dt")]
    assert labels[-2:] == ["Top speed", "Colour"]
    assert "Batch" in page.select_one("details.more-fields").get_text()
    assert details.select("dd")[-2].select_one("span.metric") is not None
    assert "Fake Jobs" in details.get_text()
    assert "Fake Jobs reports no times." in page.select_one("#task-details").get_text()
    related = [a.get_text() for a in page.select("ul.related a")]
    assert sorted(related) == ["by-api-url", "by-console-url"]


def test_the_sources_form_offers_its_settings_and_credentials(
    fake_registered: None, app_factory: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = app_factory([]).test_client()
    form = soup(client.get("/sources/new"))
    options = {o["value"]: o.get_text() for o in form.select("#f-provider option")}
    assert options["fake"] == "Fake Jobs"
    assert form.select_one("#f-region") is not None
    assert form.select_one("#f-console_url-hint").get_text() == "Fake Jobs: where job pages are."
    credential = form.select_one("label[for=f-fake_token_env]")
    assert "(fake)" in credential.get_text()

    monkeypatch.setenv("TEAM_FAKE_TOKEN", TOKEN)
    token = form.select_one("input[name=csrf_token]")["value"]
    response = client.post(
        "/sources",
        data={
            "csrf_token": token,
            "name": "team-fake",
            "provider": "fake",
            "base_url": "http://fake.test",
            "region": "eu-1",
            "fake_token_env": "TEAM_FAKE_TOKEN",
        },
    )
    assert response.status_code == 303
    row = soup(client.get("/sources")).select_one("#source-team-fake")
    assert "Fake Jobs" in row.get_text() and "eu-1" in row.get_text()


def test_the_demo_runs_a_source_on_its_simulator(fake_registered: None) -> None:
    sources = {source.name: source for source in demo_sources("http://127.0.0.1:1/_upstream")}
    assert sources["fake-demo"].provider == "fake"
    assert sources["fake-demo"].base_url == "http://127.0.0.1:1/_upstream/fake"
