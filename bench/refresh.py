"""Refresher benchmark: prints figures; talks only to 127.0.0.1.

1. Throughput on every provider: N active tasks all due at once, simulators answering every
   request after a set latency; tasks refreshed per second next to the source's bound, the
   lower of what concurrency and latency allow (requests in flight x tasks a request / latency)
   and what its rate budget allows (requests a second x tasks a request: NCLUE's 1 request/s).
2. A typical lifecycle on all four upstreams: tasks start upstream over a while and are
   tracked as they start, then go queued -> running -> finished. Upstream calls per task,
   next to a fixed-interval poller with the same detection delay, and the delay from an
   upstream state change to the cache (p50/p95), all while the upstreams are healthy.

The simulators run in a child process (bench/upstreams.py) on the wall clock, so the refresher, the
database and the simulators do not share one interpreter. ``--quick`` runs smaller sizes.

    .venv/bin/python bench/refresh.py [--quick] [--latency 0.05] [--interval 5]
        [--part 1|2] [--provider NAME ...]
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask

# This checkout's code, not whichever one the virtualenv's editable install points at.
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.upstreams import Simulators  # noqa: E402
from bench.upstreams import simulators  # noqa: E402
from webapp.refresher.engine import Refresher  # noqa: E402

PROVIDERS = ("opensearch-ml", "mixpeek", "conductor", "nclue")


# -- the app ------------------------------------------------------------------------------------


def make_app(sims: Simulators, workdir: Path, **source_fields: Any) -> Flask:
    from webapp import create_app
    from webapp.config import build_source
    from webapp.db.setup import upgrade_database
    from webapp.simulators import SIMULATORS
    from webapp.simulators import SimulatorSuite

    database = workdir / f"bench-{time.monotonic_ns()}.sqlite"
    sources = []
    for provider in PROVIDERS:
        entry, environ = SIMULATORS[provider].demo_source(
            provider, SimulatorSuite.base_url(sims.url, provider)
        )
        fields = dict(source_fields.get(provider, {}))
        sources.append(build_source({**entry, **fields}, environ))
    app = create_app(
        {
            "SECRET_KEY": "bench",
            "DATABASE_URL": f"sqlite:///{database}",
            "SOURCES": sources,
            "REFRESHER": False,
        }
    )
    upgrade_database(app)
    logging.getLogger("webapp").setLevel(logging.WARNING)
    return app


def track_all(app: Flask, tasks: list[dict[str, Any]]) -> None:
    from webapp.db import store
    from webapp.db.models import db

    with app.app_context():
        for spec in tasks:
            store.track(spec["provider"], spec["task_id"])
        db.session.commit()


@contextmanager
def refresher_running(app: Flask) -> Iterator[Refresher]:
    refresher = Refresher(app)
    stop = threading.Event()
    thread = threading.Thread(target=refresher.run_forever, args=(stop,), daemon=True)
    thread.start()
    try:
        yield refresher
    finally:
        stop.set()
        refresher.wake()
        thread.join(timeout=60)


def scalar(app: Flask, statement: sa.Select[Any]) -> Any:
    from webapp.db.models import db

    with app.app_context():
        return db.session.scalar(statement)


# -- 1. throughput -----------------------------------------------------------------------------


@contextmanager
def batches_of(provider: str, size: int | None) -> Iterator[int]:
    """The provider's ``batch_size`` (``size`` instead, while inside: 1 is a GET per task, as a
    source gets once the refresher stops batching it)."""
    from webapp.providers import PROVIDERS as CLASSES

    cls = CLASSES[provider]
    saved = cls.batch_size
    if size is not None:
        cls.batch_size = size
    try:
        yield cls.batch_size
    finally:
        cls.batch_size = saved


def throughput(
    count: int,
    provider: str,
    concurrency: int,
    latency: float,
    workdir: Path,
    batch_size: int | None = None,
) -> dict[str, Any]:
    """Tasks refreshed per second when ``count`` tasks of one source are due at once: the
    first sweep (every task new) and the second (steady state), the bound and what sets it."""
    with batches_of(provider, batch_size) as batch:
        return _throughput(count, provider, concurrency, latency, workdir, batch)


def bound_of(app: Flask, provider: str, batch: int, latency: float) -> tuple[float, int, str]:
    """The source's bound in tasks/s, its requests in flight, and what sets the bound: requests
    in flight x tasks a request / latency, or its rate budget x tasks a request if lower."""
    from webapp.providers import PROVIDERS as PROVIDER_CLASSES
    from webapp.refresher.lanes import SourceLane
    from webapp.sources.registry import registry

    with app.app_context():
        source = registry(app).get(provider)
    assert source is not None
    lane = SourceLane(source, batch)
    lane.shutdown()
    # A job's ids may take several calls (NCLUE walks its list 100 tasks a page).
    per_call = min(batch, PROVIDER_CLASSES[provider].max_page_size) if batch > 1 else 1
    by_latency = lane.concurrency * per_call / latency
    rate = source.effective_rate_limit
    if rate and rate * per_call < by_latency:
        return rate * per_call, lane.concurrency, f"rate {rate:g}/s x {per_call} a call"
    return by_latency, lane.concurrency, f"{lane.concurrency} x {per_call} / {latency * 1000:g} ms"


def _throughput(
    count: int, provider: str, concurrency: int, latency: float, workdir: Path, batch: int
) -> dict[str, Any]:
    from webapp.db.models import Task
    from webapp.db.models import db
    from webapp.db.models import utcnow

    now = time.time()
    tasks = [
        {
            "provider": provider,
            "task_id": f"t{i:05d}",
            "final": "succeeded",
            "queued": 1e9,
            "running": 1.0,
            "start": now,
        }  # fmt: skip
        for i in range(count)
    ]
    with simulators(tasks, latency, workdir) as sims:
        app = make_app(sims, workdir, **{provider: {"max_concurrency": concurrency}})
        bound, in_flight, limit = bound_of(app, provider, batch, latency)
        track_all(app, tasks)
        fetched = sa.select(sa.func.count()).where(Task.last_fetched_at.is_not(None))

        def sweep(since: datetime | None) -> tuple[float, float, float]:
            """Wall seconds, CPU seconds (this process) and the simulators' CPU seconds from
            the moment the refresher runs until every task was fetched; not its stop, which
            waits for a link lookup under way (a Conductor workflow's siblings)."""
            query = fetched if since is None else fetched.where(Task.last_fetched_at > since)
            with refresher_running(app):
                started, cpu, upstream = time.monotonic(), time.process_time(), sims.cpu_seconds()
                while scalar(app, query) < count:
                    time.sleep(0.05)
                return (
                    time.monotonic() - started,
                    time.process_time() - cpu,
                    sims.cpu_seconds() - upstream,
                )

        first, _, _ = sweep(None)
        mark = utcnow()
        with app.app_context():
            db.session.execute(sa.update(Task).values(next_poll_at=utcnow()))
            db.session.commit()
        calls_before = sum(sims.calls(provider).values())
        steady, cpu, upstream_cpu = sweep(mark)
        calls = sum(sims.calls(provider).values()) - calls_before
    return {
        "first": count / first,
        "steady": count / steady,
        "bound": bound,
        "in_flight": in_flight,
        "limit": limit,
        "calls": calls,
        # CPU milliseconds a task: the refresher's process (one interpreter: at most one core
        # of Python at a time) and the simulators'.
        "cpu_ms": cpu * 1000 / count,
        "upstream_cpu_ms": upstream_cpu * 1000 / count,
        "cores": cpu / steady,
    }


# -- 2. a typical lifecycle --------------------------------------------------------------------


def lifecycle(
    per_provider: int, interval: float, scale: float, latency: float, workdir: Path
) -> dict[str, Any]:
    """Tasks start over ``30 * scale`` s and live ``25..80 * scale`` s; all four upstreams."""
    from webapp.db import store
    from webapp.db.models import Task
    from webapp.db.models import db

    rng = random.Random(42)
    begin = time.time() + 3  # leave the child time to start
    tasks = []
    for provider in PROVIDERS:
        finals = ["succeeded", "succeeded", "succeeded", "failed"]
        for i in range(per_provider):
            tasks.append(
                {
                    "provider": provider,
                    "task_id": f"{provider[:2]}-{i:04d}",
                    "final": rng.choice(finals),
                    "queued": rng.uniform(5, 20) * scale,
                    "running": rng.uniform(20, 60) * scale,
                    "start": begin + rng.uniform(0, 30 * scale),
                }
            )
    tasks.sort(key=lambda t: t["start"])
    fields = {p: {"poll_interval": interval} for p in PROVIDERS}
    with simulators(tasks, latency, workdir) as sims:
        app = make_app(sims, workdir, **fields)
        with refresher_running(app):
            # Each task is tracked the moment it starts upstream, as a CI job would.
            for spec in tasks:
                time.sleep(max(0.0, spec["start"] - time.time()))
                with app.app_context():
                    store.track(spec["provider"], spec["task_id"])
                    db.session.commit()
            deadline = time.time() + 200 * scale + 60
            polling = sa.select(sa.func.count()).where(
                sa.or_(Task.next_poll_at.is_not(None), Task.terminal.is_(False))
            )
            while scalar(app, polling) and time.time() < deadline:
                time.sleep(0.5)
        calls = {p: sum(sims.calls(p).values()) for p in PROVIDERS}
        with app.app_context():
            rows = db.session.scalars(sa.select(Task)).all()
            events = {
                (row.source, row.task_id): [
                    (e.at.timestamp(), e.upstream_status) for e in row.events
                ]
                for row in rows
            }
        history = sims.history

    by_provider: dict[str, Any] = {}
    for provider in PROVIDERS + ("all",):
        chosen = [t for t in tasks if provider in ("all", t["provider"])]
        delays, missed, lifetimes = [], 0, []
        for spec in chosen:
            phases = history[spec["task_id"]]
            seen = events.get((spec["provider"], spec["task_id"]), [])
            for status, began in phases[1:]:
                at = next((at for at, word in seen if word == status), None)
                if at is None:
                    missed += 1
                else:
                    delays.append(max(0.0, at - began))
            lifetimes.append(phases[-1][1] - spec["start"])
        p95 = statistics.quantiles(delays, n=20)[-1]
        used = sum(calls[p] for p in PROVIDERS if provider in ("all", p))
        # A fixed-interval poller with delays spread evenly over [0, T] reaches this p95 with
        # T = p95 / 0.95; it polls each task until it sees it finish.
        same_delay = p95 / 0.95

        def fixed(period: float, lifetimes: list[float] = lifetimes) -> float:
            return sum(math.ceil(life / period) + 1 for life in lifetimes)

        by_provider[provider] = {
            "tasks": len(chosen),
            "calls_per_task": used / len(chosen),
            "fixed_same_delay": fixed(same_delay) / len(chosen),
            "fixed_interval": fixed(interval) / len(chosen),
            "p50": statistics.median(delays),
            "p95": p95,
            "changes": len(delays),
            "missed": missed,
        }
    return by_provider


# -- main --------------------------------------------------------------------------------------


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


#: (label, provider, max_concurrency, tasks, batch_size or None for the provider's own,
#: latency or None for --latency).
Run = tuple[str, str, int, int, int | None, float | None]


def part_one(runs: list[Run], latency: float, workdir: Path) -> None:
    print("\n1. throughput: tasks refreshed per second, all due at once (steady: second sweep)")
    print(
        f"{'source':<26}{'latency':>8}{'in flight':>10}{'tasks':>7}{'steady':>8}{'bound':>7}"
        f"{'share':>7}{'calls':>7}{'cpu ms':>8}{'cores':>6}{'upstr.':>7}{'load':>6}"
        "  bound set by; limit"
    )
    for label, provider, concurrency, count, batch, own_latency in runs:
        wait = own_latency or latency
        figures = throughput(count, provider, concurrency, wait, workdir, batch)
        share = figures["steady"] / figures["bound"]
        # One interpreter runs the refresher's Python: about one core at most.
        ceiling = 1000 / figures["cpu_ms"]
        if share >= 0.8:
            limit = "at its bound"
        elif ceiling < figures["bound"] and figures["cores"] >= 0.6:
            limit = f"CPU: one core does at most {ceiling:.0f}/s"
        else:
            limit = "waiting: for the upstream (upstr.) or for the machine (load)"
        print(
            f"{label:<26}{wait * 1000:>6.0f}ms{figures['in_flight']:>10}{count:>7}"
            f"{figures['steady']:>8.0f}{figures['bound']:>7.0f}{share:>7.0%}{figures['calls']:>7}"
            f"{figures['cpu_ms']:>8.2f}{figures['cores']:>6.2f}{figures['upstream_cpu_ms']:>7.2f}"
            f"{os.getloadavg()[0]:>6.1f}  {figures['limit']}; {limit}",
            flush=True,
        )
    print(
        "cpu ms: the refresher's CPU a task; cores: its CPU time over the sweep's wall time;"
        " upstr.: the simulators' CPU a task; load: the machine's 1-minute load average"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (about a minute)")
    parser.add_argument("--latency", type=float, default=0.05, help="upstream answer latency, s")
    parser.add_argument("--interval", type=float, default=5.0, help="poll_interval, s")
    parser.add_argument("--part", type=int, choices=(1, 2), help="run only this part")
    parser.add_argument(
        "--provider", action="append", choices=PROVIDERS, help="part 1 for this provider only"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    latency = args.latency
    print(f"machine: {machine()}; upstream latency {latency * 1000:.0f} ms")
    batched: list[Run] = [
        ("opensearch-ml (batched)", "opensearch-ml", 4, 1000, None, None),
        ("mixpeek (batched)", "mixpeek", 4, 1000, None, None),
        ("conductor (batched)", "conductor", 4, 1000, None, None),
        ("nclue (list pages)", "nclue", 4, 500, None, None),
    ]
    runs: list[Run] = [
        ("mixpeek, a GET per task", "mixpeek", 8, 1000, 1, None),
        ("mixpeek, a GET per task", "mixpeek", 16, 1000, 1, None),
        *batched,
        # Where the bound is below what one core can write: the refresher's own pipelining.
        *((label, provider, 4, 4000, None, 1.0) for label, provider, *_ in batched[:3]),
    ]
    if not args.quick:
        runs += [
            (f"{label}, 10k", provider, 4, 10_000, None, None)
            for label, provider, *_ in batched[:3]
        ]
    if args.provider:
        runs = [run for run in runs if run[1] in args.provider]
    with tempfile.TemporaryDirectory(prefix="taskdeck-bench-") as tmp:
        workdir = Path(tmp)
        if args.part in (None, 1):
            part_one(runs, latency, workdir)
        if args.part == 1:
            return
        scale = 0.3 if args.quick else 1.0
        per_provider = 100 if args.quick else 200
        interval = args.interval * (0.4 if args.quick else 1.0)
        print(
            f"\n2. lifecycle: {per_provider} tasks per upstream, poll_interval {interval:g} s, "
            f"queued {5 * scale:g}-{20 * scale:g} s, running {20 * scale:g}-{60 * scale:g} s"
        )
        result = lifecycle(per_provider, interval, scale, latency, workdir)
        print(
            f"{'upstream':<15}{'calls/task':>11}{'fixed, same p95':>17}{'ratio':>7}"
            f"{'fixed @interval':>17}{'ratio':>7}{'delay p50':>11}{'p95':>7}"
            f"{'changes':>9}{'missed':>8}"
        )
        for provider, row in result.items():
            print(
                f"{provider:<15}{row['calls_per_task']:>11.2f}{row['fixed_same_delay']:>17.2f}"
                f"{row['calls_per_task'] / row['fixed_same_delay']:>7.2f}"
                f"{row['fixed_interval']:>17.2f}"
                f"{row['calls_per_task'] / row['fixed_interval']:>7.2f}"
                f"{row['p50']:>10.2f}s{row['p95']:>6.2f}s{row['changes']:>9}{row['missed']:>8}"
            )
        print(f"target: p95 delay <= poll_interval + 1 s = {interval + 1:g} s")


if __name__ == "__main__":
    main()
