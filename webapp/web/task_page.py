"""What a task's page renders: shared by its own page (``/tasks/<source>/<id>``) and by the
read-only page a share link opens (``/share/<token>``), which reuse one template."""

from __future__ import annotations

from typing import Any

from flask import current_app

from webapp import actions
from webapp.db import store
from webapp.db.models import Task
from webapp.db.models import utcnow
from webapp.db.store import TaskGlance
from webapp.links import family
from webapp.providers import find_provider_spec
from webapp.sources.registry import registry
from webapp.web.presentation import RAW_DISPLAY_LIMIT
from webapp.web.presentation import TIMELINE_WIDTH
from webapp.web.presentation import split_details
from webapp.web.presentation import timeline_segments

DETAIL_TEMPLATE = "tasks/detail.html"


def detail_context(task: Task) -> dict[str, Any]:
    """Everything the detail page and its fragments render (blocks need the whole context)."""
    known = registry()
    spec = find_provider_spec(task.provider)
    key_fields, other_fields = split_details(task.provider, task.details or {})
    related = store.related_tasks(task)
    return {
        "task": task,
        "source": known.get(task.source),
        "source_health": store.source_health(task.source),
        "provider_label": spec.label if spec else task.provider,
        "times_note": spec.times_note if spec else None,
        "active_note": spec.active_note if spec else None,
        "key_fields": key_fields,
        "other_fields": other_fields,
        "related": related,
        **family_context(task, related),
        "raw_limit": RAW_DISPLAY_LIMIT,
        "poll_seconds": current_app.config["UI_POLL_SECONDS"],
        "upstream_actions": actions.available(task),
        "action_history": actions.history(task),
        "outcome_words": actions.OUTCOME_WORDS,
        **timeline(task),
    }


def family_context(task: Task, related: list[TaskGlance]) -> dict[str, Any]:
    """The task's links and its family's bars (the ``family`` block)."""
    rows = family.link_rows(task)
    bars = family.family_bars(task, rows, related)
    return {
        "task_links": rows,
        "family": bars,
        # This task's bar, whose cells the status poll may send alone.
        "own_bar": next((bar for bar in bars if bar.current), None),
        "family_version": family.family_version(task, rows, related),
        "gantt_width": family.GANTT_WIDTH,
    }


def timeline(task: Task) -> dict[str, Any]:
    """The state changes with the time spent in each (the last one runs until now, if active)."""
    events = store.state_changes(task)
    now = utcnow()
    items: list[dict[str, Any]] = []
    for index, event in enumerate(events):
        ended = events[index + 1].at if index + 1 < len(events) else None
        spent = (
            None if ended is None and task.terminal else ((ended or now) - event.at).total_seconds()
        )
        items.append(
            {"event": event, "seconds": spent, "ongoing": ended is None and not task.terminal}
        )
    segments = timeline_segments([item["seconds"] for item in items])
    for item, segment in zip(items, segments, strict=True):
        item["segment"] = segment
    return {"timeline": items, "timeline_width": TIMELINE_WIDTH}
