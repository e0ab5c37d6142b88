"""The refresher inside the web process (``taskdeck run``, the demo, gunicorn workers)."""

from __future__ import annotations

import threading

from flask import Flask

from webapp.refresher.engine import Refresher

EXTENSION_KEY = "taskdeck.refresher"


class BackgroundRefresher:
    """The refresher on a daemon thread of the web process."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.stop_event = threading.Event()
        self.refresher = Refresher(app)
        self.thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self.thread is not None:
                return
            self.thread = threading.Thread(
                target=self.refresher.run_forever,
                args=(self.stop_event,),
                name="refresher",
                daemon=True,
            )
            self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.refresher.wake()
        if self.thread is not None:
            self.thread.join(timeout=10)


def init_app(app: Flask) -> None:
    background = BackgroundRefresher(app)
    app.extensions[EXTENSION_KEY] = background

    @app.before_request
    def _start_refresher() -> None:
        # Under gunicorn nothing else starts it: the first request does (idempotent). Read at
        # request time, so `taskdeck run --no-refresher` can still turn it off.
        if app.config["REFRESHER"]:
            background.start()


def start_background(app: Flask) -> BackgroundRefresher:
    background: BackgroundRefresher = app.extensions[EXTENSION_KEY]
    background.start()
    return background


def wake_background(app: Flask) -> None:
    """Start the in-process refresher's next pass now, where it runs here (a separate
    ``taskdeck worker`` finds due tasks on its own next pass)."""
    background: BackgroundRefresher | None = app.extensions.get(EXTENSION_KEY)
    if background is not None and background.thread is not None:
        background.refresher.wake()


def stop_background(app: Flask) -> None:
    """Stop the in-process refresher, if it runs: running fetches finish and are written, the
    rest of its leases are given back (a clean stop leaves nothing leased)."""
    background: BackgroundRefresher | None = app.extensions.get(EXTENSION_KEY)
    if background is not None:
        background.stop()
