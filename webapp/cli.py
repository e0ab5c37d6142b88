"""The ``taskdeck`` command line: a Flask CLI group, so ``flask --app app …`` works too.

The app's own commands are in :mod:`webapp.commands`; ``demo`` and ``simulate`` are here because
they build their own app (or none), so a bad configuration does not stop them.
"""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import FlaskGroup
from flask.cli import routes_command
from flask.cli import shell_command

from webapp.commands.common import serve
from webapp.config import ConfigError
from webapp.demo import populate_simulators
from webapp.demo import run_demo
from webapp.factory import create_app
from webapp.simulators import SIMULATORS
from webapp.simulators import SimulatorSuite
from webapp.version import __version__


def _create_app() -> Flask:
    try:
        return create_app()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@click.command("simulate")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=9200, show_default=True, type=int)
@click.option(
    "--demo-tasks", default=8, show_default=True, type=int, help="Progressing tasks per provider."
)
def simulate_command(host: str, port: int, demo_tasks: int) -> None:
    """Serve the four upstream simulators alone, as a real HTTP server."""

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

    run_demo(host, port)


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
cli = click.version_option(__version__, "--version", prog_name="taskdeck")(cli)
