"""Serving WSGI apps on loopback from a background thread (simulators, the demo, tests)."""

from __future__ import annotations

import threading
from typing import Any

from werkzeug.serving import BaseWSGIServer
from werkzeug.serving import make_server


class ServerThread:
    """A threaded werkzeug server in a daemon thread: ``start()``, ``url``, ``stop()``.

    ``port=0`` picks a free port; the bound port is in ``port`` once constructed.
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self.server: BaseWSGIServer = make_server(host, port, app, threaded=True)
        # Upstream simulators answer thousands of requests in the soak test: keep the log quiet.
        self.server.log = lambda *args, **kwargs: None  # type: ignore[method-assign]
        self.host = host
        self.port = self.server.server_port
        self._thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"server:{self.port}",
            daemon=True,
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ServerThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
