"""Task ids in URLs: any string an upstream uses must round-trip, ``/`` and ``%`` included.

WSGI servers decode ``%2F`` to ``/`` before Flask routes a path, which would make the id
``a/status`` look like the status URL of task ``a``. :class:`RawPathMiddleware` rebuilds the
path of task URLs from the raw request URI (``RAW_URI``/``REQUEST_URI``, set by werkzeug and
gunicorn) so that a slash or percent sign that was encoded stays encoded for routing, and
:class:`TaskIdConverter` decodes it for the view.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote
from urllib.parse import unquote
from urllib.parse import urlsplit

from flask import Flask
from flask import g
from flask import url_for
from werkzeug.routing import BaseConverter

#: Paths whose segments may carry encoded slashes.
TASK_PATH_PREFIXES = ("/tasks/", "/api/v1/tasks/")


class TaskIdConverter(BaseConverter):
    """One path segment holding a task id; ``%2F`` and ``%25`` inside it decode to ``/``, ``%``."""

    regex = "[^/]+"
    part_isolating = True

    def to_python(self, value: str) -> str:
        return unquote(value)

    def to_url(self, value: str) -> str:
        return quote(value, safe="")


class RawPathMiddleware:
    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        raw_uri = environ.get("RAW_URI") or environ.get("REQUEST_URI")
        if raw_uri:
            raw_path = raw_uri.split("?", 1)[0]
            if "://" in raw_path:  # absolute-form request target
                raw_path = "/" + raw_path.split("://", 1)[1].partition("/")[2]
            script_name = environ.get("SCRIPT_NAME", "")
            if script_name and raw_path.startswith(script_name):
                raw_path = raw_path[len(script_name) :]
            if raw_path.startswith(TASK_PATH_PREFIXES):
                # Every segment re-encoded the same way, so PATH_INFO is plain ASCII in which
                # only the separators between segments are real slashes.
                segments = [quote(unquote(part), safe="") for part in raw_path.split("/")]
                environ["PATH_INFO"] = "/".join(segments)
        return self.app(environ, start_response)


def local_path(target: str | None) -> str:
    """``target`` when it is a path on this site, else the task list (no open redirects).

    Judged as a browser reads a ``Location``: it drops tabs and newlines and takes ``\\`` for
    ``/`` (the WHATWG URL standard), so ``/\\evil.example`` and ``/<tab>/evil.example`` lead to
    another site just as ``//evil.example`` does.
    """
    if not target:
        return url_for("tasks.index")
    seen = target.translate(_AS_BROWSERS_READ)
    parts = urlsplit(seen)
    if parts.scheme or parts.netloc or not seen.startswith("/") or seen.startswith("//"):
        return url_for("tasks.index")
    return target


#: What a browser does to a URL's characters before reading it: drop tabs and newlines, and
#: read a backslash as a slash.
_AS_BROWSERS_READ = str.maketrans({"\t": None, "\n": None, "\r": None, "\\": "/"})


#: What werkzeug's default converter leaves unquoted in a path segment (the source's).
SOURCE_SAFE = "!$&'()*+,/:;=@"


def task_url(task: Any) -> str:
    """``url_for("tasks.detail", …)`` of a task, built once per request and filled in per task:
    a list page links fifty tasks, and building each from the URL map would cost more than the
    rest of its row."""
    prefix: str | None = g.get("_task_url_prefix")
    if prefix is None:
        sample = url_for("tasks.detail", source="s", task_id="t")
        prefix = g._task_url_prefix = sample.removesuffix("s/t")
    # Quoted as the route's converters do: werkzeug's default one for the source, ours for ids.
    return prefix + quote(task.source, safe=SOURCE_SAFE) + "/" + quote(task.task_id, safe="")


def list_url(value: str, name: str) -> str:
    """``url_for("tasks.index", **{name: value})``, remembered for the rest of the request: the
    same few source and label links repeat on every row of a page."""
    built: dict[tuple[str, str], str] = g.setdefault("_list_urls", {})
    url = built.get((name, value))
    if url is None:
        values: dict[str, Any] = {name: value}
        url = built[(name, value)] = url_for("tasks.index", **values)
    return url


def init_app(app: Flask) -> None:
    app.add_template_filter(task_url)
    app.add_template_filter(list_url)
