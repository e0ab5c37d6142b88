"""Upstream simulators: real HTTP servers that speak each upstream's task API.

They are part of the product (``taskdeck simulate``, the demo) and the yardstick of every
test, so they follow PROVIDERS.md and the seed documents, never a client's convenience.
Each provider's simulator is mounted under ``/<provider-name>`` of one WSGI app, so a source's
``base_url`` is ``http://host:port/<provider-name>`` (a path prefix, as behind a proxy).

Every simulator module satisfies :class:`~webapp.simulators.protocol.Simulator`: ``PROVIDER``,
``create_app(state, **credentials)``, ``DEMO_CREDENTIALS`` (the keyword arguments the demo
passes), ``FINAL_STATUS``, ``demo_source(name, base_url)`` (a sources-file entry and the
environment holding its secrets), ``load_seed_tasks(state)`` (serve the seed documents'
examples) and ``add_demo_task(state, rng, task_id=, final=, queued_seconds=, running_seconds=)``
(a task that progresses to the word for ``final``). Its routes share one prologue, counting the
call and applying faults (:func:`~webapp.simulators.core.simulated`); a module only states its
upstream's own behaviour, with a sibling module where one concern is large (``*_search``).
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from typing import Any

from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.wrappers import Response

from webapp.simulators import conductor
from webapp.simulators import mixpeek
from webapp.simulators import nclue
from webapp.simulators import opensearch_ml
from webapp.simulators.core import Clock
from webapp.simulators.core import SimulatorState
from webapp.simulators.protocol import Simulator

_MODULES: tuple[Simulator, ...] = (opensearch_ml, mixpeek, conductor, nclue)
#: Provider name -> its simulator (each module is one).
SIMULATORS: dict[str, Simulator] = {simulator.PROVIDER: simulator for simulator in _MODULES}


@dataclass
class SimulatorSuite:
    """One state per provider and the WSGI app that serves them all under ``/<provider>``.

    ``credentials`` overrides the keyword arguments given to a simulator's ``create_app``
    (its ``DEMO_CREDENTIALS`` by default).
    """

    clock: Clock = field(default_factory=Clock)
    credentials: dict[str, dict[str, Any]] = field(default_factory=dict)
    seed: int = 0
    states: dict[str, SimulatorState] = field(init=False)
    apps: dict[str, Flask] = field(init=False)

    def __post_init__(self) -> None:
        self.states = {name: SimulatorState(self.clock, seed=self.seed) for name in SIMULATORS}
        self.apps = {
            name: module.create_app(
                self.states[name], **self.credentials.get(name, module.DEMO_CREDENTIALS)
            )
            for name, module in SIMULATORS.items()
        }

    def load_seeds(self) -> dict[str, list[str]]:
        """Serve every seed example; provider name -> the seeded task ids."""
        return {
            name: module.load_seed_tasks(self.states[name]) for name, module in SIMULATORS.items()
        }

    def wsgi_app(self, fallback: Any = None) -> DispatcherMiddleware:
        mounts: dict[str, Any] = {f"/{name}": app for name, app in self.apps.items()}
        return DispatcherMiddleware(
            fallback or Response("Taskdeck upstream simulators", status=404), mounts
        )

    @staticmethod
    def base_url(root: str, provider: str) -> str:
        return f"{root.rstrip('/')}/{provider}"
