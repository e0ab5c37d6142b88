"""The ``taskdeck`` command line: a Flask CLI group, so ``flask --app app …`` works too."""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

import click
from flask import Flask
from flask import current_app
from flask.cli import FlaskGroup
from flask.cli import routes_command
from flask.cli import shell_command
from flask.cli import with_appcontext

from webapp.config import ConfigError


def _create_app() -> Flask:
    from webapp import create_app

    try:
        return create_app()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def fail(message: str) -> None:
    raise click.ClickException(message)


def serve(host: str, port: int, wsgi_app: Any, banner: str) -> None:
    """Serve on ``host:port`` with werkzeug's threaded server, saying ``banner`` once bound.

    A busy port ends the command with werkzeug's own one-line explanation and exit code 1.
    """
    from werkzeug.serving import make_server

    server = make_server(host, port, wsgi_app, threaded=True)
    click.echo(banner)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped", err=True)
    finally:
        server.server_close()


def _require_source(name: str) -> Any:
    registry = current_app.extensions["taskdeck.sources"]
    source = registry.get(name)
    if source is None:
        known = ", ".join(registry.names()) or "none configured"
        fail(f"unknown source {name!r} (sources: {known})")
    return source


@click.command("run")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--no-refresher", is_flag=True, help="Leave fetching to `taskdeck worker` processes.")
@with_appcontext
def run_command(host: str, port: int, no_refresher: bool) -> None:
    """Serve the dashboard (the refresher runs in-process unless disabled)."""
    from webapp.refresher import start_background

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if not no_refresher and app.config["REFRESHER"]:
        start_background(app)
    else:
        app.config["REFRESHER"] = False
    serve(host, port, app, f"Taskdeck on http://{host}:{port}/ (in production: gunicorn 'app:app')")


@click.command("track")
@click.argument("source")
@click.argument("task_ids", nargs=-1, required=True)
@with_appcontext
def track_command(source: str, task_ids: tuple[str, ...]) -> None:
    """Start tracking tasks of SOURCE, and fetch them once at once."""
    from webapp import store
    from webapp.models import db
    from webapp.refresher import Refresher

    _require_source(source)
    rows = []
    for task_id in task_ids:
        try:
            task, created = store.track(source, task_id)
        except ValueError as exc:
            fail(f"{task_id!r}: {exc}")
        rows.append((task, created))
    db.session.commit()
    ids = [task.id for task, _ in rows]
    refresher = Refresher(current_app._get_current_object())  # type: ignore[attr-defined]
    try:
        refresher.run_once(only_task_ids=ids)
    finally:
        refresher.close()
    db.session.expire_all()
    for task, created in rows:
        db.session.refresh(task)
        verb = "tracking" if created else "already tracked"
        if task.fetch_error:
            click.echo(f"{verb} {source}/{task.task_id}: {task.fetch_error}", err=True)
        else:
            click.echo(f"{verb} {source}/{task.task_id}: {task.state} ({task.upstream_status})")


@click.command("import")
@click.argument("source")
@click.option("--query", "query", default=None, help="The upstream's own search (see README).")
@click.option(
    "--limit", default=1000, show_default=True, type=int, help="Import at most this many."
)
@with_appcontext
def import_command(source: str, query: str | None, limit: int) -> None:
    """Track the tasks an upstream search of SOURCE returns."""
    from webapp.importer import import_tasks

    config = _require_source(source)
    registry = current_app.extensions["taskdeck.sources"]
    provider = registry.provider(config.name)
    if not provider.can_search:
        fail(f"{provider.label} has no task search to import from")
    try:
        report = import_tasks(config.name, provider, query, limit, progress=_progress)
    except ValueError as exc:
        fail(str(exc))
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
def refresh_command(once: bool, task_refs: tuple[str, ...]) -> None:
    """Run the refresher: one pass with --once, forever without."""
    from webapp import store
    from webapp.models import db
    from webapp.models import utcnow
    from webapp.refresher import Refresher

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    only: list[int] | None = None
    if task_refs:
        only = []
        for ref in task_refs:
            source, sep, task_id = ref.partition("/")
            if not sep:
                fail(f"--task {ref!r}: write it as SOURCE/TASK_ID")
            _require_source(source)
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
        report = refresher.run_once(only_task_ids=only)
    finally:
        refresher.close()
    click.echo(
        f"refreshed {report.fetched} tasks: {report.changed} changed state, {report.failed} failed"
        + (
            f"; paused sources: {', '.join(report.skipped_sources)}"
            if report.skipped_sources
            else ""
        )
    )


@click.command("worker")
@with_appcontext
def worker_command() -> None:
    """Run the refresher forever (as many worker processes as you like may share a database)."""
    _run_worker(current_app._get_current_object())  # type: ignore[attr-defined]


def _run_worker(app: Flask) -> None:
    from webapp.refresher import Refresher

    stop = threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
        click.echo(f"worker: signal {signum}, finishing the current pass", err=True)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    Refresher(app).run_forever(stop)


@click.command("sources")
@with_appcontext
def sources_command() -> None:
    """List the sources and their health."""
    from webapp.views.sources import source_overview

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


@click.command("simulate")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=9200, show_default=True, type=int)
@click.option(
    "--demo-tasks", default=8, show_default=True, type=int, help="Progressing tasks per provider."
)
def simulate_command(host: str, port: int, demo_tasks: int) -> None:
    """Serve the four upstream simulators alone, as a real HTTP server."""
    from webapp.demo import populate_simulators
    from webapp.simulators import SIMULATORS
    from webapp.simulators import SimulatorSuite

    suite = SimulatorSuite()
    suite.load_seeds()
    populate_simulators(suite, per_provider=demo_tasks)
    root = f"http://{host}:{port}"
    click.echo("Upstream simulators (wall clock; control API under <base>/_control):")
    for name, module in SIMULATORS.items():
        entry, environ = module.demo_source(f"sim-{name}", suite.base_url(root, name))
        variables = " ".join(f"{key}={value}" for key, value in environ.items())
        click.echo(f"  {name:<14} {entry['base_url']}  {variables}")
    serve(host, port, suite.wsgi_app(), f"Simulators listening on {root}/")


@click.command("demo")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def demo_command(host: str, port: int) -> None:
    """The simulators and the dashboard on one port, with tasks that progress."""
    from webapp.demo import run_demo

    run_demo(host, port)


APP_COMMANDS = [
    run_command,
    track_command,
    import_command,
    refresh_command,
    worker_command,
    sources_command,
    simulate_command,
    demo_command,
]


def init_app(app: Flask) -> None:
    for command in APP_COMMANDS:
        app.cli.add_command(command)


class TaskdeckGroup(FlaskGroup):
    """Loads the app only for commands that need it, so a bad config does not stop `demo`."""

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in ("demo", "simulate"):
            return {"demo": demo_command, "simulate": simulate_command}[name]
        return super().get_command(ctx, name)


cli = TaskdeckGroup(
    create_app=_create_app,
    add_default_commands=False,
    add_version_option=False,
    help="Taskdeck: one dashboard for asynchronous tasks on other people's platforms.",
)
cli.add_command(shell_command)
cli.add_command(routes_command)
