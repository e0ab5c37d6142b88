"""Our small htmx helpers: request flags, the 286 stop-polling answer, the script tag.

htmx itself is installed from npm (``package.json`` pins it) and copied by set-up into
``static/vendor/``; pages load it from there.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from flask import Flask
from flask import request
from flask import url_for
from markupsafe import Markup
from werkzeug.wrappers import Response

#: htmx stops a poll when an answer has this status (htmx 2.x).
STOP_POLLING = 286


@cache
def htmx_version() -> str:
    package = Path(__file__).resolve().parents[2] / "package.json"
    return json.loads(package.read_text())["dependencies"]["htmx.org"]


def vendored_htmx_path() -> str:
    """The path of htmx under ``static/``."""
    return f"vendor/htmx-{htmx_version()}.min.js"


def is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


def is_partial() -> bool:
    """True for htmx requests that want a fragment: boosted navigation and history restores
    want whole pages."""
    return (
        is_htmx()
        and request.headers.get("HX-Boosted") != "true"
        and request.headers.get("HX-History-Restore-Request") != "true"
    )


def add_vary(response: Response) -> Response:
    response.vary.add("HX-Request")
    return response


def htmx_script() -> Markup:
    src = url_for("static", filename=vendored_htmx_path())
    return Markup(f'<script src="{src}" defer></script>')


def init_app(app: Flask) -> None:
    app.add_template_global(htmx_script)
    app.add_template_global(is_htmx)
