"""Taskdeck as it runs in production: gunicorn with the project's config
(``gunicorn -c python:webapp.gunicorn_conf 'app:app'``) and ``taskdeck worker`` processes
sharing one database, against simulators on the wall clock.

- Several processes share NCLUE's budget of 1 request/s (its gateway, simulated, answers 429 to
  anything more): none of our requests is refused, not even those of a ``taskdeck track`` run
  beside them; no task is fetched by two processes at once, no state change is recorded twice,
  and every task reaches its final state.
- SIGTERM in the middle of a pass ends ``taskdeck worker``, ``taskdeck run`` and gunicorn with
  exit code 0 within seconds and leaves no task leased.
- ``/metrics`` adds up the workers' counters; request ids reach responses and both logs.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from flask import Flask

from tests.conftest import free_port
from tests.conftest import wait_for
from tests.helpers import samples
from tests.integration.conftest import RecordingSimulators
from tests.integration.conftest import Upstreams
from tests.integration.conftest import WorkerProcess
from tests.integration.conftest import write_sources
from webapp.config import SourceConfig
from webapp.config import build_source
from webapp.db import store
from webapp.db.models import Task
from webapp.db.models import db
from webapp.simulators import SIMULATORS
from webapp.simulators import SimulatorSuite
from webapp.simulators.core import Clock
from webapp.simulators.core import Fault
from webapp.simulators.core import SimTask
from webapp.simulators.server import ServerThread

ROOT = Path(__file__).resolve().parents[2]
#: Secrets that must never reach a log line (the NCLUE simulator's keys are its demo ones).
SECRET_KEY = "production-test-signing-key"
NCLUE_SECRETS = tuple(SIMULATORS["nclue"].DEMO_CREDENTIALS.values())
#: ``refresher <host>:<pid>:<id> started``, in text or JSON log lines.
REFRESHER_STARTED = re.compile(r"refresher [^\s:]+:(\d+):[0-9a-f]+ started")


# -- the upstreams, on the wall clock -----------------------------------------------------------


@pytest.fixture
def live_upstreams() -> Iterator[Upstreams]:
    """All four simulators on the wall clock (the processes under test cannot share a manual
    one), recording every request; NCLUE's gateway throttles at 1 request/s per access key,
    answering 429 as the real one does, so any request over our budget shows up."""
    nclue = SIMULATORS["nclue"]
    credentials = {
        "nclue": {**nclue.DEMO_CREDENTIALS, "rate_limit_per_second": 1},
        # Mixpeek's own per-key budget is lifted, as in the `upstreams` fixture.
        "mixpeek": {**SIMULATORS["mixpeek"].DEMO_CREDENTIALS, "rate_limit": 10**9},
    }
    suite = SimulatorSuite(clock=Clock(), credentials=credentials, seed=9)
    recorder = RecordingSimulators(suite.wsgi_app())
    with ServerThread(recorder) as server:
        yield Upstreams(suite, recorder, server)


@dataclass
class Deployment:
    """What every process of one deployment shares: the database, the sources file and the
    environment (credentials included)."""

    database_url: str
    sources: list[SourceConfig]
    env: dict[str, str]
    #: An app in the test process on the same database, for tracking tasks and reading rows.
    app: Flask

    def track(self, source: str, *task_ids: str) -> None:
        with self.app.app_context():
            for task_id in task_ids:
                store.track(source, task_id)
            db.session.commit()

    def rows(self) -> list[Task]:
        with self.app.app_context():
            rows = list(db.session.scalars(sa.select(Task).order_by(Task.id)))
            for row in rows:
                row.events  # noqa: B018 - loaded before the session goes
            db.session.expunge_all()
            return rows

    def leased(self) -> list[tuple[str | None, Any]]:
        """``(lease_owner, lease_until)`` of every task that has either set."""
        with self.app.app_context():
            rows = db.session.execute(
                sa.select(Task.lease_owner, Task.lease_until).where(
                    sa.or_(Task.lease_owner.is_not(None), Task.lease_until.is_not(None))
                )
            )
            return [(owner, until) for owner, until in rows]

    def lease_owners(self) -> set[str]:
        return {owner for owner, _ in self.leased() if owner}

    def statuses(self) -> dict[tuple[str, str], str | None]:
        """(source, task id) -> the cached upstream word."""
        with self.app.app_context():
            rows = db.session.execute(sa.select(Task.source, Task.task_id, Task.upstream_status))
            return {(source, task_id): status for source, task_id, status in rows}

    def counts(self) -> dict[tuple[str, str], int]:
        with self.app.app_context():
            rows = db.session.execute(
                sa.select(Task.source, Task.state, sa.func.count(Task.id)).group_by(
                    Task.source, Task.state
                )
            )
            return {(source, state): count for source, state, count in rows}


@pytest.fixture
def deploy(
    live_upstreams: Upstreams, tmp_path: Path, app_factory: Callable[..., Flask]
) -> Callable[..., Deployment]:
    """``deploy(database_url, [(provider, name, fields)...], **env)``: a sources file for the
    simulators, the processes' environment, and the database upgraded to the schema."""

    def make(
        database_url: str, wanted: list[tuple[str, str, dict[str, Any]]], **settings: str
    ) -> Deployment:
        entries = [live_upstreams.source_entry(p, name, **fields) for p, name, fields in wanted]
        config = write_sources(tmp_path / "sources.toml", [entry for entry, _ in entries])
        env = {
            "TASKDECK_DATABASE_URL": database_url,
            "TASKDECK_CONFIG": str(config),
            "TASKDECK_SECRET_KEY": SECRET_KEY,
            "TASKDECK_INSTANCE_PATH": str(tmp_path / "instance"),
            # Sign-in is tested on its own (tests/access); these tests are about serving, over
            # plain HTTP (where a Secure session cookie would never come back).
            "TASKDECK_AUTH": "none",
            "TASKDECK_SECURE_COOKIES": "false",
            **settings,
        }
        for _, environ in entries:
            env.update(environ)
        sources = [build_source(entry, environ) for entry, environ in entries]
        app = app_factory(sources, DATABASE_URL=database_url)
        return Deployment(database_url, sources, env, app)

    return make


