"""Placeholder: the nclue simulator is being written (issue 3). Same interface as opensearch_ml."""

from __future__ import annotations

from typing import Any

from flask import Flask

from webapp.simulators.core import SimTask
from webapp.simulators.core import SimulatorState
from webapp.simulators.core import new_simulator_app

PROVIDER = "nclue"
DEMO_CREDENTIALS: dict[str, Any] = {}


def create_app(state: SimulatorState, **credentials: Any) -> Flask:
    return new_simulator_app(PROVIDER, state, "status")


def load_seed_tasks(state: SimulatorState) -> list[str]:
    return []


def demo_source(name: str, base_url: str) -> tuple[dict[str, Any], dict[str, str]]:
    raise NotImplementedError


def add_demo_task(state: SimulatorState, rng: Any, **kwargs: Any) -> SimTask:
    raise NotImplementedError
