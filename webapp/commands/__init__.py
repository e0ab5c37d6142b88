"""The app's CLI commands (``flask --app app …`` and ``taskdeck …``), attached by the factory.

``taskdeck demo`` and ``simulate`` build their own app (or none) and live on the group in
:mod:`webapp.cli` instead.
"""

from __future__ import annotations

from flask import Flask

from webapp.commands.db import db_group
from webapp.commands.db import init_db_command
from webapp.commands.serving import refresh_command
from webapp.commands.serving import run_command
from webapp.commands.serving import worker_command
from webapp.commands.tasks import import_command
from webapp.commands.tasks import sources_command
from webapp.commands.tasks import track_command
from webapp.commands.tokens import token_group
from webapp.commands.users import create_user_command
from webapp.commands.users import users_command

APP_COMMANDS = (
    run_command,
    track_command,
    import_command,
    refresh_command,
    worker_command,
    sources_command,
    create_user_command,
    users_command,
    init_db_command,
    db_group,
    token_group,
)


def init_app(app: Flask) -> None:
    for command in APP_COMMANDS:
        app.cli.add_command(command)
