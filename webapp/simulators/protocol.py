"""What every upstream simulator offers: the demo, the CLI, the tests and the bench use only this.

A simulator module satisfies :class:`Simulator` with module-level names (a module can implement
a protocol); ``SIMULATORS`` in the package maps each provider name to one.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any
from typing import Protocol
from typing import runtime_checkable

from flask import Flask

from webapp.simulators.core import SimTask
from webapp.simulators.core import SimulatorState

#: A ``[[sources]]`` entry and the environment variables holding its secrets.
DemoSource = tuple[dict[str, Any], dict[str, str]]


@runtime_checkable
class Simulator(Protocol):
    """One upstream's simulator."""

    #: The provider name, also the simulator's mount path in the suite.
    PROVIDER: str
    #: Keyword arguments of ``create_app`` for the demo, ``taskdeck simulate`` and the tests.
    DEMO_CREDENTIALS: dict[str, Any]
    #: The upstream's final word for each normalized outcome it can reach (``"succeeded"``,
    #: ``"failed"``, ...); an outcome missing here never happens on this upstream.
    FINAL_STATUS: dict[str, str]
    #: ``create_app(state, **credentials)``: the Flask app speaking the upstream's API. Its
    #: keyword arguments differ per upstream (a key, a login, a not-found style...), hence
    #: a callable attribute rather than a method with one signature.
    create_app: Callable[..., Flask]

    def demo_source(self, name: str, base_url: str) -> DemoSource:
        """A sources-file entry for this simulator at ``base_url`` and its secrets' environment."""
        ...

    def load_seed_tasks(self, state: SimulatorState) -> list[str]:
        """Serve the seed documents' examples exactly as written; returns their task ids."""
        ...

    def add_demo_task(
        self,
        state: SimulatorState,
        rng: random.Random,
        *,
        task_id: str | None = None,
        final: str = "succeeded",
        queued_seconds: float = 3.0,
        running_seconds: float = 10.0,
    ) -> SimTask:
        """A task that waits ``queued_seconds``, runs ``running_seconds``, then ends with
        ``FINAL_STATUS[final]``; its id and details come from ``rng``."""
        ...
