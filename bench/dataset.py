"""The benchmarks' cache: a Taskdeck SQLite database of N tasks as a busy team's looks after
months of use (five sources, mostly finished, the newest still running, a few labels and
errors), each with its history of state changes, bulk-loaded in seconds.

Used by :mod:`serving` (gunicorn under load) and :mod:`list_page` (query shapes, in process).
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask

from webapp import create_app
from webapp.config import build_source
from webapp.db.models import db
from webapp.db.setup import upgrade_database
from webapp.listing import schema as list_schema
from webapp.listing import search

#: OpenSearch ML Commons' words by state, for both of its sources.
ML_WORDS = {
    "queued": "CREATED",
    "running": "RUNNING",
    "succeeded": "COMPLETED",
    "failed": "FAILED",
    "cancelled": "CANCELLED",
    "partial": "COMPLETED_WITH_ERROR",
    "expired": "EXPIRED",
}

#: (name, provider, upstream words by state, task types)
SOURCES: list[tuple[str, str, dict[str, str], list[str]]] = [
    (
        "ml-prod",
        "opensearch-ml",
        ML_WORDS,
        ["DEPLOY_MODEL", "REGISTER_MODEL", "TRAINING", "PREDICTION", "BATCH_PREDICTION"],
    ),
    (
        "ml-staging",
        "opensearch-ml",
        ML_WORDS,
        ["DEPLOY_MODEL", "REGISTER_MODEL", "TRAINING"],
    ),
    (
        "mixpeek-prod",
        "mixpeek",
        {
            "queued": "PENDING",
            "running": "IN_PROGRESS",
            "succeeded": "COMPLETED",
            "failed": "FAILED",
            "cancelled": "CANCELED",
            "partial": "COMPLETED",
            "expired": "FAILED",
        },
        ["batch", "clustering", "taxonomy", "ingest"],
    ),
    (
        "orkes",
        "conductor",
        {
            "queued": "SCHEDULED",
            "running": "IN_PROGRESS",
            "succeeded": "COMPLETED",
            "failed": "FAILED",
            "cancelled": "CANCELED",
            "partial": "COMPLETED_WITH_ERRORS",
            "expired": "TIMED_OUT",
        },
        ["HTTP", "SIMPLE", "WAIT", "SUB_WORKFLOW", "JSON_JQ_TRANSFORM", "INLINE"],
    ),
    (
        "nclue-kr",
        "nclue",
        {
            "queued": "waiting",
            "running": "running",
            "succeeded": "completed",
            "failed": "failed",
            "cancelled": "stopped",
            "partial": "completed",
            "expired": "failed",
        },
        ["model_build", "feature_build"],
    ),
]
#: How older tasks ended: mostly well, some problems, a very few stuck as running.
STATE_WEIGHTS = {
    "succeeded": 70,
    "failed": 10,
    "cancelled": 4,
    "partial": 3,
    "expired": 1,
    "running": 0.01,
    "queued": 0.01,
}
#: The newest tasks are the ones still going, as on a real board.
RECENT_ACTIVE = 200
LABELS = ["team-search", "team-ranking", "nightly", "backfill", "urgent", "experiment"]
ERRORS = [
    "CUDA out of memory while loading the model",
    "Connection reset by peer while reading the index",
    "model file checksum mismatch",
    "worker node left the cluster",
    "timed out waiting for an available worker",
]
WORDS = ["embedding", "ranker", "clip", "bert", "reranker", "sparse", "colbert", "e5", "minilm"]
SPAN = timedelta(days=90)
STAMP = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy stores datetimes in SQLite


def source_configs() -> list[Any]:
    environ = {"KEY": "k", "SECRET": "s"}
    configs = []
    for name, provider, _words, _types in SOURCES:
        entry: dict[str, Any] = {
            "name": name,
            "provider": provider,
            "base_url": "http://127.0.0.1:9",
        }
        if provider == "mixpeek":
            entry["api_key_env"] = "KEY"
        if provider == "nclue":
            entry.update(access_key_env="KEY", secret_key_env="SECRET")
        configs.append(build_source(entry, environ))
    return configs


def generate_rows(count: int, now: datetime, seed: int = 42) -> Iterator[tuple[Any, ...]]:
    rng = random.Random(seed)
    states = list(STATE_WEIGHTS)
    weights = list(STATE_WEIGHTS.values())
    start = now - SPAN
    step = SPAN / count
    for index in range(count):
        name, provider, words, types = SOURCES[index % len(SOURCES)]
        if index >= count - RECENT_ACTIVE:
            state = "running" if rng.random() < 0.7 else "queued"
        else:
            state = rng.choices(states, weights)[0]
        terminal = state not in ("running", "queued")
        created = start + step * index + timedelta(seconds=rng.random())
        finished = created + timedelta(seconds=rng.expovariate(1 / 300)) if terminal else None
        task_type = rng.choice(types)
        model = f"{rng.choice(WORDS)}-{rng.randrange(1000)}"
        task_id = f"{rng.getrandbits(64):016x}-{index}"
        error = rng.choice(ERRORS) if state in ("failed", "expired", "partial") else None
        fetch_error = "timeout: upstream did not answer in time" if rng.random() < 0.003 else None
        # People label a few tasks by hand: 2% here (20,000 at 1M), one or two labels each.
        labels = rng.sample(LABELS, rng.choice([1, 2])) if rng.random() < 0.02 else []
        raw = {
            "task_id": task_id,
            "task_type": task_type,
            "state": words[state],
            "model_id": model,
            "worker_node": [f"node-{rng.randrange(64)}"],
            "create_time": int(created.timestamp() * 1000),
            "error": error,
        }
        stamp = created.strftime(STAMP)
        last = (finished or now).strftime(STAMP)
        fetched = (now - timedelta(seconds=rng.randrange(600))).strftime(STAMP)
        yield (
            name,
            provider,
            task_id,
            state,
            words[state],
            terminal,
            task_type,
            f"{task_type.lower()} {model}",
            stamp,
            last,
            finished.strftime(STAMP) if finished else None,
            error,
            json.dumps({"model_id": model}),
            json.dumps({"model": model}),
            json.dumps(raw),
            stamp,
            stamp,
            stamp,
            last,
            fetched,
            fetched,
            fetch_error,
            "timeout" if fetch_error else None,
            False,
            None if terminal else fetched,
            0,
            0,
            None,
            None,
            1,
            last,
            model,
            json.dumps(labels),
            None,
        )


COLUMNS = (
    "source, provider, task_id, state, upstream_status, terminal, task_type, name, created_at, "
    "updated_at, finished_at, error, links, details, raw, sort_at, tracked_at, first_seen_at, "
    "last_changed_at, last_fetched_at, last_success_at, fetch_error, fetch_error_kind, "
    "gone_upstream, next_poll_at, unchanged_polls, failed_polls, lease_owner, lease_until, "
    "version, changed_at, related_key, labels, note"
)


def build_database(path: Path, count: int) -> Flask:
    """A Taskdeck database with ``count`` tasks and their history, and the app serving it."""
    app = create_app(
        {
            "SECRET_KEY": "bench",
            "DATABASE_URL": f"sqlite:///{path}",
            "SOURCES": source_configs(),
            "REFRESHER": False,
            # The pages themselves, not the sign-in page (local sign-in is the default).
            "AUTH": "none",
        }
    )
    upgrade_database(app)
    with sqlite3.connect(path) as connection:
        if connection.execute("SELECT count(*) FROM tasks").fetchone()[0] == count:
            return app  # --keep: already filled
        started = time.perf_counter()
        # Bulk load without the triggers, then build the search index and the counts once
        # (list_schema.install recreates what is missing, as on an upgrade).
        derived = [search.sqlite_schema(), list_schema.counts_schema(), list_schema.labels_schema()]
        tables = (search.FTS_TABLE, list_schema.COUNTS_TABLE, list_schema.LABELS_TABLE)
        for name in [name for schema in derived for name in schema]:
            kind = "TABLE" if name in tables else "TRIGGER"
            connection.execute(f"DROP {kind} IF EXISTS {name}")
        connection.execute("DELETE FROM task_events")
        connection.execute("DELETE FROM tasks")
        marks = ", ".join("?" * len(COLUMNS.split(", ")))
        now = datetime.now(UTC)
        connection.executemany(
            f"INSERT INTO tasks ({COLUMNS}) VALUES ({marks})", generate_rows(count, now)
        )
        add_history(connection)
        connection.commit()
        inserted = time.perf_counter()
    with app.app_context():
        list_schema.install(db.engine)
    with sqlite3.connect(path) as connection:
        connection.execute("ANALYZE")
    print(
        f"  filled {count:,} tasks in {inserted - started:.1f} s, "
        f"indexed in {time.perf_counter() - inserted:.1f} s",
        flush=True,
    )
    return app


def _word(state: str) -> str:
    """SQL for the upstream word of ``state`` on each row's source."""
    cases = " ".join(f"WHEN '{name}' THEN '{words[state]}'" for name, _, words, _ in SOURCES)
    return f"CASE source {cases} END"


