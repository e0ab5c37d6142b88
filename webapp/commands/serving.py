"""``taskdeck run``, ``refresh`` and ``worker``: serving the dashboard and running the refresher."""

from __future__ import annotations

import signal
import threading
from typing import Any

import click
from flask import Flask
from flask import current_app
from flask.cli import with_appcontext

from webapp.commands.common import fail
from webapp.commands.common import require_source
from webapp.commands.common import serve
from webapp.commands.common import with_database
from webapp.commands.common import with_upgraded_database
from webapp.db import store
from webapp.db.models import db
from webapp.db.models import utcnow
from webapp.refresher.background import start_background
from webapp.refresher.background import stop_background
from webapp.refresher.engine import Refresher


@click.command("run")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--no-refresher", is_flag=True, help="Leave fetching to `taskdeck worker` processes.")
@with_appcontext
@with_upgraded_database
def run_command(host: str, port: int, no_refresher: bool) -> None:
    """Serve the dashboard (the refresher runs in-process unless disabled)."""

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if not no_refresher and app.config["REFRESHER"]:
        start_background(app)
    else:
        app.config["REFRESHER"] = False
    banner = f"Taskdeck on http://{host}:{port}/ (in production: gunicorn, see README)"
    serve(host, port, app, banner, on_stop=lambda: stop_background(app))


@click.command("refresh")
@click.option("--once", is_flag=True, help="One pass over the due tasks, then exit.")
@click.option(
    "--task",
    "task_refs",
    multiple=True,
    metavar="SOURCE/TASK_ID",
    help="Fetch this task now (repeatable).",
)
@with_appcontext
@with_database
def refresh_command(once: bool, task_refs: tuple[str, ...]) -> None:
    """Run the refresher: one pass with --once, forever without."""

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    only: list[int] | None = None
    if task_refs:
        only = []
        for ref in task_refs:
            source, sep, task_id = ref.partition("/")
            if not sep:
                fail(f"--task {ref!r}: write it as SOURCE/TASK_ID")
            require_source(source)
            task = store.get_task(source, task_id)
            if task is None:
                fail(f"--task {ref!r}: not tracked (use `taskdeck track`)")
            task.next_poll_at = utcnow()
            only.append(task.id)
        db.session.commit()
    if not once and not task_refs:
        _run_worker(app)
        return
    refresher = Refresher(app)
    try:
        # A cron-driven `refresh --once` is all some deployments run: their follows run here.
        followed = [] if only else refresher.follows.run_due()
        report = refresher.run_once(only_task_ids=only)
        # A cron-driven `refresh --once` is the only pass some deployments run: judge overdue
        # tasks here too.
        refresher.overdue.run()
        # The alerts this pass wrote (and any left due) go out before the command ends.
        sent = refresher.deliveries.send_all_due()
    finally:
        refresher.close()
    click.echo(
        f"refreshed {report.fetched} tasks: {report.changed} changed state, {report.failed} failed"
        + (
            f"; paused sources: {', '.join(report.skipped_sources)}"
            if report.skipped_sources
            else ""
        )
        + (f"; {sent} alert deliveries attempted" if sent else "")
        + (
            f"; {len(followed)} follows ran: {sum(run.found for run in followed)} new tasks"
            + "".join(
                f"; follow of {run.source} failed: {run.error}" for run in followed if run.error
            )
            if followed
            else ""
        )
    )


@click.command("worker")
@with_appcontext
@with_upgraded_database
def worker_command() -> None:
    """Run the refresher forever (as many worker processes as you like may share a database)."""
    _run_worker(current_app._get_current_object())  # type: ignore[attr-defined]


def _run_worker(app: Flask) -> None:

    stop = threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
        click.echo(f"worker: signal {signum}, finishing the current pass", err=True)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    Refresher(app).run_forever(stop)
