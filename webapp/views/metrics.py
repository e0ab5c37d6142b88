"""``/metrics``: Prometheus text format (DESIGN.md, Operations). Same access rules as the API."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint
from flask import Response

from webapp.db.models import Task
from webapp.db.models import db
from webapp.metrics import exposition

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    """Every series, with the task counts read from the cache now."""
    rows = db.session.execute(
        sa.select(Task.source, Task.state, sa.func.count(Task.id)).group_by(Task.source, Task.state)
    )
    body, content_type = exposition({(source, state): count for source, state, count in rows})
    return Response(body, mimetype=None, content_type=content_type)
