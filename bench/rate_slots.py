"""What a request slot costs: one ``DatabaseLimiter`` reservation on SQLite and on PostgreSQL.
Prints figures; not a test.

    .venv/bin/python bench/rate_slots.py                  # SQLite, and a throwaway PostgreSQL
    .venv/bin/python bench/rate_slots.py --count 5000 --postgres-url postgresql+psycopg://...
    .venv/bin/python bench/rate_slots.py --no-postgres

Every request Taskdeck sends to a source with a ``rate_limit`` first takes a slot in the
``rate_slots`` table with one upsert (webapp/db/rate_slots.py), so that the budget holds across
every process on the database. The limiter here has a rate so high that no caller ever waits:
the figures are the statement's own cost, for

- one thread;
- four threads of one process (they take turns on the limiter's lock, as a process's fetch
  threads do);
- two processes of two threads each (they meet in the database: SQLite's write lock,
  PostgreSQL's row lock).

"µs per slot" is the wall time divided by the slots taken (what the callers together achieve);
p50/p95 are the time one ``reserve()`` call took, queueing included. SQLite runs on a
temporary file with the app's settings (WAL, busy timeout); PostgreSQL on a server of its own
that the benchmark starts (Debian's postgresql, as the tests do), or on ``--postgres-url``.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.postgres import throwaway_server  # noqa: E402
from webapp import create_app  # noqa: E402
from webapp.db.models import db  # noqa: E402
from webapp.db.rate_slots import DatabaseLimiter  # noqa: E402
from webapp.db.setup import upgrade_database  # noqa: E402

#: So high that the next slot is always now: nobody sleeps, only the statement is timed.
RATE = 1e9
WARM_UP = 50


def make_app(database_url: str) -> Flask:
    return create_app(
        {"SECRET_KEY": "bench", "DATABASE_URL": database_url, "SOURCES": [], "REFRESHER": False}
    )


def engine_of(app: Flask) -> sa.Engine:
    with app.app_context():
        return db.engine


def take_slots(
    database_url: str, threads: int, count: int, barrier: Barrier | None = None
) -> tuple[float, list[float]]:
    """``count`` reservations spread over ``threads`` threads sharing one limiter (one source,
    one process); the wall time and each call's duration, in seconds."""
    engine = engine_of(make_app(database_url))
    limiter = DatabaseLimiter(lambda: engine, "bench", RATE)
    for _ in range(WARM_UP):
        limiter.reserve()
    if barrier is not None:
        barrier.wait()
    each = count // threads
    durations: list[list[float]] = [[] for _ in range(threads)]

    def caller(index: int) -> None:
        mine = durations[index]
        for _ in range(each):
            started = time.perf_counter()
            limiter.reserve()
            mine.append(time.perf_counter() - started)

    workers = [threading.Thread(target=caller, args=(i,)) for i in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    wall = time.perf_counter() - started
    engine.dispose()
    return wall, [d for per_thread in durations for d in per_thread]


def _child(database_url: str, threads: int, count: int, barrier: Barrier, results: Any) -> None:
    logging.disable(logging.INFO)
    results.put(take_slots(database_url, threads, count, barrier))


def across_processes(
    database_url: str, processes: int, threads: int, count: int
) -> tuple[float, list[float]]:
    """``count`` reservations per process, in ``processes`` processes started together."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    results = context.Queue()
    children = [
        context.Process(target=_child, args=(database_url, threads, count, barrier, results))
        for _ in range(processes)
    ]
    for child in children:
        child.start()
    measured = [results.get(timeout=300) for _ in children]
    for child in children:
        child.join(timeout=60)
    # They started together at the barrier: the slowest one's wall time covers them all.
    return max(wall for wall, _ in measured), [d for _, durations in measured for d in durations]


def line(label: str, wall: float, durations: list[float]) -> str:
    per_slot = wall / len(durations) * 1e6
    ordered = sorted(durations)
    p50 = statistics.median(ordered) * 1e6
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))] * 1e6
    return (
        f"  {label:<28} {per_slot:8.0f} µs per slot   "
        f"call p50 {p50:7.0f} µs  p95 {p95:7.0f} µs   ({len(durations)} slots)"
    )


def measure(name: str, database_url: str, count: int) -> None:
    upgrade_database(make_app(database_url))
    engine = engine_of(make_app(database_url))
    with engine.connect() as connection:
        version = connection.execute(
            sa.text(
                "SELECT sqlite_version()"
                if engine.dialect.name == "sqlite"
                else "SHOW server_version"
            )
        ).scalar()
    engine.dispose()
    print(f"{name} {version}")
    print(line("1 thread", *take_slots(database_url, 1, count)))
    print(line("4 threads, 1 process", *take_slots(database_url, 4, count)))
    print(line("2 processes x 2 threads", *across_processes(database_url, 2, 2, count // 2)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="slots per figure")
    parser.add_argument(
        "--postgres-url", help="an empty PostgreSQL database to measure on (it gets the schema)"
    )
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    args = parser.parse_args(argv)
    logging.disable(logging.INFO)
    print(
        f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{args.count} slots per figure, a rate so high that nobody waits"
    )
    with tempfile.TemporaryDirectory(prefix="taskdeck-bench-") as directory:
        os.environ["TASKDECK_INSTANCE_PATH"] = directory
        measure("SQLite", f"sqlite:///{Path(directory) / 'bench.sqlite'}", args.count)
        if args.no_postgres:
            return
        with ExitStack() as stack:
            url = args.postgres_url or stack.enter_context(throwaway_server())
            measure("PostgreSQL", url, args.count)


if __name__ == "__main__":
    main()
