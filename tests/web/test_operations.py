"""What an operator sees: request ids, JSON logs without secrets, /metrics, favicon, --version."""

from __future__ import annotations

import gc
import io
import json
import logging
import random
import runpy
from pathlib import Path

import webapp
from tests.conftest import track
from tests.helpers import samples
from webapp import logs
from webapp.simulators import SIMULATORS
from webapp.version import __version__


def test_every_response_carries_a_request_id(client):
    made = client.get("/healthz").headers["X-Request-ID"]
    assert len(made) == 32
    assert (
        client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"]
        == "abc-123"
    )
    # A hostile id (a forged log line) is replaced, not echoed.
    replaced = client.get("/healthz", headers={"X-Request-ID": "x level=ERROR <b>"})
    assert replaced.headers["X-Request-ID"] != "x level=ERROR <b>"
    assert client.get("/no/such/page").headers["X-Request-ID"]


def test_log_lines_carry_the_request_id_as_json_and_no_secret(app_factory):
    app = app_factory(LOG_FORMAT="json", SECRET_KEY="s3cret-signing-key")
    handler = next(h for h in logging.getLogger().handlers if h.get_name() == logs.HANDLER_NAME)
    stream = io.StringIO()
    previous = handler.setStream(stream)  # type: ignore[attr-defined]

    @app.get("/_log_something")
    def log_something() -> str:
        logging.getLogger("webapp.test").warning("key is s3cret-signing-key")
        return "ok"

    app.test_client().get("/_log_something", headers={"X-Request-ID": "req-42"})
    handler.setStream(previous)  # type: ignore[attr-defined]
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    line = next(line for line in lines if line["logger"] == "webapp.test")
    assert line["request_id"] == "req-42"
    assert line["level"] == "WARNING"
    assert line["message"] == "key is ***"
    logs.configure("text")


def test_a_bad_log_format_stops_start_up(app_factory):
    import pytest

    from webapp.config import ConfigError

    with pytest.raises(ConfigError, match="TASKDECK_LOG_FORMAT"):
        app_factory(LOG_FORMAT="xml")


def test_metrics_parse_and_move_when_tasks_are_fetched(ml_app, ml_state, driver):
    client = ml_app.test_client()
    before = samples(client.get("/metrics").get_data(as_text=True))
    SIMULATORS["opensearch-ml"].add_demo_task(
        ml_state, random.Random(1), task_id="t-metrics", queued_seconds=0, running_seconds=999
    )
    track(ml_app, "ml-prod", "t-metrics")
    driver.pass_()
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    after = samples(response.get_data(as_text=True))
    assert after[("taskdeck_tasks", (("source", "ml-prod"), ("state", "running")))] == 1
    key = ("taskdeck_upstream_requests_total", (("outcome", "2xx"), ("source", "ml-prod")))
    assert after[key] > before.get(key, 0)
    count = ("taskdeck_upstream_request_seconds_count", (("source", "ml-prod"),))
    assert after[count] > before.get(count, 0)
    http = ("taskdeck_http_requests_total", (("endpoint", "metrics.metrics"), ("status", "200")))
    assert after[http] >= 1
    assert ("taskdeck_http_request_seconds_count", (("endpoint", "metrics.metrics"),)) in after


def test_favicon_and_version(client, runner):
    assert client.get("/favicon.ico").headers["Location"].endswith("/static/favicon.svg")
    with client.get("/static/favicon.svg") as icon:
        assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"
    from webapp.cli import cli

    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_a_secret_that_holds_another_is_redacted_whole():
    redactor = logs.RedactingFilter()
    redactor.add(["s3cret", "s3cret-signing-key", "signing"])
    record = logging.LogRecord("t", logging.INFO, "", 0, "key s3cret-signing-key", None, None)
    redactor.filter(record)
    assert record.getMessage() == "key ***"


def test_a_gunicorn_worker_freezes_what_loading_the_app_made(monkeypatch, tmp_path):
    """Full collections would otherwise walk every module, route and table of the app again."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    settings = runpy.run_path(str(Path(webapp.__file__).parent / "gunicorn_conf.py"))
    gc.unfreeze()
    try:
        settings["post_worker_init"](None)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
