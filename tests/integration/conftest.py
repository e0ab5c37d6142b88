"""Fixtures for the refresher's integration tests: a throwaway PostgreSQL server, simulators
that record which task every request was about, real ``taskdeck worker`` processes, and a
refresher that runs on the simulators' manual clock."""

from __future__ import annotations

import glob
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
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
from webapp.sources.registry import registry

# -- PostgreSQL ----------------------------------------------------------------------------


def _postgres_bin() -> Path:
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
    )
    for directory in reversed(candidates):
        if (Path(directory) / "initdb").exists() and (Path(directory) / "pg_ctl").exists():
            return Path(directory)
    pytest.fail(
        "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: "
        "run ./scripts/setup.sh --test (it apt-installs postgresql)",
        pytrace=False,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server of its own in a temporary directory, on a free loopback port.

    As root the server runs as the ``postgres`` system user (it refuses to run as root).
    Yields the URL of its ``postgres`` database; stopped and deleted at the end of the session.
    """
    bindir = _postgres_bin()
    base = Path(tempfile.mkdtemp(prefix="taskdeck-pg-"))
    as_root = os.geteuid() == 0

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = ["runuser", "-u", "postgres", "--", *args] if as_root else list(args)
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    if as_root:
        shutil.chown(base, "postgres", "postgres")
    data, log = base / "data", base / "server.log"
    port = free_port()
    initdb = run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                 "-E", "UTF8", "--no-sync")  # fmt: skip
    if initdb.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"initdb failed: {initdb.stderr.strip()}", pytrace=False)
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
    started = run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-o", options,
                  "start")  # fmt: skip
    if started.returncode != 0:
        detail = log.read_text() if log.exists() else started.stderr
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"PostgreSQL did not start: {detail.strip()[-2000:]}", pytrace=False)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database on the session's server; dropped after the test."""
    import psycopg

    name = f"taskdeck_{uuid.uuid4().hex[:12]}"
    admin = postgres_server.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_server.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, instance_path: Path) -> str:
    """The same test on a SQLite file and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{instance_path / 'taskdeck.sqlite'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def dispose_engines() -> Iterator[Callable[[Flask], Flask]]:
    """Register apps whose database connections must be closed at the end of the test (an open
    psycopg connection left to the garbage collector warns, and warnings are errors here)."""
    apps: list[Flask] = []
    yield lambda app: apps.append(app) or app  # type: ignore[func-returns-value]
    from webapp.db.models import db

    for app in apps:
        registry(app).close()
        with app.app_context():
            db.engine.dispose()


# -- simulators that record what each request was about ----------------------------------------


@dataclass
class Hit:
    at: float
    provider: str
    kind: str
    task_ids: list[str]


class RecordingSimulators:
    """WSGI middleware over the simulator suite: which tasks every request asked about, when.

    Per-id GETs name one task; OpenSearch ``ids`` searches and Conductor ``taskId IN`` searches
    name several; anything else (a list page, a token) names none.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.hits: list[Hit] = []
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        at = time.monotonic()
        provider, _, rest = environ.get("PATH_INFO", "").lstrip("/").partition("/")
        kind, ids = "other", []
        if "/_control" not in "/" + rest:
            kind, ids = self._about(provider, "/" + rest, environ)
        with self.lock:
            self.hits.append(Hit(at, provider, kind, ids))
        return self.app(environ, start_response)

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
