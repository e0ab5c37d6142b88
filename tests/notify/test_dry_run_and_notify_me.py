"""The dry run over the cache's history (a fixed clock), and "notify me" end to end: a person
asks on a task's page, the refresher sees the task finish, one message arrives (webhook or
e-mail) and the subscription ends."""

from __future__ import annotations

import random
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from urllib.parse import quote

import sqlalchemy as sa

from tests.access.people import add_user
from tests.access.people import form_token
from tests.access.people import signed_in
from tests.conftest import RefreshDriver
from tests.conftest import refresh_once
from tests.conftest import track
from tests.helpers import soup
from tests.notify.receivers import smtp_server
from tests.notify.receivers import webhook_receiver
from webapp.db.models import Delivery
from webapp.db.models import Subscription
from webapp.db.models import Task
from webapp.db.models import TaskEvent
from webapp.db.models import User
from webapp.db.models import db
from webapp.notify import triggers
from webapp.notify.dryrun import dry_run
from webapp.notify.sending import DeliverySender
from webapp.refresher.engine import Refresher
from webapp.simulators import SIMULATORS

ML = SIMULATORS["opensearch-ml"]
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def add_history(app, source, task_id, states, *, task_type="DEPLOY_MODEL"):  # type: ignore[no-untyped-def]
    """A task with its state changes at the given ages (hours before NOW)."""
    with app.app_context():
        task = Task(
            source=source,
            provider="opensearch-ml",
            task_id=task_id,
            state=states[-1][1],
            task_type=task_type,
            links={},
            details={},
            sort_at=NOW,
            tracked_at=NOW,
            changed_at=NOW,
        )
        db.session.add(task)
        db.session.flush()
        for hours, state in states:
            db.session.add(
                TaskEvent(
                    task_pk=task.id,
                    at=NOW - timedelta(hours=hours),
                    state=state,
                    upstream_status=state.upper(),
                )
            )
        db.session.commit()


def test_dry_run_counts_entries_into_the_match_over_seven_days(app_factory, ml_source):  # type: ignore[no-untyped-def]
    app = app_factory([ml_source])
    add_history(app, "ml-prod", "a", [(30, "queued"), (29, "running"), (28, "failed")])
    add_history(app, "ml-prod", "b", [(10, "queued"), (9, "failed")], task_type="TRAINING")
    # Failed before the window opened, retried and failed again: a rule fires once per state,
    # and it was already failed when the window opened.
    add_history(app, "ml-prod", "c", [(200, "failed"), (5, "running"), (4, "failed")])
    # Entered 8 days ago: outside the window.
    add_history(app, "ml-prod", "d", [(9 * 24, "queued"), (8 * 24, "failed")])
    add_history(app, "ml-prod", "e", [(3, "queued"), (2, "running"), (1, "succeeded")])
    with app.app_context():
        result = dry_run("state:failed", NOW)
        assert result.count == 2
        assert [(e.task_id, e.state) for e in result.examples] == [("b", "failed"), ("a", "failed")]
        assert dry_run("state:problems type:TRAINING", NOW).count == 1
        assert (
            dry_run("state:active", NOW).count == 6
        )  # queued + running of a, b(queued), c(running), e
        assert dry_run("source:ml-prod", NOW).count == 9  # c: only its running
        assert dry_run("state:failed", NOW + timedelta(days=7)).count == 0


def test_dry_run_fragment(app_factory, ml_source):  # type: ignore[no-untyped-def]
    app = app_factory([ml_source])
    client = app.test_client()
    token = form_token(client)
    answer = client.post(
        "/notifications/dry-run",
        data={"csrf_token": token, "when": "state:failed"},
        headers={"HX-Request": "true"},
    )
    assert answer.status_code == 200
    assert soup(answer).select_one(".dry-run-count").get_text() == "0"
    bad = client.post("/notifications/dry-run", data={"csrf_token": token, "when": "state:nope"})
    assert "unknown state" in soup(bad).select_one("[role=alert]").get_text()


def watch(app, client, task_id):  # type: ignore[no-untyped-def]
    path = f"/tasks/ml-prod/{quote(task_id, safe='')}/notify-me"
    return client.post(
        path, data={"csrf_token": form_token(client), "on": "1"}, headers={"HX-Request": "true"}
    )


def run_to_the_end(app, clock):  # type: ignore[no-untyped-def]
    driver = RefreshDriver(app)
    try:
        clock.advance(30)
        driver.pass_()
        driver.pass_()
    finally:
        driver.close()
    return DeliverySender(app).send_all_due()


