"""``taskdeck demo``: the upstream simulators and the dashboard on one port, with live tasks.

Everything runs in one process on SQLite: the simulators are mounted under ``/_upstream``,
one demo source per provider points at them over real HTTP, and new tasks keep starting so a
newcomer watches states change without setting anything up.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from pathlib import Path

from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from webapp.commands.common import serve
from webapp.config import SourceConfig
from webapp.config import build_source
from webapp.db import store
from webapp.db.models import db
from webapp.db.setup import upgrade_database
from webapp.demo_sink import PREFIX as SINK_PREFIX
from webapp.demo_sink import sink_app
from webapp.factory import ROOT
from webapp.factory import create_app
from webapp.providers import provider_class
from webapp.providers import provider_spec
from webapp.refresher.background import start_background
from webapp.refresher.background import stop_background
from webapp.simulators import SIMULATORS
from webapp.simulators import SimulatorSuite
from webapp.simulators import conductor_http
from webapp.simulators import opensearch_ml as ml_simulator

log = logging.getLogger(__name__)

UPSTREAM_PREFIX = "/_upstream"
#: How the demo's tasks end, most of them well.
OUTCOME_WEIGHTS = {"succeeded": 6, "failed": 2, "partial": 1, "cancelled": 1}
#: Tasks per provider that run for an hour, so the demo always has active tasks to cancel
#: (the finished ones show delete and retry where their upstream has them).
LONG_RUNNERS = 2
LONG_RUNNING_SECONDS = 3600.0
MAX_SPAWNED = 300
#: Every demo source follows all of its simulator's tasks, so what the spawner starts upstream
#: shows up in the list on its own (``*``: every provider's match-all).
DEMO_FOLLOW = "*"
#: Seconds between the demo's follow runs: the shortest a source may set.
DEMO_FOLLOW_INTERVAL = 5.0


def demo_source_name(provider: str) -> str:
    """The demo's source for ``provider`` (``ml-demo`` for ``opensearch-ml``)."""
    return f"{provider_spec(provider).short_name}-demo"


def demo_source_names() -> dict[str, str]:
    """Provider name -> its demo source's name, for every simulated provider."""
    return {provider: demo_source_name(provider) for provider in SIMULATORS}


def demo_sources(root: str, poll_interval: float = 2.0) -> list[SourceConfig]:
    sources = []
    for provider, module in SIMULATORS.items():
        entry, environ = module.demo_source(
            demo_source_name(provider), SimulatorSuite.base_url(root, provider)
        )
        entry["poll_interval"] = poll_interval
        if provider_class(provider).can_search:
            entry["follow"] = DEMO_FOLLOW
            entry["follow_interval"] = DEMO_FOLLOW_INTERVAL
        # Linked tasks (the workflow that launches an ML task) are tracked as they are found.
        entry["track_related"] = True
        sources.append(build_source(entry, environ, origin="demo"))
    return sources


def add_random_task(
    suite: SimulatorSuite, provider: str, rng: random.Random, *, started_ago: float = 0.0
) -> str:
    """Start one task on ``provider``'s simulator with a random outcome and timing."""
    module = SIMULATORS[provider]
    outcomes = [o for o in OUTCOME_WEIGHTS if o in module.FINAL_STATUS]
    final = rng.choices(outcomes, weights=[OUTCOME_WEIGHTS[o] for o in outcomes])[0]
    task = module.add_demo_task(
        suite.states[provider],
        rng,
        final=final,
        queued_seconds=rng.uniform(3, 12),
        running_seconds=rng.uniform(10, 60),
    )
    task.started_at -= started_ago
    return task.task_id


def populate_simulators(
    suite: SimulatorSuite, per_provider: int = 8, seed: int = 7
) -> dict[str, list[str]]:
    """Tasks at every stage: some finished long ago, some running, some just queued."""
    rng = random.Random(seed)
    created: dict[str, list[str]] = {}
    for provider in SIMULATORS:
        created[provider] = [
            add_random_task(suite, provider, rng, started_ago=rng.choice([0, 5, 20, 40, 600, 3600]))
            for _ in range(per_provider)
        ]
    created[conductor_http.PROVIDER].append(add_linked_workflow(suite, random.Random(seed + 2)))
    # A generator of their own, so the tasks above stay what they were.
    slow = random.Random(seed + 1)
    for provider, module in SIMULATORS.items():
        for _ in range(LONG_RUNNERS):
            task = module.add_demo_task(
                suite.states[provider],
                slow,
                final="succeeded",
                queued_seconds=slow.uniform(3, 12),
                running_seconds=LONG_RUNNING_SECONDS,
            )
            created[provider].append(task.task_id)
    return created


