"""Load-or-404 helpers the views share."""

from __future__ import annotations

from flask import abort

from webapp.db import store
from webapp.db.models import Task
from webapp.sources.registry import registry


def get_task_or_404(source: str, task_id: str) -> Task:
    """The tracked task, or a 404 that says whether the source or the task is unknown."""
    task = store.get_task(source, task_id)
    if task is not None:
        # Shown even when its source has left the configuration: what was stored stays readable.
        return task
    if source not in registry():
        abort(404, description=f"There is no source called “{source}”.")
    abort(404, description=f"Task “{task_id}” of {source} is not tracked.")
