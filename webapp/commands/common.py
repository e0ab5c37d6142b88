"""What the commands share: failing with one line, serving over HTTP, looking up a source."""

from __future__ import annotations

import functools
import signal
from collections.abc import Callable
from typing import Any
from typing import NoReturn
from typing import ParamSpec
from typing import TypeVar

import click
from flask import current_app
from werkzeug.serving import make_server

from webapp.access.settings import is_read_only
from webapp.config import ConfigError
from webapp.config import SourceConfig
from webapp.db.setup import open_database
from webapp.db.setup import upgrade_database
from webapp.sources.registry import registry


def fail(message: str) -> NoReturn:
    raise click.ClickException(message)


class _Stop(Exception):
    """SIGTERM, turned into an exception that ends ``serve_forever`` in the main thread."""


def serve(
    host: str, port: int, wsgi_app: Any, banner: str, on_stop: Callable[[], None] | None = None
) -> None:
    """Serve on ``host:port`` with werkzeug's threaded server, saying ``banner`` once bound.

    Ctrl-C and SIGTERM stop it the same way: the server closes, then ``on_stop`` runs (the
    refresher gives its leases back), and the command exits 0. A busy port ends the command
    with werkzeug's own one-line explanation and exit code 1.
    """
    server = make_server(host, port, wsgi_app, threaded=True)

    def terminate(_signum: int, _frame: Any) -> None:
        raise _Stop

    previous = signal.signal(signal.SIGTERM, terminate)
    click.echo(banner)
    try:
        server.serve_forever()
    except (KeyboardInterrupt, _Stop):
        click.echo("stopping", err=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()
        if on_stop is not None:
            on_stop()
    click.echo("stopped", err=True)


def require_source(name: str) -> SourceConfig:
    """The configured source ``name``, or a one-line error listing the known ones."""
    sources = registry(current_app)
    source = sources.get(name)
    if source is None:
        known = ", ".join(sources.names()) or "none configured"
        raise click.ClickException(f"unknown source {name!r} (sources: {known})")
    return source


Params = ParamSpec("Params")
Result = TypeVar("Result")


def _database_step(
    step: Callable[[Any], object],
) -> Callable[[Callable[Params, Result]], Callable[Params, Result]]:
    def decorator(command: Callable[Params, Result]) -> Callable[Params, Result]:
        @functools.wraps(command)
        def wrapper(*args: Params.args, **kwargs: Params.kwargs) -> Result:
            try:
                step(current_app._get_current_object())  # type: ignore[attr-defined]
            except ConfigError as exc:
                raise click.ClickException(str(exc)) from None
            return command(*args, **kwargs)

        return wrapper

    return decorator


#: For commands that read or write the cache: refuse an unmigrated database with one line.
with_database = _database_step(open_database)
#: For long-running commands (``run``, ``worker``): upgrade the schema first.
with_upgraded_database = _database_step(upgrade_database)


def refuse_when_read_only(command: Callable[Params, Result]) -> Callable[Params, Result]:
    """For commands that change data: under ``TASKDECK_READ_ONLY`` they stop with one line
    instead (the refresher and the schema commands keep working)."""

    @functools.wraps(command)
    def wrapper(*args: Params.args, **kwargs: Params.kwargs) -> Result:
        if is_read_only(current_app._get_current_object()):  # type: ignore[attr-defined]
            # "track", "token create": the command as typed, without the program's own name.
            name = " ".join(click.get_current_context().command_path.split()[1:])
            fail(f"Taskdeck is read-only (TASKDECK_READ_ONLY=true): {name!r} changes nothing")
        return command(*args, **kwargs)

    return wrapper
