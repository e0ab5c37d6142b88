"""Prometheus metrics (DESIGN.md, Operations).

Counters and histograms live here, at module level, so the provider layer and the web layer
record into the same series. Under gunicorn set ``PROMETHEUS_MULTIPROC_DIR`` (the gunicorn
config in :mod:`webapp.gunicorn_conf` does) before the app is imported: prometheus_client then
keeps each process's values in files there, and ``/metrics`` adds them up. The task counts are
not kept by any process: they are read from the database at scrape time, so every process
answers the same.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client import REGISTRY
from prometheus_client import CollectorRegistry
from prometheus_client import Counter
from prometheus_client import Histogram
from prometheus_client import generate_latest
from prometheus_client import multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

#: Upstream answers come in tens of ms to many seconds; pages in ms.
UPSTREAM_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
HTTP_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

UPSTREAM_REQUESTS = Counter(
    "taskdeck_upstream_requests",
    "Requests to upstreams, by source and outcome (an HTTP status class or a failure kind).",
    ["source", "outcome"],
)
UPSTREAM_SECONDS = Histogram(
    "taskdeck_upstream_request_seconds",
    "Time an upstream took to answer, by source.",
    ["source"],
    buckets=UPSTREAM_BUCKETS,
)
HTTP_REQUESTS = Counter(
    "taskdeck_http_requests",
    "Requests Taskdeck answered, by endpoint and status.",
    ["endpoint", "status"],
)
HTTP_SECONDS = Histogram(
    "taskdeck_http_request_seconds",
    "Time Taskdeck took to answer, by endpoint.",
    ["endpoint"],
    buckets=HTTP_BUCKETS,
)


def ensure_multiprocess_dir() -> None:
    """Make ``PROMETHEUS_MULTIPROC_DIR`` if it is set and missing.

    prometheus_client writes each process's values in files there, and fails every observation
    (so every request and every fetch) while the folder does not exist: an environment shared
    by gunicorn and ``taskdeck worker`` or ``taskdeck run`` may name it before gunicorn made it.
    """
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        os.makedirs(directory, exist_ok=True)


def observe_upstream(source: str, outcome: str, seconds: float | None) -> None:
    """One request to an upstream: ``outcome`` is ``2xx``…``5xx`` or a fetch-error kind."""
    UPSTREAM_REQUESTS.labels(source=source, outcome=outcome).inc()
    if seconds is not None:
        UPSTREAM_SECONDS.labels(source=source).observe(seconds)


def observe_http(endpoint: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(endpoint=endpoint, status=str(status)).inc()
    HTTP_SECONDS.labels(endpoint=endpoint).observe(seconds)


class TaskCountCollector(Collector):
    """``taskdeck_tasks{source,state}``, read from the cache when scraped."""

    def __init__(self, counts: dict[tuple[str, str], int]) -> None:
        self.counts = counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "taskdeck_tasks", "Tracked tasks, by source and state.", labels=["source", "state"]
        )
        for (source, state), count in sorted(self.counts.items()):
            family.add_metric([source, state], count)
        yield family


class _Forward(Collector):
    """This process's own series (when not under gunicorn's multiprocess mode)."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def exposition(task_counts: dict[tuple[str, str], int]) -> tuple[bytes, str]:
    """The text exposition of every series, and its content type."""
    registry = CollectorRegistry(auto_describe=False)
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        multiprocess.MultiProcessCollector(registry, path=directory)
    else:
        registry.register(_Forward())
    registry.register(TaskCountCollector(task_counts))
    return generate_latest(registry), CONTENT_TYPE_LATEST
