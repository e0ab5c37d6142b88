"""The configuration's follows (``follow``, ``follow_interval``, ``follow_backfill``) stored as
:class:`~webapp.db.models.Follow` rows, at start-up beside the sources themselves.

The file wins: its follow replaces one added in the UI for the same source, keeping only
whether it is paused. A follow the file no longer declares is removed; those added in the UI
are the UI's to manage (``webapp/follows/manage.py``).
"""

from __future__ import annotations

import sqlalchemy as sa
from flask import Flask

from webapp.config import SourceConfig
from webapp.db.models import Follow
from webapp.db.models import db

#: Follow origins that the configuration owns.
CONFIGURED = ("file", "demo")


def sync_follows(app: Flask) -> None:
    """Make the ``follows`` rows match the configured sources' follows (in an app context,
    after the sources are stored)."""
    configured: dict[str, SourceConfig] = {s.name: s for s in app.config["SOURCES"]}
    rows = {row.source: row for row in db.session.scalars(sa.select(Follow))}
    for name, row in rows.items():
        source = configured.get(name)
        declared = source is not None and source.follow is not None
        if row.origin in CONFIGURED and not declared:
            db.session.delete(row)
    for source in configured.values():
        if source.follow is not None:
            apply_configured(rows.get(source.name), source)
    db.session.commit()


def apply_configured(row: Follow | None, source: SourceConfig) -> Follow:
    """``source``'s follow written onto its row (made if missing); a new query starts over."""
    if row is None:
        row = Follow(source=source.name, paused=False)
        db.session.add(row)
        row.restart()
    elif row.query != source.follow:
        row.restart()
    row.query = source.follow
    row.interval_seconds = source.follow_interval
    row.backfill_limit = source.follow_backfill
    row.origin = source.origin
    return row
