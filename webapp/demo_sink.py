"""The demo's webhook sink: ``/demo/sink/hook`` takes the demo rule's deliveries and
``/demo/sink/`` shows the latest ones, so the demo shows an alert arriving without set-up.

A WSGI app of its own, mounted beside the dashboard by :mod:`webapp.demo` (like the upstream
simulators): it exists only in the demo, and nothing of the real app's routing knows it.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from datetime import UTC
from datetime import datetime
from typing import Any

from flask import Flask
from flask import render_template
from flask import request

from webapp.factory import ROOT
from webapp.web import headers
from webapp.web.presentation import safe_link

PREFIX = "/demo/sink"
KEPT = 50


class Sink:
    """The messages received, newest first (at most :data:`KEPT`)."""

    def __init__(self) -> None:
        self.messages: deque[dict[str, Any]] = deque(maxlen=KEPT)
        self.lock = threading.Lock()

    def add(self, body: Any) -> None:
        with self.lock:
            self.messages.appendleft({"at": datetime.now(UTC), "body": body})

    def latest(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.messages)


def sink_app(sink: Sink | None = None) -> Flask:
    """The sink as a Flask app (mounted under :data:`PREFIX`)."""
    app = Flask(
        "webapp.demo_sink",
        template_folder=str(ROOT / "templates"),
        static_folder=None,
    )
    app.extensions["sink"] = sink = sink or Sink()
    # Anyone may post here: the page is under the dashboard's CSP, and a posted URL becomes a
    # link only when it is http(s), as on the dashboard's own pages.
    headers.init_app(app)
    app.add_template_filter(safe_link, "safe_link")

    @app.post("/hook")
    def receive() -> tuple[str, int]:
        body = request.get_json(silent=True)
        sink.add(body if body is not None else request.get_data(as_text=True)[:2000])
        return "ok", 200

    @app.get("/")
    def show() -> str:
        messages = [
            {"at": m["at"], "body": m["body"], "text": json.dumps(m["body"], indent=2)}
            for m in sink.latest()
        ]
        return render_template("demo/sink.html", messages=messages)

    return app