def add_history(connection: sqlite3.Connection) -> None:
    """Each task's state changes, as the refresher writes them: queued when first seen, then
    running a few seconds later, then, for finished tasks, the final word (three events for
    most tasks)."""
    connection.execute(
        "INSERT INTO task_events (task_pk, at, state, upstream_status) "
        f"SELECT id, created_at, 'queued', {_word('queued')} FROM tasks"
    )
    connection.execute(
        "INSERT INTO task_events (task_pk, at, state, upstream_status) "
        f"SELECT id, strftime('%Y-%m-%d %H:%M:%f', created_at, '+3 seconds'), 'running', "
        f"{_word('running')} FROM tasks WHERE state != 'queued'"
    )
    connection.execute(
        "INSERT INTO task_events (task_pk, at, state, upstream_status) "
        "SELECT id, finished_at, state, upstream_status FROM tasks WHERE terminal"
    )


def sources_toml(path: Path) -> dict[str, str]:
    """Write the benchmark's sources as a ``taskdeck.toml``; the environment they need."""
    lines = []
    for name, provider, _words, _types in SOURCES:
        lines += ["[[sources]]", f'name = "{name}"', f'provider = "{provider}"']
        lines.append('base_url = "http://127.0.0.1:9"')
        if provider == "mixpeek":
            lines.append('api_key_env = "KEY"')
        if provider == "nclue":
            lines += ['access_key_env = "KEY"', 'secret_key_env = "SECRET"']
        lines.append("")
    path.write_text("\n".join(lines))
    return {"KEY": "k", "SECRET": "s"}