def add_tasks(
    upstreams: Upstreams,
    provider: str,
    count: int,
    rng: random.Random,
    finals: tuple[str, ...] = ("succeeded", "failed"),
    **phases: tuple[float, float],
) -> list[SimTask]:
    """``count`` tasks on ``provider``'s simulator, each phase lasting a time drawn from its
    span (``queued_seconds=(2, 6)``...)."""
    module = SIMULATORS[provider]
    return [
        module.add_demo_task(
            upstreams.state(provider),
            rng,
            final=rng.choice(finals),
            **{key: rng.uniform(*span) for key, span in phases.items()},
        )
        for _ in range(count)
    ]


class LeaseWatcher:
    """Every lease owner seen in the database while it runs (a thread polling every 50 ms;
    it shares the interpreter with the simulators, whose timing must stay true)."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-watcher", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.seen |= self.deployment.lease_owners()
            self._stop.wait(0.05)

    def pids(self) -> set[int]:
        return {int(owner.split(":")[1]) for owner in set(self.seen)}

    def __enter__(self) -> LeaseWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# -- processes ------------------------------------------------------------------------------


@dataclass
class Server:
    """A web server process under test (gunicorn's master, or ``taskdeck run``)."""

    process: subprocess.Popen[bytes]
    url: str
    stdout: Path
    stderr: Path

    def output(self) -> str:
        return self.stdout.read_text(errors="replace") + self.stderr.read_text(errors="replace")

    def worker_pids(self) -> set[int]:
        """The processes the server forked (gunicorn's workers), read from /proc."""
        children = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == self.process.pid:
                children.add(int(stat.parent.name))
        return children

    def refreshers(self) -> set[int]:
        """Pids whose in-process refresher has said it started."""
        return {int(pid) for pid in REFRESHER_STARTED.findall(self.output())}

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        # A new connection each time, so the kernel hands requests to either worker.
        return httpx.get(self.url + path, timeout=10, **kwargs)

    def wake_workers(self, count: int = 2) -> None:
        """Send requests until ``count`` workers each run their in-process refresher (under
        gunicorn the first request a worker answers starts it)."""

        def all_running() -> bool:
            assert self.get("/healthz").status_code == 200
            pids = self.worker_pids()
            return len(pids) == count and pids <= self.refreshers()

        wait_for(all_running, timeout=30, what=f"{count} workers running their refresher")

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM; the exit code, which must come within ``timeout`` seconds."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            pytest.fail(f"no exit {timeout} s after SIGTERM:\n{self.output()[-3000:]}")


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """``start_server("gunicorn" | "run", env)``: gunicorn with the project's config (two
    workers unless ``TASKDECK_WORKERS`` says otherwise) or ``taskdeck run``, on a free loopback
    port, answering ``/healthz``; stopped at the end of the test."""
    started: list[Server] = []

    def start(kind: str, env: dict[str, str]) -> Server:
        port = free_port()
        if kind == "gunicorn":
            command = [sys.executable, "-m", "gunicorn", "-c", "python:webapp.gunicorn_conf"]
            command.append("app:app")
        else:
            command = [str(Path(sys.executable).parent / "taskdeck"), "run", "--port", str(port)]
        index = len(started)
        stdout, stderr = tmp_path / f"{kind}-{index}.out", tmp_path / f"{kind}-{index}.err"
        settings = {
            "TASKDECK_BIND": f"127.0.0.1:{port}",
            "TASKDECK_WORKERS": "2",
            "TASKDECK_THREADS": "4",
            # A folder not made yet: gunicorn's config empties or makes it; `taskdeck run`
            # meets it as in an environment shared with gunicorn, and must make it.
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / f"metrics-{index}"),
            # gunicorn's control socket goes here rather than into ~/.gunicorn, shared with
            # any other gunicorn of this user.
            "XDG_RUNTIME_DIR": str(tmp_path),
        }
        with stdout.open("wb") as out, stderr.open("wb") as err:
            process = subprocess.Popen(
                command, cwd=ROOT, env={**os.environ, **settings, **env}, stdout=out, stderr=err
            )
        server = Server(process, f"http://127.0.0.1:{port}", stdout, stderr)
        started.append(server)

        def answering() -> bool:
            if process.poll() is not None:
                pytest.fail(f"{kind} exited with {process.returncode}:\n{server.output()}")
            try:
                return server.get("/healthz").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(answering, timeout=30, what=f"{kind} answering /healthz")
        return server

    yield start
    for server in started:
        if server.process.poll() is None:
            server.process.send_signal(signal.SIGTERM)
            try:
                server.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait(timeout=10)