def test_notify_me_by_webhook_end_to_end(app_factory, ml_source, ml_state, clock):  # type: ignore[no-untyped-def]
    app = app_factory([ml_source], AUTH="local")
    add_user(app, "ann", "viewer")
    ML.add_demo_task(
        ml_state,
        random.Random(1),
        task_id="job/1",
        final="succeeded",
        queued_seconds=2,
        running_seconds=5,
    )
    track(app, "ml-prod", "job/1")
    refresh_once(app)
    ann = signed_in(app, "ann")
    fragment = soup(ann.get("/tasks/ml-prod/job%2F1/notify-me"))
    assert "your settings" in fragment.select_one("#notify-me").get_text()
    with webhook_receiver() as (hook, url):
        saved = ann.post("/account", data={"csrf_token": form_token(ann), "notify_webhook": url})
        assert saved.status_code == 303
        answer = watch(app, ann, "job/1")
        assert (
            "You will be told at your webhook" in soup(answer).select_one("#notify-me").get_text()
        )
        assert run_to_the_end(app, clock) == 1
        assert DeliverySender(app).send_all_due() == 0
    assert len(hook.received) == 1
    assert hook.received[0]["event"]["description"] == "finished succeeded"
    assert hook.received[0]["task"]["task_id"] == "job/1"
    with app.app_context():
        assert db.session.scalars(sa.select(Subscription)).all() == []
        delivery = db.session.scalars(sa.select(Delivery)).one()
        assert delivery.subscription_user_id is not None and delivery.status == "sent"
    # A finished task says so, and offers nothing.
    done = soup(ann.get("/tasks/ml-prod/job%2F1/notify-me")).select_one("#notify-me")
    assert "has finished" in done.get_text() and not done.select("button")


def test_notify_me_by_email_and_turning_it_off(app_factory, ml_source, ml_state, clock):  # type: ignore[no-untyped-def]
    with smtp_server() as (handler, smtp_url):
        app = app_factory([ml_source], AUTH="local", SMTP_URL=smtp_url)
        add_user(app, "bo", "viewer")
        with app.app_context():
            db.session.execute(sa.update(User).values(email="bo@example.com"))
            db.session.commit()
        for task_id in ("t1", "t2"):
            ML.add_demo_task(
                ml_state,
                random.Random(1),
                task_id=task_id,
                final="failed",
                queued_seconds=2,
                running_seconds=5,
            )
            track(app, "ml-prod", task_id)
        bo = signed_in(app, "bo")
        assert "by e-mail" in soup(watch(app, bo, "t1")).get_text()
        watch(app, bo, "t2")
        off = bo.post(
            "/tasks/ml-prod/t2/notify-me",
            data={"csrf_token": form_token(bo), "on": "0"},
            headers={"HX-Request": "true"},
        )
        assert "Notify me when it finishes" in soup(off).select_one("#notify-me button").get_text()
        assert run_to_the_end(app, clock) == 1
    assert len(handler.messages) == 1
    assert handler.envelopes[0][1] == ["bo@example.com"]
    assert "t1" in handler.messages[0]["Subject"] and "failed" in handler.messages[0]["Subject"]


def test_notify_me_needs_a_person(app_factory, ml_source):  # type: ignore[no-untyped-def]
    app = app_factory([ml_source])  # sign-in off: nobody in particular to tell
    track(app, "ml-prod", "x")
    client = app.test_client()
    page = soup(client.get("/tasks/ml-prod/x"))
    assert not page.select("#notify-me")
    answer = watch(app, client, "x")
    assert "Sign in as a person" in soup(answer).get_text()
    with app.app_context():
        assert db.session.scalars(sa.select(Subscription)).all() == []


def test_a_subscription_made_as_its_task_finished_is_told_by_the_periodic_pass(
    app_factory, ml_source, ml_state, clock, monkeypatch
):  # type: ignore[no-untyped-def]
    """The race: the refresher writes the task's final state having read its subscriptions
    just before this one was committed. Nothing changes on a finished task after that, so the
    refresher's periodic pass ends such subscriptions, one delivery each."""
    app = app_factory([ml_source], AUTH="local")
    add_user(app, "cy", "viewer")
    ML.add_demo_task(
        ml_state,
        random.Random(1),
        task_id="late",
        final="succeeded",
        queued_seconds=2,
        running_seconds=5,
    )
    track(app, "ml-prod", "late")
    with webhook_receiver() as (hook, url):
        cy = signed_in(app, "cy")
        assert cy.post("/account", data={"csrf_token": form_token(cy), "notify_webhook": url})
        assert "You will be told" in soup(watch(app, cy, "late")).get_text()
        # The finishing write does not see the subscription (committed just after its read).
        with monkeypatch.context() as patch:
            patch.setattr(triggers, "_finish_subscriptions", lambda tasks, batch: None)
            assert run_to_the_end(app, clock) == 0
        with app.app_context():
            assert db.session.scalars(sa.select(Task.terminal)).one() is True
            assert len(db.session.scalars(sa.select(Subscription)).all()) == 1  # left behind

        refresher = Refresher(app)
        try:
            refresher.overdue.run()
            assert DeliverySender(app).send_all_due() == 1
            refresher.overdue.run()
            assert DeliverySender(app).send_all_due() == 0
        finally:
            refresher.close()
    assert [m["event"]["description"] for m in hook.received] == ["finished succeeded"]
    assert hook.received[0]["task"]["task_id"] == "late"
    with app.app_context():
        assert db.session.scalars(sa.select(Subscription)).all() == []
        delivery = db.session.scalars(sa.select(Delivery)).one()
        assert delivery.subscription_user_id is not None and delivery.status == "sent"
