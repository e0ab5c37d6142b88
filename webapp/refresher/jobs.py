"""A job: one chunk of a lane's claimed tasks, fetched on the lane's thread, counted in real
upstream calls, and handed to the writer as an :class:`Outcome`; and what passes report."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from dataclasses import field

import httpx

from webapp.domain import FetchError
from webapp.domain import FetchErrorKind
from webapp.domain import NormalizedTask
from webapp.providers.base import Provider
from webapp.refresher.lanes import SourceLane

log = logging.getLogger(__name__)

#: ``(tasks.id, upstream task id)`` of each task in a job.
Chunk = list[tuple[int, str]]
Results = dict[str, NormalizedTask | FetchError]


@dataclass
class PassReport:
    """What one refresher pass did (``taskdeck refresh --once`` prints it)."""

    claimed: int = 0
    fetched: int = 0
    changed: int = 0
    failed: int = 0
    #: Claimed, then given back unfetched because the source was paused meanwhile.
    deferred: int = 0
    skipped_sources: list[str] = field(default_factory=list)
    #: Real HTTP requests sent (token exchanges included), counted as httpx sends them.
    upstream_calls: int = 0

    def merge(self, other: PassReport) -> None:
        self.claimed += other.claimed
        self.fetched += other.fetched
        self.changed += other.changed
        self.failed += other.failed
        self.deferred += other.deferred
        self.upstream_calls += other.upstream_calls
        for name in other.skipped_sources:
            if name not in self.skipped_sources:
                self.skipped_sources.append(name)


@dataclass
class Outcome:
    """One job's fetch results on their way to the writer."""

    lane: SourceLane
    chunk: Chunk
    results: Results
    calls: int
    probe: bool
    #: Resolved with the job's report once written.
    written: Future[PassReport]
    ok: int = 0
    failures: list[FetchError] = field(default_factory=list)


# -- counting real upstream calls ------------------------------------------------------------

_calls = threading.local()
_instrument_lock = threading.Lock()


def _count_request(request: httpx.Request) -> None:
    # httpx runs request hooks on the sending thread and a job runs on one thread, so this
    # counts exactly the job's requests, auth round trips included.
    _calls.count = getattr(_calls, "count", 0) + 1


def _instrument(provider: Provider) -> None:
    with _instrument_lock:
        hooks = provider.client.event_hooks["request"]
        if _count_request not in hooks:
            hooks.append(_count_request)


def fetch_chunk(provider: Provider, task_ids: list[str]) -> tuple[Results, int]:
    """Fetch ``task_ids`` (one GET, or the provider's batch) on this thread: the results by
    task id, and how many real requests that took."""
    _instrument(provider)
    _calls.count = 0
    results: Results
    try:
        if len(task_ids) == 1:
            try:
                results = {task_ids[0]: provider.fetch(task_ids[0])}
            except FetchError as exc:
                results = {task_ids[0]: exc}
        else:
            results = provider.fetch_many(task_ids)
        provider.add_extras(results)
    except Exception as exc:  # noqa: BLE001 - a provider bug is a fetch error, not a crash
        log.exception("source %s: provider failed", provider.source.name)
        error = FetchError(FetchErrorKind.BAD_PAYLOAD, f"provider error: {type(exc).__name__}")
        results = {task_id: error for task_id in task_ids}
    return results, _calls.count
