"""Fixtures for the refresher's integration tests: simulators that record which task every
request was about, real ``taskdeck worker`` processes, and a refresher that runs on the
simulators' manual clock. (The throwaway PostgreSQL server is in ``tests/conftest.py``.)"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from flask import Flask

from webapp.simulators import SIMULATORS
from webapp.simulators import SimulatorSuite
from webapp.simulators.core import ManualClock
from webapp.simulators.server import ServerThread

# -- simulators that record what each request was about ----------------------------------------


@dataclass
class Hit:
    at: float
    provider: str
    kind: str
    task_ids: list[str]
    #: The answer's HTTP status, once the simulator has answered.
    status: int | None = None
    #: When the answer's last byte was handed to the server (``None`` while in flight).
    done: float | None = None


class RecordingSimulators:
    """WSGI middleware over the simulator suite: which tasks every request asked about, when.

    Per-id GETs name one task; OpenSearch ``ids`` searches, Conductor ``taskId IN`` searches and
    Mixpeek lists filtered on ``task_id`` name several; anything else (a list page, a token)
    names none.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.hits: list[Hit] = []
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        at = time.monotonic()
        provider, _, rest = environ.get("PATH_INFO", "").lstrip("/").partition("/")
        kind, ids = "other", []
        if "/_control" not in "/" + rest:
            kind, ids = self._about(provider, "/" + rest, environ)
        hit = Hit(at, provider, kind, ids)
        with self.lock:
            self.hits.append(hit)

        def recording_start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
            hit.status = int(status.split(" ", 1)[0])
            return start_response(status, headers, exc_info)

        # A generator, so the hit is done only once the server has taken the whole answer
        # (a slow fault sleeps inside the app call).
        body = self.app(environ, recording_start_response)
        try:
            yield from body
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
            hit.done = time.monotonic()

    @staticmethod
    def _about(provider: str, path: str, environ: dict[str, Any]) -> tuple[str, list[str]]:
        method = environ["REQUEST_METHOD"]
        prefixes = {
            "opensearch-ml": "/_plugins/_ml/tasks/",
            "mixpeek": "/v1/tasks/",
            "conductor": "/api/tasks/",
            "nclue": "/api/v1/tasks/",
        }
        prefix = prefixes.get(provider, "\0")
        if provider == "mixpeek" and path == "/v1/tasks/list":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length)
            environ["wsgi.input"] = io.BytesIO(body)
            conditions = (json.loads(body or b"{}").get("filters") or {}).get("AND") or []
            ids = [
                task_id
                for condition in conditions
                if condition.get("field") == "task_id" and condition.get("operator") == "in"
                for task_id in condition.get("value", [])
            ]
            return ("search" if ids else "other"), ids
        if path.endswith("/_search"):
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length)
            environ["wsgi.input"] = io.BytesIO(body)
            query = (json.loads(body or b"{}").get("query") or {}).get("ids") or {}
            return "search", list(query.get("values", []))
        if path.endswith("/search"):
            query = parse_qs(environ.get("QUERY_STRING", "")).get("query", [""])[0]
            inside = query.partition("(")[2].rpartition(")")[0]
            return "search", [part.strip().strip("'") for part in inside.split(",") if part]
        if method == "GET" and path.startswith(prefix) and path.count("/") == prefix.count("/"):
            return "get", [path[len(prefix) :]]
        return "other", []

    def fetch_times(self) -> dict[tuple[str, str], list[float]]:
        """(provider, task id) -> arrival times of every request that asked for it."""
        out: dict[tuple[str, str], list[float]] = {}
        with self.lock:
            for hit in self.hits:
                for task_id in hit.task_ids:
                    out.setdefault((hit.provider, task_id), []).append(hit.at)
        return out

    def fetch_spans(self) -> dict[tuple[str, str], list[tuple[float, float | None]]]:
        """(provider, task id) -> (arrival, done) of every request that asked for it."""
        out: dict[tuple[str, str], list[tuple[float, float | None]]] = {}
        with self.lock:
            for hit in self.hits:
                for task_id in hit.task_ids:
                    out.setdefault((hit.provider, task_id), []).append((hit.at, hit.done))
        return out

    def in_flight(self) -> set[tuple[str, str]]:
        """(provider, task id) of every task a request not answered yet asks about."""
        with self.lock:
            return {(h.provider, t) for h in self.hits if h.done is None for t in h.task_ids}

    def answered(self, provider: str, status: int) -> int:
        """How many of ``provider``'s answers had ``status`` (control requests included)."""
        with self.lock:
            return sum(1 for h in self.hits if h.provider == provider and h.status == status)

    def count(self, provider: str | None = None) -> int:
        with self.lock:
            return sum(1 for h in self.hits if provider is None or h.provider == provider)


