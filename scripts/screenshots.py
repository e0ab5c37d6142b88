"""Take the README's screenshots of the demo: the task list and a task's page.

Usage: .venv/bin/python scripts/screenshots.py [--out docs/screenshots]
Runs the demo (simulators + dashboard) on a free loopback port, waits until its tasks are
fetched, and drives Debian's Chromium through Playwright.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playwright.sync_api import sync_playwright  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

from webapp.demo import TaskSpawner  # noqa: E402
from webapp.demo import build_demo  # noqa: E402
from webapp.refresher.background import start_background  # noqa: E402
from webapp.simulators.server import ServerThread  # noqa: E402

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port() -> int:
    server = make_server("127.0.0.1", 0, lambda e, s: [])
    port = server.server_port
    server.server_close()
    return port


def showcase_task_path(app) -> str:  # type: ignore[no-untyped-def]
    """The page of the task with the longest history: it shows the timeline best."""
    import sqlalchemy as sa
    from flask import url_for

    from webapp.db.models import Task
    from webapp.db.models import TaskEvent
    from webapp.db.models import db

    with app.test_request_context():
        statement = (
            sa.select(Task)
            .join(TaskEvent)
            .group_by(Task.id)
            .order_by(sa.func.count(TaskEvent.id).desc(), Task.error.is_(None))
            .limit(1)
        )
        task = db.session.scalars(statement).one()
        return url_for("tasks.detail", source=task.source, task_id=task.task_id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    with tempfile.TemporaryDirectory() as instance:
        app, suite, wsgi = build_demo("127.0.0.1", port, instance_path=instance)
        start_background(app)
        TaskSpawner(app, suite, every=2.0).start()
        with ServerThread(wsgi, port=port) as server:
            time.sleep(25)  # let the demo tasks be fetched and move through a few states
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
                )
                page = browser.new_page(viewport={"width": 1360, "height": 900})
                page.goto(server.url + "/")
                page.screenshot(path=str(out / "list.png"))
                page.goto(server.url + showcase_task_path(app))
                page.screenshot(path=str(out / "detail.png"), full_page=True)
                browser.close()
    print(f"screenshots written to {out}")


if __name__ == "__main__":
    main()