def taskdeck(deployment: Deployment, *args: str) -> str:
    """Run a ``taskdeck`` command in the deployment's environment; what it printed."""
    done = subprocess.run(
        [str(Path(sys.executable).parent / "taskdeck"), *args],
        env={**os.environ, **deployment.env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and not done.stderr, done
    return done.stdout


def stop_all(workers: list[WorkerProcess], servers: list[Server]) -> None:
    for server in servers:
        assert server.terminate() == 0, server.output()[-3000:]
    for worker in workers:
        worker.stop()
        assert worker.process.returncode == 0, worker.output()


# -- 1. many processes, one budget --------------------------------------------------------------


def overlapping(spans: list[tuple[float, float | None]]) -> list[tuple[float, float]]:
    """Pairs of requests for one task that were in flight at the same time."""
    ordered = sorted((start, end if end is not None else float("inf")) for start, end in spans)
    return [(a, b) for (a, end_a), (b, _) in zip(ordered, ordered[1:], strict=False) if b < end_a]


def test_two_gunicorn_workers_and_two_workers_share_one_budget(
    database_url, live_upstreams, deploy, start_server, start_worker
):
    upstreams = live_upstreams
    rng = random.Random(21)
    deployment = deploy(
        database_url,
        [
            # Polled on a beat of half a second: the processes together want more than
            # NCLUE's 1 request/s, so its budget is what holds them back.
            ("nclue", "nc", {"poll_interval": 0.5}),
            # Two threads a process; a claim takes what is due (a list call of up to 100 ids).
            ("mixpeek", "mx", {"poll_interval": 0.5, "max_concurrency": 2}),
        ],
    )
    # Answers take a moment, so the processes' claims and fetches overlap in time.
    upstreams.state("mixpeek").set_fault(Fault.SLOW, seconds=0.05)

    with LeaseWatcher(deployment) as watcher:
        gunicorn = start_server("gunicorn", deployment.env)
        workers = [start_worker(deployment.env | {"TASKDECK_REFRESHER": "false"}) for _ in "ab"]
        gunicorn.wake_workers()
        gunicorn_pids = gunicorn.worker_pids()
        for worker in workers:
            wait_for(lambda: "started" in worker.output(), timeout=30, what="a worker started")  # noqa: B023

        # Tasks start once every process runs: about 15 s of work, on the wall clock.
        nclue = add_tasks(upstreams, "nclue", 8, rng, queued_seconds=(3, 7), running_seconds=(3, 7))
        mixpeek = add_tasks(
            upstreams,
            "mixpeek",
            30,
            rng,
            ("succeeded", "failed", "cancelled"),
            queued_seconds=(2, 6),
            running_seconds=(2, 6),
        )
        tasks = {("nc", t.task_id): t for t in nclue} | {("mx", t.task_id): t for t in mixpeek}
        for source, task_id in tasks:
            deployment.track(source, task_id)

        def busy() -> bool:
            return upstreams.recorder.count("nclue") >= 3

        wait_for(busy, timeout=20, what="NCLUE polled a few times")
        # The commands beside them (the old bug: each spent a budget of its own, and a
        # `taskdeck track` beside a server drew a 429): `track` of a new task, then `import`,
        # whose search of another new one goes through the same budget.
        added = add_tasks(upstreams, "nclue", 2, rng, queued_seconds=(4, 4), running_seconds=(4, 4))
        tasks |= {("nc", task.task_id): task for task in added}
        tracked = taskdeck(deployment, "track", "nc", added[0].task_id)
        word = "(registered|pending|in_progress|completed|failed)"
        assert re.fullmatch(rf"tracking nc/{added[0].task_id}: \w+ \({word}\)\n", tracked)
        imported = taskdeck(deployment, "import", "nc")
        assert (
            imported == f"imported from nc: 1 tracked, {len(nclue) + 1} already tracked, 0 failed\n"
        )

        final = {key: task.phases[-1].status for key, task in tasks.items()}

        def converged() -> bool:
            return deployment.statuses() == final

        wait_for(converged, timeout=60, what="every task in its final state", every=0.25)
        stop_all(workers, [gunicorn])

    # Every process ran a refresher (checked above) and both kinds took work. Not necessarily
    # all four: a claim takes every due task, so whichever process passes first takes that
    # round, and one of them may lose every race. (`track` and `import` hold leases too.)
    claimants = watcher.pids()
    assert claimants & gunicorn_pids, claimants
    assert claimants & {w.process.pid for w in workers}, claimants
    # Not one request over NCLUE's budget, and enough of them to have tried it.
    hits = [h for h in upstreams.recorder.hits if h.provider == "nclue"]
    gaps = [(round(b.at - a.at, 3), b.status) for a, b in zip(hits, hits[1:], strict=False)]
    assert upstreams.recorder.answered("nclue", 429) == 0, gaps
    assert upstreams.recorder.count("nclue") >= 8
    for key, spans in upstreams.recorder.fetch_spans().items():
        assert not overlapping(spans), key
    now = upstreams.clock.now()
    rows = deployment.rows()
    assert len(rows) == len(tasks)
    for row in rows:
        history = [status for status, _ in tasks[(row.source, row.task_id)].history(now)]
        seen = [event.upstream_status for event in row.events]
        # Each state change once, in order (a short phase may fall between two polls).
        assert len(seen) == len(set(seen)) and seen[-1] == history[-1], (row.task_id, seen)
        assert [status for status in history if status in seen] == seen, (row.task_id, seen)
        assert row.lease_owner is None and row.lease_until is None


# -- 2. SIGTERM mid-pass --------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["worker", "run", "gunicorn"])
def test_sigterm_in_the_middle_of_a_pass_leaves_no_lease(
    kind, default_database_url, live_upstreams, deploy, start_server, start_worker
):
    upstreams = live_upstreams
    deployment = deploy(
        default_database_url,
        [
            ("opensearch-ml", "ml", {"poll_interval": 0.5}),
            # A GET per task, two at a time: at the signal some jobs run, others wait queued.
            ("mixpeek", "mx", {"poll_interval": 0.5, "max_concurrency": 2}),
        ],
    )
    rng = random.Random(5)
    tasks = {
        ("ml", t.task_id): t
        for t in add_tasks(upstreams, "opensearch-ml", 6, rng, queued_seconds=(100, 200))
    } | {
        ("mx", t.task_id): t
        for t in add_tasks(upstreams, "mixpeek", 8, rng, queued_seconds=(100, 200))
    }
    for provider in ("opensearch-ml", "mixpeek"):
        # Slow answers: a pass is surely under way when the signal comes.
        upstreams.state(provider).set_fault(Fault.SLOW, seconds=2.0)
    for source, task_id in tasks:
        deployment.track(source, task_id)

    if kind == "worker":
        worker = start_worker(deployment.env)
        pids = {worker.process.pid}
    else:
        server = start_server(kind, deployment.env)
        if kind == "gunicorn":
            server.wake_workers()
            pids = server.worker_pids()
        else:
            pids = {server.process.pid}

    def mid_pass() -> set[tuple[str, str]]:
        owners = {int(owner.split(":")[1]) for owner in deployment.lease_owners()}
        return upstreams.recorder.in_flight() if owners == pids else set()

    in_flight = wait_for(mid_pass, timeout=30, what="leases held and requests in flight")
    if kind == "worker":
        worker.process.send_signal(signal.SIGTERM)
        assert worker.process.wait(timeout=15) == 0, worker.output()
        output = worker.output()
    else:
        assert server.terminate(timeout=15) == 0, server.output()
        output = server.output()
    assert deployment.leased() == []
    rows = deployment.rows()
    # The fetches under way at the signal were finished and written...
    sources = {"opensearch-ml": "ml", "mixpeek": "mx"}
    fetched = {(row.source, row.task_id) for row in rows if row.last_fetched_at is not None}
    assert {(sources[provider], task_id) for provider, task_id in in_flight} <= fetched
    # ...and nothing was dropped: every task is still scheduled.
    assert all(row.next_poll_at is not None for row in rows)
    # Each refresher said it stopped (under gunicorn: worker_exit in each worker).
    stopped = {int(pid) for pid in re.findall(r"refresher [^\s:]+:(\d+):[0-9a-f]+ stopped", output)}
    assert stopped == pids, output[-3000:]


# -- 3. /metrics across workers ---------------------------------------------------------------


def total(
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(
        value for (sample, keys), value in found.items() if sample == name and wanted <= set(keys)
    )


def test_metrics_add_up_across_gunicorn_workers(
    default_database_url, live_upstreams, deploy, start_server
):
    upstreams = live_upstreams
    # Which worker fetches is up to their claims (Mixpeek reads a batch a call, so one worker
    # may take them all); both answer /healthz (wake_workers), and its count adds up below.
    source = ("mixpeek", "mx", {"poll_interval": 0.5, "max_concurrency": 1})
    deployment = deploy(default_database_url, [source])
    # Answers take a moment, so each worker's leases are seen while it fetches.
    upstreams.state("mixpeek").set_fault(Fault.SLOW, seconds=0.1)
    with LeaseWatcher(deployment) as watcher:
        gunicorn = start_server("gunicorn", deployment.env)
        gunicorn.wake_workers()
        pids = gunicorn.worker_pids()
        scrapes = 0

        def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            nonlocal scrapes
            response = gunicorn.get("/metrics")
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/plain")
            scrapes += 1
            return samples(response.text)

        before = scrape()
        assert total(before, "taskdeck_upstream_requests_total") == 0
        tasks = add_tasks(upstreams, "mixpeek", 8, random.Random(3), queued_seconds=(0.5, 1.5),
                          running_seconds=(999, 999))  # fmt: skip
        deployment.track("mx", *(task.task_id for task in tasks))

        def fetched() -> bool:
            running = deployment.counts() == {("mx", "running"): len(tasks)}
            return running and bool(watcher.pids() & pids)

        wait_for(fetched, timeout=30, what="the workers fetching, every task running")

        def healthz_logged() -> int:
            return gunicorn.stdout.read_text().count('"GET /healthz HTTP/1.1" 200')

        def consistent() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
            # Every request the simulator saw, counted by the worker that sent it: read the
            # simulator's count before and after the scrape, so none was on its way.
            seen = upstreams.recorder.count("mixpeek")
            found = scrape()
            if upstreams.recorder.count("mixpeek") != seen:
                return None
            upstream = total(found, "taskdeck_upstream_requests_total", source="mx")
            healthz = total(found, "taskdeck_http_requests_total", endpoint="health.healthz")
            return found if upstream == seen and healthz == healthz_logged() else None

        after = wait_for(consistent, timeout=20, what="the workers' counters adding up", every=0.1)

    # Both workers answered /healthz: the sums above are over both.
    assert len(pids) == 2 and pids <= gunicorn.refreshers()
    ok = total(after, "taskdeck_upstream_requests_total", source="mx", outcome="2xx")
    assert ok == total(after, "taskdeck_upstream_request_seconds_count", source="mx") > 0
    assert total(after, "taskdeck_http_requests_total", endpoint="metrics.metrics") == scrapes - 1
    assert total(after, "taskdeck_http_request_seconds_count", endpoint="health.healthz") > 0
    tasks_by_state = {
        (dict(keys)["source"], dict(keys)["state"]): value
        for (name, keys), value in after.items()
        if name == "taskdeck_tasks"
    }
    assert tasks_by_state == deployment.counts() == {("mx", "running"): len(tasks)}
    assert gunicorn.terminate() == 0


# -- 4. request ids ---------------------------------------------------------------------------


def test_request_ids_in_responses_and_in_both_logs(
    default_database_url, live_upstreams, deploy, start_server
):
    upstreams = live_upstreams
    deployment = deploy(
        default_database_url,
        [("nclue", "nc", {})],
        TASKDECK_LOG_FORMAT="json",
        TASKDECK_REFRESHER="false",
    )
    # A listed task NCLUE's provider cannot key: it logs a warning while the import preview
    # (a request) reads the list, in a thread of its own.
    upstreams.state("nclue").add_fixed(
        "keyless", {"status": "completed", "task_name": "x"}, "status"
    )
    gunicorn = start_server("gunicorn", deployment.env)

    echoed = gunicorn.get("/healthz", headers={"X-Request-ID": "probe-healthz-7"})
    assert echoed.headers["X-Request-ID"] == "probe-healthz-7"
    made = gunicorn.get("/healthz").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    with httpx.Client(base_url=gunicorn.url, timeout=30) as client:
        page = client.get("/tasks/import")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token, page.text[:500]
        preview = client.post(
            "/tasks/import/preview",
            data={"source": "nc", "query": "", "csrf_token": token.group(1)},
            headers={"X-Request-ID": "probe-preview-7"},
        )
    assert preview.status_code == 200
    assert preview.headers["X-Request-ID"] == "probe-preview-7"
    assert gunicorn.terminate() == 0

    access = gunicorn.stdout.read_text()
    for request_id in ("probe-healthz-7", made, "probe-preview-7"):
        assert re.search(rf'" 200 .* rid={request_id}$', access, re.MULTILINE), access
    # gunicorn's own lines keep gunicorn's format; every line of the app's is one JSON object.
    app_lines = [
        json.loads(line)
        for line in gunicorn.stderr.read_text().splitlines()
        if line.startswith("{")
    ]
    assert app_lines and all(
        {"time", "level", "logger", "request_id", "message"} <= set(line) for line in app_lines
    )
    warned = [line for line in app_lines if "without a task_id" in line["message"]]
    assert warned and {line["request_id"] for line in warned} == {"probe-preview-7"}, warned
    logs = access + gunicorn.stderr.read_text()
    for secret in (SECRET_KEY, *NCLUE_SECRETS):
        assert secret not in logs