@dataclass
class Upstreams:
    suite: SimulatorSuite
    recorder: RecordingSimulators
    server: ServerThread

    @property
    def clock(self) -> ManualClock:
        return self.suite.clock  # type: ignore[return-value]

    def state(self, provider: str):  # type: ignore[no-untyped-def]
        return self.suite.states[provider]

    def source_entry(self, provider: str, name: str, **fields: Any) -> tuple[dict, dict]:
        module = SIMULATORS[provider]
        entry, environ = module.demo_source(name, self.suite.base_url(self.server.url, provider))
        entry.update(fields)
        return entry, environ


@pytest.fixture
def upstreams(clock: ManualClock) -> Iterator[Upstreams]:
    """All four simulators on the test's manual clock, recording every request. Mixpeek's own
    rate limit is lifted (tests of it set one) and NCLUE's timestamp check is off, as in the
    shared ``suite`` fixture."""
    credentials = {
        "nclue": {**SIMULATORS["nclue"].DEMO_CREDENTIALS, "max_skew_seconds": None},
        "mixpeek": {**SIMULATORS["mixpeek"].DEMO_CREDENTIALS, "rate_limit": 10**9},
    }
    suite = SimulatorSuite(clock=clock, credentials=credentials, seed=4)
    recorder = RecordingSimulators(suite.wsgi_app())
    with ServerThread(recorder) as server:
        yield Upstreams(suite, recorder, server)


def sim_time(clock: ManualClock) -> Callable[[], datetime]:
    """The refresher's clock on the simulators' time: pauses, back-offs and upstream reset
    times then all move when the test advances the clock."""
    return lambda: datetime.fromtimestamp(clock.now(), UTC)


def track_at(app: Flask, clock: ManualClock, source: str, *task_ids: str) -> None:
    """Track tasks as due at the simulators' time (for a refresher on ``sim_time``)."""
    from webapp.db import store
    from webapp.db.models import db

    with app.app_context():
        for task_id in task_ids:
            store.track(source, task_id, now=sim_time(clock)())
        db.session.commit()


# -- real worker processes -------------------------------------------------------------------


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log: Path
    owner_prefix: str = field(init=False)

    def __post_init__(self) -> None:
        # Refresher owners are "host:pid:..." (webapp/refresher.py).
        self.owner_prefix = f"{socket.gethostname()}:{self.process.pid}:"

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """``start_worker(env)``: a ``taskdeck worker`` subprocess; stopped at the end of the test."""
    started: list[WorkerProcess] = []

    def start(env: dict[str, str]) -> WorkerProcess:
        log = tmp_path / f"worker-{len(started)}.log"
        script = Path(sys.executable).parent / "taskdeck"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [str(script), "worker"],
                env={**os.environ, **env},
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        worker = WorkerProcess(process, log)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def write_sources(path: Path, entries: list[dict[str, Any]]) -> Path:
    """A sources TOML file for worker processes."""
    lines = []
    for entry in entries:
        lines.append("[[sources]]")
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in entry.items())
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def worker_env(
    database_url: str, config: Path, tmp_path: Path, extra: dict[str, str]
) -> dict[str, str]:
    """The environment of a ``taskdeck worker`` beside a test's app: its database, its sources
    file, an instance folder of its own and a short tick (``extra``: the sources' secrets)."""
    return {
        "TASKDECK_DATABASE_URL": database_url,
        "TASKDECK_CONFIG": str(config),
        "TASKDECK_SECRET_KEY": "k",
        "TASKDECK_INSTANCE_PATH": str(tmp_path / "worker-instance"),
        "TASKDECK_REFRESH_TICK": "0.05",
        **extra,
    }
