"""Each source's health as people read it: status word, error rate and task counts."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from webapp.db.models import Source
from webapp.db.models import Task
from webapp.db.models import db
from webapp.sources.registry import registry


def source_overview() -> list[dict[str, Any]]:
    """Each configured source with its health row and task counts (also used by the CLI)."""
    known = registry()
    rows = {row.name: row for row in db.session.scalars(sa.select(Source))}
    counts: dict[str, dict[str, int]] = {}
    statement = sa.select(Task.source, Task.terminal, sa.func.count(Task.id)).group_by(
        Task.source, Task.terminal
    )
    for name, terminal, count in db.session.execute(statement):
        bucket = counts.setdefault(name, {"active": 0, "finished": 0})
        bucket["finished" if terminal else "active"] += count
    overview = []
    for source in known:
        row = rows.get(source.name)
        overview.append(
            {
                "config": source,
                "label": source.spec.label,
                "health": row,
                "status": health_word(row),
                "counts": counts.get(source.name, {"active": 0, "finished": 0}),
                "error_rate": (row.failures_total / row.requests_total)
                if row and row.requests_total
                else 0.0,
            }
        )
    return overview


def health_word(row: Source | None) -> str:
    """``healthy``, ``degraded`` (failing or circuit open), ``unauthorized`` or ``unknown``."""
    if row is None or (row.last_success_at is None and row.last_failure_at is None):
        return "unknown"
    if row.circuit == "unauthorized":
        return "unauthorized"
    if row.circuit == "open" or row.consecutive_failures:
        return "degraded"
    return "healthy"
