"""Template filters and globals: times, durations, JSON."""

from __future__ import annotations

import json
from datetime import UTC
from datetime import datetime
from typing import Any

from flask import Flask
from flask import g
from flask import request
from markupsafe import Markup
from markupsafe import escape

from webapp.db.models import utcnow
from webapp.db.store import TRACKED_VIA
from webapp.overdue.words import span as humanize_seconds
from webapp.web.presentation import FIELD_LABELS
from webapp.web.presentation import human_bytes
from webapp.web.presentation import safe_link

#: How times are shown; the choice is kept in a cookie so the server renders it.
TIME_MODES = ("utc", "local", "relative")
TIME_MODE_COOKIE = "taskdeck_time"
TIMEZONE_COOKIE = "taskdeck_tz"


def time_mode() -> str:
    mode: str | None = g.get("time_mode")  # asked once per time shown: one lookup in g
    if mode is None:
        mode = request.cookies.get(TIME_MODE_COOKIE, "utc")
        mode = g.time_mode = mode if mode in TIME_MODES else "utc"
    return mode


def user_zone() -> Any:
    """The browser's zone (sent by our JS in a cookie) for "local" mode; UTC otherwise."""
    from zoneinfo import ZoneInfo
    from zoneinfo import ZoneInfoNotFoundError

    name = request.cookies.get(TIMEZONE_COOKIE)
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return UTC


def ago(value: datetime | None, now: datetime | None = None) -> str:
    if value is None:
        return "never"
    delta = ((now or utcnow()) - value).total_seconds()
    if delta < 0:
        return "in " + humanize_seconds(-delta)
    return humanize_seconds(delta) + " ago"


def duration(start: datetime | None, end: datetime | None = None) -> str:
    if start is None:
        return "—"
    return humanize_seconds(((end or utcnow()) - start).total_seconds())


def when(
    value: datetime | None, *, empty: str = "—", relative: bool = False, exact_on_hover: bool = True
) -> Markup:
    """A ``<time>`` element in the user's chosen mode (``relative``: always "… ago", kept
    current by our JS). The exact time is on hover wherever the text does not say it, unless
    ``exact_on_hover`` is false (a list row, where every byte is paid fifty times)."""
    if value is None:
        return Markup(f'<span class="muted">{escape(empty)}</span>')
    # A list page draws 150 of these: stored times come back in UTC already (no conversion),
    # and the text is cut from the ISO form rather than formatted again.
    utc = value if value.tzinfo is UTC else value.astimezone(UTC)
    iso = utc.isoformat(timespec="seconds")[:19] + "Z"
    mode = "relative" if relative else time_mode()
    if mode == "utc":
        return Markup(f'<time datetime="{iso}">{iso[:10]} {iso[11:19]} UTC</time>')
    if mode == "relative":
        live = " data-relative" if relative else ""
        hover = f' title="{iso}"' if exact_on_hover else ""
        return Markup(f'<time datetime="{iso}"{live}{hover}>{escape(ago(value))}</time>')
    local = value.astimezone(user_zone())
    text = local.strftime("%Y-%m-%d %H:%M:%S ") + (local.tzname() or "")
    return Markup(f'<time datetime="{iso}" title="{iso}">{escape(text)}</time>')


def field_label(name: str) -> str:
    """``queueWaitTime`` or ``worker_nodes`` -> ``Queue wait time``, ``Worker nodes``."""
    import re

    if name in FIELD_LABELS:
        return FIELD_LABELS[name]
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name).replace("_", " ").split()
    text = " ".join(w if w.isupper() and len(w) > 1 else w.lower() for w in words)
    return text[:1].upper() + text[1:]


def code_spans(text: str) -> Markup:
    """``text`` escaped, with its `backticked` parts as ``<code>`` (a spec's search help)."""
    parts = text.split("`")
    return Markup("").join(
        Markup("<code>{}</code>").format(part) if index % 2 else escape(part)
        for index, part in enumerate(parts)
    )


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def tracked_via(via: str | None) -> str:
    """How a task came to be tracked, in words (nothing for tasks from before it was kept)."""
    return TRACKED_VIA.get(via or "", "")


def init_app(app: Flask) -> None:
    app.add_template_filter(tracked_via)
    app.add_template_filter(ago)
    app.add_template_filter(duration)
    app.add_template_filter(pretty_json)
    app.add_template_filter(code_spans)
    app.add_template_filter(field_label)
    app.add_template_filter(human_bytes)
    app.add_template_filter(humanize_seconds, "humanize_seconds")
    app.add_template_filter(safe_link)
    app.add_template_global(when)
    app.add_template_filter(when)  # the same, as a plain call for rows drawn fifty at a time
    app.add_template_global(time_mode)
    app.add_template_global(utcnow)
