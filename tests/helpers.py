"""Helpers the tests share (fixtures are in conftest.py): reading pages, CSRF tokens, tracking
tasks, and waiting on a condition with a deadline."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from bs4 import BeautifulSoup
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families


def soup(response: Any) -> BeautifulSoup:
    """A page (a test client's or httpx's response) parsed for CSS selectors."""
    text = response.get_data(as_text=True) if hasattr(response, "get_data") else response.text
    return BeautifulSoup(text, "html.parser")


def list_cell(row: Any, column: str) -> Any:
    """A task-list row's cell under the header ``column`` (cells carry no labels of their own:
    the narrow layout names them from the stylesheet)."""
    headers = [th.get_text(strip=True) for th in row.find_parent("table").select("thead th")]
    position = next(i for i, text in enumerate(headers) if text.startswith(column))
    return row.find_all("td", recursive=False)[position]


def csrf(client: FlaskClient, path: str = "/?view=all") -> str:
    """The session's CSRF token, as every page hands it to htmx (``<body hx-headers>``)."""
    page = soup(client.get(path, follow_redirects=True))
    return str(json.loads(page.body["hx-headers"])["X-CSRF-Token"])


def track(app: Flask, source: str, *task_ids: str) -> None:
    from webapp.db import store
    from webapp.db.models import db

    with app.app_context():
        for task_id in task_ids:
            store.track(source, task_id)
        db.session.commit()


def wait_for(
    condition: Callable[[], Any],
    timeout: float = 10.0,
    what: str = "condition",
    every: float = 0.02,
) -> Any:
    """Poll ``condition`` every ``every`` seconds until it returns something truthy, failing
    after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def fetched_state(app: Flask, source: str, task_id: str) -> str | None:
    """The task's cached upstream word, or ``None`` before its first successful fetch."""
    from webapp.db import store

    with app.app_context():
        task = store.get_task(source, task_id)
        return task.upstream_status if task is not None else None


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition, read by prometheus_client's own parser."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found
