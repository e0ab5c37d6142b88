"""``taskdeck track``, ``import`` and ``sources``: tracking tasks from the command line."""

from __future__ import annotations

import sys
import time
from typing import Any

import click
import sqlalchemy as sa
from flask import current_app
from flask.cli import with_appcontext

from webapp.access import audit
from webapp.commands.common import fail
from webapp.commands.common import refuse_when_read_only
from webapp.commands.common import require_source
from webapp.commands.common import with_database
from webapp.db import store
from webapp.db.models import Task
from webapp.db.models import db
from webapp.imports.importer import import_tasks
from webapp.refresher.engine import Refresher
from webapp.sources.health import source_overview
from webapp.sources.registry import registry


@click.command("track")
@click.argument("source")
@click.argument("task_ids", nargs=-1, required=True)
@with_appcontext
@refuse_when_read_only
@with_database
def track_command(source: str, task_ids: tuple[str, ...]) -> None:
    """Start tracking tasks of SOURCE, and fetch them once at once."""

    config = require_source(source)
    rows = []
    for task_id in task_ids:
        try:
            task, created = store.track(source, task_id)
        except ValueError as exc:
            fail(f"{task_id!r}: {exc}")
        if created:
            audit.record("task.track", audit.task_target(source, task.task_id))
        rows.append((task, created))
    db.session.commit()
    ids = [task.id for task, _ in rows]
    refresher = Refresher(current_app._get_current_object())  # type: ignore[attr-defined]
    try:
        refresher.run_once(only_task_ids=ids)
    finally:
        refresher.close()
    _await_other_fetches(ids, timeout=2 * config.timeout + 1)
    db.session.expire_all()
    for task, created in rows:
        db.session.refresh(task)
        verb = "tracking" if created else "already tracked"
        if task.fetch_error:
            click.echo(f"{verb} {source}/{task.task_id}: {task.fetch_error}", err=True)
        else:
            click.echo(f"{verb} {source}/{task.task_id}: {task.state} ({task.upstream_status})")


def _await_other_fetches(ids: list[int], timeout: float) -> None:
    """Wait for the first fetch of tasks that a running worker or server claimed before we
    could (they poll what is due, and a new task is due at once), so the command reports what
    the upstream said rather than "unknown". ``timeout`` covers a wait for a slot of the
    source's request budget and the request itself."""
    deadline = time.monotonic() + timeout
    pending = sa.select(sa.func.count(Task.id)).where(
        Task.id.in_(ids), Task.last_fetched_at.is_(None), Task.lease_owner.is_not(None)
    )
    while db.session.scalar(pending) and time.monotonic() < deadline:
        # End the read transaction, so the next look sees what the other process wrote.
        db.session.rollback()
        time.sleep(0.1)
    db.session.rollback()


@click.command("import")
@click.argument("source")
@click.option("--query", "query", default=None, help="The upstream's own search (see README).")
@click.option(
    "--limit", default=1000, show_default=True, type=int, help="Import at most this many."
)
@with_appcontext
@refuse_when_read_only
@with_database
def import_command(source: str, query: str | None, limit: int) -> None:
    """Track the tasks an upstream search of SOURCE returns."""

    config = require_source(source)
    provider = registry(current_app).provider(config.name)
    if not provider.can_search:
        fail(f"{provider.label} has no task search to import from")
    try:
        report = import_tasks(config.name, provider, query, limit, progress=_progress)
    except ValueError as exc:
        fail(str(exc))
    audit.record(
        "task.import",
        config.name,
        query=query,
        limit=limit,
        tracked=report.tracked,
        skipped=report.skipped,
        failed=report.failed,
        commit=True,
    )
    click.echo(
        f"imported from {source}: {report.tracked} tracked, {report.skipped} already tracked, "
        f"{report.failed} failed"
    )
    if report.error:
        fail(f"the import stopped early: {report.error}")


class _CountingProgress:
    """Progress when the upstream does not say how many tasks a search has."""

    def __init__(self) -> None:
        self.count = 0

    def __enter__(self) -> _CountingProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.count and sys.stderr.isatty():
            click.echo("", err=True)

    def update(self, steps: int) -> None:
        self.count += steps
        if sys.stderr.isatty() and self.count % 50 == 0:
            click.echo(f"\rimporting: {self.count} tasks", err=True, nl=False)


def _progress(total: int | None) -> Any:
    if total is None:
        return _CountingProgress()
    return click.progressbar(
        length=total,
        label="importing",
        show_pos=True,
        file=sys.stderr,
        hidden=not sys.stderr.isatty(),
    )


@click.command("sources")
@with_appcontext
@with_database
def sources_command() -> None:
    """List the sources and their health."""

    overview = source_overview()
    if not overview:
        click.echo("no sources configured (set TASKDECK_CONFIG to a sources file)")
        return
    for item in overview:
        config = item["config"]
        health = item["health"]
        last_error = health.last_error if health and health.last_error else "-"
        click.echo(
            f"{config.name:<24} {config.provider:<14} {item['status']:<13} "
            f"active={item['counts']['active']:<6} finished={item['counts']['finished']:<6} "
            f"error_rate={item['error_rate'] * 100:.1f}% last_error={last_error}"
        )
