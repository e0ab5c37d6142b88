"""Gunicorn settings for Taskdeck: ``gunicorn -c python:webapp.gunicorn_conf 'app:app'``.

Every value can still be overridden on the command line or through ``GUNICORN_CMD_ARGS``.
What this file adds over plain gunicorn:

- ``PROMETHEUS_MULTIPROC_DIR`` for ``/metrics`` across workers (a fresh temporary folder unless
  you set one, removed when the server exits), emptied when the server starts and told when a
  worker dies;
- a clean stop: on SIGTERM (or a worker restart) each worker stops its in-process refresher,
  which finishes running fetches and gives its other leases back, so nothing stays leased;
- an access log line that carries the request id;
- the app's own objects left out of the garbage collector's full passes once a worker has
  loaded it.
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

#: The folder this config made (removed again when the server exits), or ``None``.
_MADE_METRICS_DIR: str | None = None
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _MADE_METRICS_DIR = tempfile.mkdtemp(prefix="taskdeck-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _MADE_METRICS_DIR

bind = os.environ.get("TASKDECK_BIND", "127.0.0.1:8000")
#: Two processes a core, two threads each. A process runs one thread of Python at a time, so
#: requests that share a process take turns on its lock and each costs more CPU than alone
#: (a list page: 17.8 ms of CPU an answer with 2 x 8, 11.4 ms with 4 x 2, README
#: "Performance"); the second thread covers a request waiting on the database.
workers = int(os.environ.get("TASKDECK_WORKERS", str(max(2, 2 * (os.cpu_count() or 1)))))
threads = int(os.environ.get("TASKDECK_THREADS", "2"))
#: Long enough for a refresher to finish its running fetches (the sources' ``timeout``).
graceful_timeout = 20
accesslog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms rid=%({x-request-id}o)s'


def on_starting(server: Any) -> None:
    """Values left by an earlier run would be added to this one's: start empty."""
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)


def post_worker_init(worker: Any) -> None:
    """The app is loaded: what it has made so far (modules, the URL map, SQLAlchemy's
    metadata, compiled templates) lives as long as the worker. Frozen, a full collection need
    not walk it again: otherwise one every few hundred requests takes tens of milliseconds."""
    gc.freeze()


def worker_exit(server: Any, worker: Any) -> None:
    """In the worker, as it exits: stop its refresher so its leases are given back."""
    # Imported here, in the worker: the arbiter itself never loads the app.
    from webapp.refresher.background import stop_background

    app = getattr(worker, "wsgi", None)
    if app is not None and hasattr(app, "extensions"):
        stop_background(app)


def child_exit(server: Any, worker: Any) -> None:
    """In the arbiter: a dead worker's live gauges no longer count."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    """A temporary folder of our own would otherwise be left behind by every start."""
    if _MADE_METRICS_DIR is not None:
        shutil.rmtree(_MADE_METRICS_DIR, ignore_errors=True)
