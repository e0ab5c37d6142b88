"""``taskdeck refresh --once`` runs the due follows too (cron-driven deployments)."""

from __future__ import annotations

import random

from webapp.simulators import SIMULATORS


def test_refresh_once_runs_the_due_follows(app_factory, make_source, suite):
    source = make_source("conductor", name="flows", follow="*", follow_interval=60)
    app = app_factory([source])
    for seed in range(3):
        SIMULATORS["conductor"].add_demo_task(suite.states["conductor"], random.Random(seed))
    runner = app.test_cli_runner()
    result = runner.invoke(args=["refresh", "--once"])
    assert result.exit_code == 0, result.output
    assert "1 follows ran: 3 new tasks" in result.output
    # Not due again before its interval.
    assert "follows ran" not in runner.invoke(args=["refresh", "--once"]).output


def test_a_failing_follow_is_reported_by_refresh_once(app_factory, make_source, suite):
    source = make_source("opensearch-ml", name="ml", follow="*")
    app = app_factory([source])
    suite.states["opensearch-ml"].set_fault("500")
    result = app.test_cli_runner().invoke(args=["refresh", "--once"])
    assert result.exit_code == 0, result.output
    assert "1 follows ran: 0 new tasks; follow of ml failed:" in result.output