def add_linked_workflow(suite: SimulatorSuite, rng: random.Random) -> str:
    """A Conductor workflow whose HTTP task started an ML Commons job two minutes ago: the
    task's output holds the ML task's id, so the refresher links the two (and tracks the ML
    task: the demo sources set ``track_related``). Returns the Conductor task's id."""
    launched = ml_simulator.add_demo_task(
        suite.states[ml_simulator.PROVIDER], rng, queued_seconds=5, running_seconds=300
    )
    method, path = ml_simulator.starting_request(launched)
    launcher = conductor_http.add_launching_task(
        suite.states[conductor_http.PROVIDER],
        rng,
        method=method,
        uri=f"http://opensearch.internal:9200{path}",
        answer={"task_id": launched.task_id, "status": "CREATED"},
    )
    launcher.started_at -= 120
    launched.started_at -= 118
    return launcher.task_id


class TaskSpawner:
    """Starts a new upstream task now and then, as a busy team would. The demo sources'
    follows find and track it; only a provider without a search, which cannot be followed,
    has its tasks tracked here."""

    def __init__(
        self, app: Flask, suite: SimulatorSuite, every: float = 6.0, seed: int = 11
    ) -> None:
        self.app = app
        self.suite = suite
        self.every = every
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.spawned = 0

    def run(self) -> None:

        while not self.stop.wait(self.every) and self.spawned < MAX_SPAWNED:
            provider = self.rng.choice(list(SIMULATORS))
            task_id = add_random_task(self.suite, provider, self.rng)
            if not provider_class(provider).can_search:
                with self.app.app_context():
                    store.track(demo_source_name(provider), task_id)
                    db.session.commit()
            self.spawned += 1

    def start(self) -> None:
        threading.Thread(target=self.run, name="demo-spawner", daemon=True).start()


def build_demo(
    host: str, port: int, instance_path: str | None = None
) -> tuple[Flask, SimulatorSuite, DispatcherMiddleware]:
    """The demo app, its simulators, and the WSGI app serving both."""

    suite = SimulatorSuite()
    seeded = suite.load_seeds()
    populated = populate_simulators(suite)
    reachable = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    sources = demo_sources(f"http://{reachable}:{port}{UPSTREAM_PREFIX}")
    config = {
        "DEMO": True,
        "AUTH": "none",
        "SOURCES": sources,
        # An alert rule posting to the demo's own sink page, so alerts show without set-up.
        "NOTIFICATIONS": [
            {
                "name": "demo: problems",
                "when": "state:problems",
                "url": f"http://{reachable}:{port}{SINK_PREFIX}/hook",
            }
        ],
        "BASE_URL": f"http://{reachable}:{port}",
        "UI_POLL_SECONDS": 2,
        "REFRESH_TICK": 0.5,
    }
    if instance_path:
        config["DATABASE_URL"] = f"sqlite:///{Path(instance_path) / 'demo.sqlite'}"
    app = create_app(config) if instance_path else _fresh_demo_app(config)
    upgrade_database(app)
    with app.app_context():
        for provider, ids in {p: seeded[p] + populated[p] for p in SIMULATORS}.items():
            for task_id in ids:
                store.track(demo_source_name(provider), task_id)
        db.session.commit()
    wsgi = DispatcherMiddleware(
        app, {UPSTREAM_PREFIX: suite.wsgi_app(), SINK_PREFIX: sink_app().wsgi_app}
    )
    return app, suite, wsgi


def _fresh_demo_app(config: dict[str, object]) -> Flask:
    """The demo starts from an empty database of its own (``instance/demo.sqlite``)."""

    instance = Path(os.environ.get("TASKDECK_INSTANCE_PATH") or ROOT / "instance")
    instance.mkdir(parents=True, exist_ok=True)
    database = instance / "demo.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    return create_app({**config, "DATABASE_URL": f"sqlite:///{database}"})


def run_demo(host: str, port: int) -> None:
    app, suite, wsgi = build_demo(host, port)
    # One line per request (the refresher's calls to the simulators included) drowns the log.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    start_background(app)
    TaskSpawner(app, suite).start()
    banner = (
        f"Taskdeck demo on http://{host}:{port}/ (upstreams under {UPSTREAM_PREFIX}/, "
        f"alerts arrive at {SINK_PREFIX}/)"
    )
    serve(host, port, wsgi, banner, on_stop=lambda: stop_background(app))
