"""Pushing tasks over real HTTP: a live Taskdeck with its refresher and the upstream simulators
on loopback. The README's curl line and Python snippet are run as written, and the refresher,
woken by the push, fetches the pushed task well before its idle tick would have."""

from __future__ import annotations

import contextlib
import io
import json
import random
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask

from tests.access.people import add_user
from tests.helpers import fetched_state
from tests.helpers import wait_for
from webapp.db import store
from webapp.refresher.background import EXTENSION_KEY
from webapp.simulators import SIMULATORS
from webapp.simulators.server import ServerThread
from webapp.web import push

README = Path(__file__).resolve().parents[2] / "README.md"
ML = SIMULATORS["opensearch-ml"]
#: Longer than any wait below: a fetch within it was the push's wake-up, not the idle tick.
IDLE_TICK = 120.0
FETCH_DEADLINE = 15.0


def readme_blocks(heading: str) -> dict[str, str]:
    """The fenced code blocks of a README section, by language (``sh``, ``python``)."""
    text = README.read_text()
    start = text.index(f"\n{heading}\n")
    end = text.find("\n### ", start + 1)
    section = text[start : end if end != -1 else None]
    return {
        lang: code for lang, code in re.findall(r"```(\w+)\n(.*?)```", section, flags=re.DOTALL)
    }


BLOCKS = readme_blocks("### Tracking from a pipeline")


@pytest.fixture
def live(app_factory, ml_source) -> Iterator[tuple[Flask, str, str]]:
    """Taskdeck with sign-in, an editor token, and its in-process refresher (idle tick long)."""
    app = app_factory([ml_source], AUTH="local", REFRESHER=True, REFRESH_TICK=IDLE_TICK)
    add_user(app, "owner", "admin")
    result = app.test_cli_runner().invoke(args=["token", "create", "ci", "--role", "editor"])
    assert result.exit_code == 0, result.output
    background = app.extensions[EXTENSION_KEY]
    passes: list[int] = []
    first_pass = background.refresher.run_once

    def counted_pass(**options: Any) -> Any:
        outcome = first_pass(**options)
        passes.append(1)
        return outcome

    background.refresher.run_once = counted_pass
    with ServerThread(app) as server:
        # Any request starts the refresher; once its first pass (nothing due) is over it sleeps
        # for the idle tick, unless a push wakes it.
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        wait_for(lambda: passes, what="the refresher's first pass")
        yield app, server.url, result.stdout.strip()


def submitted(ml_state: Any, task_id: str) -> str:
    """A task the upstream has, as a submit there would have made it."""
    return ML.add_demo_task(ml_state, random.Random(7), task_id=task_id).task_id


def fetched(app: Flask, task_id: str) -> str:
    return str(
        wait_for(
            lambda: fetched_state(app, "ml-prod", task_id),
            timeout=FETCH_DEADLINE,
            what=f"the refresher's first fetch of {task_id}",
        )
    )


def test_the_readme_curl_line_tracks_a_submitted_task_and_the_refresher_fetches_it(live, ml_state):
    app, url, token = live
    curl = shutil.which("curl")
    assert curl, "curl is installed by scripts/setup.sh --test"
    submit_line, push_line = BLOCKS["sh"].strip().splitlines()
    # The documented flow: the id comes from the submit's answer, then one line to Taskdeck.
    assert submit_line.startswith("TASK_ID=$(") and "$TASK_ID" in push_line
    task_id = submitted(ml_state, "deploy-from-ci")
    env = {"PATH": str(Path(curl).parent), "TASKDECK_URL": url, "TASKDECK_TOKEN": token}
    done = subprocess.run(
        ["bash", "-c", push_line],
        env={**env, "TASK_ID": task_id},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["task_id"] == task_id
    assert answer["state"] == "unknown" and answer["last_fetched_at"] is None

    assert fetched(app, task_id) == "CREATED"
    shown = httpx.get(
        f"{url}/api/v1/tasks/ml-prod/{task_id}", headers={"Authorization": f"Bearer {token}"}
    ).json()
    assert shown["state"] == "queued" and shown["task_type"] and shown["last_fetched_at"]
    with app.app_context():
        task = store.get_task("ml-prod", task_id)
        assert task is not None and task.labels == ["nightly"] and task.tracked_via == "push"

    # Run again (a retried pipeline step): 200, the same task, nothing changed.
    again = subprocess.run(
        ["bash", "-c", push_line.replace("curl ", "curl -w '\\n%{http_code}' ", 1)],
        env={**env, "TASK_ID": task_id},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    body, status = again.stdout.rsplit("\n", 1)
    assert status == "200" and json.loads(body)["upstream_status"] == "CREATED"


def test_the_readme_python_snippet_tracks_a_submitted_task(live, ml_state, monkeypatch):
    app, url, token = live
    monkeypatch.setenv("TASKDECK_URL", url)
    monkeypatch.setenv("TASKDECK_TOKEN", token)
    task_id = submitted(ml_state, "train-from-notebook")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(BLOCKS["python"], "README.md", "exec"), {"task_id": task_id})
    assert printed.getvalue().strip() == f"{url}/tasks/ml-prod/{task_id}"
    assert fetched(app, task_id) == "CREATED"
    with app.app_context():
        task = store.get_task("ml-prod", task_id)
        assert task is not None and task.note == "build 1234"


def test_a_chunked_body_past_the_limit_is_refused_with_413(live):
    """No Content-Length to judge by: the limit holds while reading."""
    app, url, token = live
    item = json.dumps({"source": "ml-prod", "task_id": "x" * 500}).encode() + b","
    count = push.MAX_BODY_BYTES // len(item) + 100

    def chunks() -> Iterator[bytes]:
        yield b"["
        for _ in range(count):
            yield item
        yield b"{}]"

    with httpx.Client(timeout=30) as client:
        try:
            answer = client.post(
                f"{url}/api/v1/tasks",
                content=chunks(),
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
        except httpx.WriteError:
            pytest.fail("the server closed the connection instead of answering 413")
    assert answer.status_code == 413
    assert answer.json() == {"error": push.TOO_LARGE, "status": 413}
    with app.app_context():
        assert store.get_task("ml-prod", "x" * 500) is None
