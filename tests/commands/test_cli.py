"""The ``taskdeck`` command line, against the simulator over loopback HTTP."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from webapp.db import store
from webapp.db.models import Delivery
from webapp.db.models import RuleMatch
from webapp.db.models import Task
from webapp.db.models import db
from webapp.simulators import SIMULATORS

ML = SIMULATORS["opensearch-ml"]


def test_track_fetches_at_once_and_reports(ml_app, ml_state):
    ML.add_demo_task(ml_state, random.Random(1), task_id="t-1")
    runner = ml_app.test_cli_runner()
    result = runner.invoke(args=["track", "ml-prod", "t-1", "missing"])
    assert result.exit_code == 0, result.output
    assert "tracking ml-prod/t-1: queued (CREATED)" in result.stdout
    assert "tracking ml-prod/missing: not_found" in result.stderr
    again = runner.invoke(args=["track", "ml-prod", "t-1"])
    assert "already tracked ml-prod/t-1" in again.stdout


def test_track_unknown_source_fails_with_one_line(ml_app):
    result = ml_app.test_cli_runner().invoke(args=["track", "nope", "x"])
    assert result.exit_code != 0
    assert result.output.strip() == "Error: unknown source 'nope' (sources: ml-prod)"


def test_refresh_once_and_forced_task(ml_app, ml_state, clock):
    ML.add_demo_task(ml_state, random.Random(1), task_id="t-1", queued_seconds=5)
    runner = ml_app.test_cli_runner()
    runner.invoke(args=["track", "ml-prod", "t-1"])
    # Not due yet: a plain pass fetches nothing, a forced one fetches the task.
    assert "refreshed 0 tasks" in runner.invoke(args=["refresh", "--once"]).output
    clock.advance(6)
    result = runner.invoke(args=["refresh", "--once", "--task", "ml-prod/t-1"])
    assert result.exit_code == 0, result.output
    assert "refreshed 1 tasks: 1 changed state, 0 failed" in result.output
    bad = runner.invoke(args=["refresh", "--once", "--task", "ml-prod/unknown"])
    assert bad.exit_code != 0 and "not tracked" in bad.output


def test_import_tracks_search_results_with_counts(ml_app, ml_state, suite):
    seeded = suite.load_seeds()["opensearch-ml"]
    for i in range(5):
        ML.add_demo_task(ml_state, random.Random(i), task_id=f"job-{i}")
    runner = ml_app.test_cli_runner()
    runner.invoke(args=["track", "ml-prod", "job-0"])
    result = runner.invoke(args=["import", "ml-prod"])
    assert result.exit_code == 0, result.output
    total = len(seeded) + 5
    assert f"{total - 1} tracked, 1 already tracked, 0 failed" in result.output
    with ml_app.app_context():
        task = store.get_task("ml-prod", "_wnLJ38BvytMh9aUi-Ia")
        assert task.state == "succeeded" and task.task_type == "TRAINING"
        assert [e.upstream_status for e in task.events] == ["COMPLETED"]
    # Imported tasks were written from the search answer: no GET per task.
    assert ml_state.calls["get"] == 1


def test_import_with_a_query(ml_app, ml_state, suite):
    suite.load_seeds()
    result = ml_app.test_cli_runner().invoke(
        args=["import", "ml-prod", "--query", '{"term": {"function_name": "KMEANS"}}']
    )
    # Two hits of the search example, the training example of each get document.
    assert "4 tracked" in result.output
    bad = ml_app.test_cli_runner().invoke(args=["import", "ml-prod", "--query", "{oops"])
    assert bad.exit_code != 0 and "not valid JSON" in bad.output


def test_import_reports_an_upstream_failure(ml_app, ml_state):
    ml_state.set_fault("500")
    result = ml_app.test_cli_runner().invoke(args=["import", "ml-prod"])
    assert result.exit_code != 0
    assert "the import stopped early: upstream_error (HTTP 500)" in result.output


def test_sources_lists_health(ml_app, ml_state):
    ML.add_demo_task(ml_state, random.Random(1), task_id="t-1")
    runner = ml_app.test_cli_runner()
    runner.invoke(args=["track", "ml-prod", "t-1"])
    result = runner.invoke(args=["sources"])
    assert result.output.split()[:3] == ["ml-prod", "opensearch-ml", "healthy"]


def run_console(args, tmp_path, **env):
    environment = {
        **os.environ,
        "TASKDECK_INSTANCE_PATH": str(tmp_path / "instance"),
        "TASKDECK_SECRET_KEY": "k",
        **env,
    }
    script = Path(sys.executable).parent / "taskdeck"
    return subprocess.run(
        [str(script), *args], capture_output=True, text=True, env=environment, timeout=60
    )


def test_console_script_bad_config_is_one_line_and_non_zero(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[[sources]]\nname = "x"\nprovider = "jenkins"\nbase_url = "http://h"\n')
    result = run_console(["sources"], tmp_path, TASKDECK_CONFIG=str(config))
    assert result.returncode != 0
    assert result.stderr.strip() == (
        "Error: source 'x': field 'provider': unknown provider; "
        "expected one of opensearch-ml, mixpeek, conductor, nclue"
    )


def test_console_script_init_db(tmp_path):
    result = run_console(["init-db"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "database ready: sqlite:///" in result.stdout
    assert (tmp_path / "instance" / "taskdeck.sqlite").exists()


def test_an_import_backfills_quietly_and_alerts_on_what_changes_later(
    app_factory, ml_source, ml_state, clock
):
    # Tasks that failed before anyone imported them entered nothing while we watched: their
    # rule matches are recorded without an alert; a change after the import alerts as usual.
    rule = {"name": "problems", "when": "state:problems", "url": "https://hooks.example/td"}
    app = app_factory([ml_source], NOTIFICATIONS=[rule])
    ML.add_demo_task(ml_state, random.Random(1), task_id="old", final="failed", running_seconds=1)
    ML.add_demo_task(ml_state, random.Random(2), task_id="new", final="failed", queued_seconds=30)
    clock.advance(5)
    runner = app.test_cli_runner()
    assert "2 tracked" in runner.invoke(args=["import", "ml-prod"]).output
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Delivery)) == 0
        assert db.session.scalar(sa.select(sa.func.count()).select_from(RuleMatch)) == 1
    clock.advance(120)
    runner.invoke(args=["refresh", "--once", "--task", "ml-prod/new"])
    with app.app_context():
        alerted = db.session.scalars(
            sa.select(Delivery.event).join(Task, Delivery.task_pk == Task.id)
        ).all()
    assert alerted == ["entered failed"]
