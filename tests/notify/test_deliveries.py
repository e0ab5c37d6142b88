"""Alert rules end to end: a task's transition written by the refresher writes one delivery in
the same transaction, and a sender delivers it exactly once to a real receiver on loopback,
through failures and a sender killed between the claim and the send."""

from __future__ import annotations

import random
import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.conftest import RefreshDriver
from tests.conftest import refresh_once
from tests.conftest import track
from tests.helpers import soup
from tests.helpers import wait_for
from tests.notify.receivers import smtp_server
from tests.notify.receivers import webhook_receiver
from webapp.db.models import Delivery
from webapp.db.models import DeliveryAttempt
from webapp.db.models import NotificationRule
from webapp.db.models import RuleMatch
from webapp.db.models import db
from webapp.db.models import utcnow
from webapp.notify import sending
from webapp.notify.sending import DeliverySender
from webapp.notify.triggers import write_delivery
from webapp.refresher.engine import Refresher
from webapp.simulators import SIMULATORS

ML = SIMULATORS["opensearch-ml"]


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self):  # type: ignore[no-untyped-def]
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def deliveries(app):  # type: ignore[no-untyped-def]
    with app.app_context():
        return [
            (d.event, d.status, d.attempts, d.target_kind)
            for d in db.session.scalars(sa.select(Delivery).order_by(Delivery.id))
        ]


@pytest.fixture
def receiver():  # type: ignore[no-untyped-def]
    with webhook_receiver() as found:
        yield found


def make_app(app_factory, ml_source, rules, **config):  # type: ignore[no-untyped-def]
    return app_factory([ml_source], NOTIFICATIONS=rules, BASE_URL="https://td.example", **config)


def test_a_failure_is_delivered_once_to_a_webhook(
    app_factory, ml_source, ml_state, clock, receiver
):  # type: ignore[no-untyped-def]
    hook, url = receiver
    app = make_app(
        app_factory, ml_source, [{"name": "ml fails", "when": "state:failed", "url": url}]
    )
    ML.add_demo_task(
        ml_state,
        random.Random(1),
        task_id="t-1",
        final="failed",
        queued_seconds=2,
        running_seconds=5,
    )
    track(app, "ml-prod", "t-1")
    driver = RefreshDriver(app)
    sender = DeliverySender(app)
    try:
        driver.pass_()
        assert deliveries(app) == []  # queued: no match yet
        clock.advance(10)
        driver.pass_()
        assert deliveries(app) == [("entered failed", "pending", 0, "webhook")]
        assert sender.send_all_due() == 1
        # Later passes and sends: the task stays failed, nothing more goes out.
        driver.pass_()
        assert sender.send_all_due() == 0
    finally:
        driver.close()
    assert len(hook.received) == 1
    message = hook.received[0]
    assert message["event"]["description"] == "entered failed"
    assert message["rule"]["name"] == "ml fails" and message["rule"]["when"] == "state:failed"
    assert message["task"]["task_id"] == "t-1" and message["task"]["state"] == "failed"
    assert message["url"] == "https://td.example/tasks/ml-prod/t-1"
    assert message["task"]["links"]["self"] == message["url"]
    assert "raw" not in message["task"]
    assert deliveries(app) == [("entered failed", "sent", 1, "webhook")]


def test_retries_with_backoff_until_the_receiver_recovers(
    app_factory, ml_source, ml_state, clock, receiver
):  # type: ignore[no-untyped-def]
    hook, url = receiver
    hook.fail_next = 3
    app = make_app(app_factory, ml_source, [{"name": "any", "when": "state:problems", "url": url}])
    ML.add_demo_task(
        ml_state,
        random.Random(1),
        task_id="t-2",
        final="failed",
        queued_seconds=0,
        running_seconds=1,
    )
    track(app, "ml-prod", "t-2")
    clock.advance(5)
    refresh_once(app)
    when = Clock()
    sender = DeliverySender(app, clock=when)
    waits = []
    for _ in range(3):
        assert sender.send_all_due() == 1
        with app.app_context():
            delivery = db.session.scalars(sa.select(Delivery)).one()
            assert delivery.status == "pending"
            waits.append(delivery.next_attempt_at - when.now)
        # Not due again before its back-off is over.
        assert sender.send_all_due() == 0
        when.advance(waits[-1])
    assert waits == [sending.backoff(1), sending.backoff(2), sending.backoff(3)]
    assert waits[0] < waits[1] < waits[2]
    assert sender.send_all_due() == 1
    assert sender.send_all_due() == 0
    assert hook.attempts == 4 and len(hook.received) == 1
    with app.app_context():
        attempts = db.session.scalars(sa.select(DeliveryAttempt).order_by(DeliveryAttempt.id)).all()
        assert [(a.outcome, a.status_code) for a in attempts] == [("error", 500)] * 3 + [
            ("ok", 200)
        ]
        assert attempts[0].answer == "receiver is down" and attempts[0].seconds is not None
    assert deliveries(app) == [("entered failed", "sent", 4, "webhook")]
    # The delivery log lists each attempt with the receiver's answer.
    log = soup(app.test_client().get("/notifications/deliveries"))
    shown = [a.get_text(" ", strip=True) for a in log.select(".attempts .attempt")]
    assert len(shown) == 4
    assert sum("error 500" in a and "receiver is down" in a for a in shown) == 3
    assert sum("ok 200" in a for a in shown) == 1


def test_gives_up_after_the_last_attempt(app_factory, ml_source, receiver):  # type: ignore[no-untyped-def]
    hook, url = receiver
    hook.fail_next = 100
    app = make_app(app_factory, ml_source, [{"name": "r", "when": "state:failed", "url": url}])
    with app.app_context():
        rule = db.session.scalars(sa.select(NotificationRule)).one()
        write_delivery(
            dedup_key="k", event="test", task=None, rule=rule, now=utcnow(), sample={"task_id": "x"}
        )
        db.session.commit()
    when = Clock()
    sender = DeliverySender(app, clock=when)
    for _ in range(sending.MAX_ATTEMPTS):
        assert sender.send_all_due() == 1
        when.advance(sending.MAX_BACKOFF)
    assert sender.send_all_due() == 0
    assert deliveries(app) == [("test", "failed", sending.MAX_ATTEMPTS, "webhook")]
    assert hook.attempts == sending.MAX_ATTEMPTS


def test_a_sender_killed_after_its_claim_is_taken_over_once(
    app_factory, ml_source, ml_state, clock, receiver
):  # type: ignore[no-untyped-def]
    hook, url = receiver
    app = make_app(app_factory, ml_source, [{"name": "r", "when": "state:failed", "url": url}])
    ML.add_demo_task(
        ml_state,
        random.Random(1),
        task_id="t-3",
        final="failed",
        queued_seconds=0,
        running_seconds=1,
    )
    track(app, "ml-prod", "t-3")
    clock.advance(5)
    refresh_once(app)
    when = Clock()
    killed = DeliverySender(app, owner="killed", clock=when)
    other = DeliverySender(app, owner="other", clock=when)
    with app.app_context():
        assert len(killed.claim()) == 1  # ...and the process dies before sending
    assert other.send_all_due() == 0  # the lease holds
    when.advance(sending.LEASE + timedelta(seconds=1))
    assert other.send_all_due() == 1
    assert other.send_all_due() == 0
    # The dead sender's claim is no longer its own: were it to wake, it sends nothing.
    with app.app_context():
        delivery_id = db.session.scalars(sa.select(Delivery.id)).one()
        assert killed.send_claimed(delivery_id) is None
    assert len(hook.received) == 1
    assert deliveries(app) == [("entered failed", "sent", 1, "webhook")]


def test_edge_triggered_once_per_state_and_leaving_clears_the_match(
    app_factory, ml_source, ml_state, clock, receiver
):  # type: ignore[no-untyped-def]
    _hook, url = receiver
    app = make_app(app_factory, ml_source, [{"name": "r", "when": "state:active", "url": url}])
    ML.add_demo_task(
        ml_state,
        random.Random(1),
        task_id="t-4",
        final="succeeded",
        queued_seconds=3,
        running_seconds=5,
    )
    track(app, "ml-prod", "t-4")
    driver = RefreshDriver(app)
    try:
        driver.pass_()
        driver.pass_()  # still queued
        clock.advance(4)
        driver.pass_()  # running: still in the match, a new state
        clock.advance(10)
        driver.pass_()  # succeeded: out of the match
    finally:
        driver.close()
    # The simulators' clock starts a year back, so the queued task may already look stuck
    # (overdue) to the wall-clock refresher: the event says so, the edges are the same.
    events = [d[0].removesuffix(" (overdue)") for d in deliveries(app)]
    assert events == ["entered queued", "entered running"]
    with app.app_context():
        assert db.session.scalars(sa.select(RuleMatch)).all() == []


def test_a_new_rule_does_not_fire_for_tasks_already_in_its_match(
    app_factory, ml_source, ml_state, clock, receiver
):  # type: ignore[no-untyped-def]
    _hook, url = receiver
    ML.add_demo_task(
        ml_state,
        random.Random(1),
        task_id="t-5",
        final="failed",
        queued_seconds=0,
        running_seconds=1,
    )
    first = app_factory([ml_source])
    track(first, "ml-prod", "t-5")
    clock.advance(5)
    driver = RefreshDriver(first)
    try:
        driver.pass_()
    finally:
        driver.close()
    app = make_app(app_factory, ml_source, [{"name": "r", "when": "state:failed", "url": url}])
    refresh_once(app)
    assert deliveries(app) == []
    with app.app_context():
        assert [m.state for m in db.session.scalars(sa.select(RuleMatch))] == ["failed"]


def test_email_rule_sends_one_message_over_smtp(app_factory, ml_source, ml_state, clock):  # type: ignore[no-untyped-def]
    with smtp_server() as (handler, smtp_url):
        app = make_app(
            app_factory,
            ml_source,
            [{"name": "mail", "when": "state:failed", "email": "team@example.com"}],
            SMTP_URL=smtp_url,
            SMTP_FROM="taskdeck@example.com",
        )
        ML.add_demo_task(
            ml_state,
            random.Random(1),
            task_id="t-6",
            final="failed",
            queued_seconds=0,
            running_seconds=1,
        )
        track(app, "ml-prod", "t-6")
        clock.advance(5)
        driver = RefreshDriver(app)
        try:
            driver.pass_()
            driver.pass_()
        finally:
            driver.close()
        sender = DeliverySender(app)
        assert sender.send_all_due() == 1
        assert sender.send_all_due() == 0
    assert len(handler.messages) == 1
    message = handler.messages[0]
    assert handler.envelopes == [("taskdeck@example.com", ["team@example.com"])]
    assert "t-6" in message["Subject"] and "failed" in message["Subject"]
    parts = {
        part.get_content_type(): part.get_payload(decode=True).decode()
        for part in message.walk()
        if not part.is_multipart()
    }
    assert "https://td.example/tasks/ml-prod/t-6" in parts["text/plain"]
    assert "<a href='https://td.example/tasks/ml-prod/t-6'>" in parts["text/html"]


def test_email_is_retried_until_the_smtp_server_takes_it(app_factory, ml_source, ml_state, clock):  # type: ignore[no-untyped-def]
    with smtp_server() as (handler, smtp_url):
        handler.fail_next = 2
        app = make_app(
            app_factory,
            ml_source,
            [{"name": "mail", "when": "state:failed", "email": "team@example.com"}],
            SMTP_URL=smtp_url,
            SMTP_FROM="taskdeck@example.com",
        )
        ML.add_demo_task(
            ml_state,
            random.Random(1),
            task_id="t-7",
            final="failed",
            queued_seconds=0,
            running_seconds=1,
        )
        track(app, "ml-prod", "t-7")
        clock.advance(5)
        refresh_once(app)
        when = Clock()
        sender = DeliverySender(app, clock=when)
        for _ in range(2):
            assert sender.send_all_due() == 1
            assert sender.send_all_due() == 0  # backing off
            with app.app_context():
                due = db.session.scalars(sa.select(Delivery.next_attempt_at)).one()
            assert due is not None
            when.advance(due - when.now)
        assert sender.send_all_due() == 1
        assert sender.send_all_due() == 0
    assert handler.attempts == 3 and len(handler.messages) == 1
    assert "t-7" in handler.messages[0]["Subject"]
    with app.app_context():
        attempts = db.session.scalars(sa.select(DeliveryAttempt).order_by(DeliveryAttempt.id)).all()
        assert [a.outcome for a in attempts] == ["error", "error", "ok"]
        assert "try again later" in (attempts[0].answer or "")
    assert deliveries(app) == [("entered failed", "sent", 3, "email")]


def test_the_running_refresher_sends_what_it_wrote(
    app_factory, ml_source, ml_state, clock, receiver
):  # type: ignore[no-untyped-def]
    hook, url = receiver
    app = make_app(app_factory, ml_source, [{"name": "r", "when": "state:failed", "url": url}])
    ML.add_demo_task(
        ml_state,
        random.Random(1),
        task_id="t-7",
        final="failed",
        queued_seconds=0,
        running_seconds=1,
    )
    clock.advance(5)
    track(app, "ml-prod", "t-7")
    refresher = Refresher(app)
    stop = threading.Event()
    thread = threading.Thread(target=refresher.run_forever, args=(stop, 0.05))
    thread.start()
    try:
        wait_for(lambda: hook.received, what="the alert at the receiver")
    finally:
        stop.set()
        refresher.wake()
        thread.join(10)
    assert len(hook.received) == 1 and hook.received[0]["task"]["task_id"] == "t-7"


def test_two_senders_at_once_send_each_delivery_once(app_factory, ml_source, receiver):  # type: ignore[no-untyped-def]
    hook, url = receiver
    app = make_app(app_factory, ml_source, [{"name": "r", "when": "state:failed", "url": url}])
    with app.app_context():
        rule = db.session.scalars(sa.select(NotificationRule)).one()
        for number in range(30):
            write_delivery(
                dedup_key=f"k{number}",
                event="test",
                task=None,
                rule=rule,
                now=utcnow(),
                sample={"task_id": f"x{number}"},
            )
        db.session.commit()
    senders = [DeliverySender(app, owner=f"s{n}") for n in range(2)]
    threads = [threading.Thread(target=s.send_all_due) for s in senders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    ids = sorted(message["task"]["task_id"] for message in hook.received)
    assert ids == sorted(f"x{number}" for number in range(30))
    assert {status for _, status, _, _ in deliveries(app)} == {"sent"}


def test_a_stopping_sender_gives_its_claims_back(app_factory, ml_source, receiver):  # type: ignore[no-untyped-def]
    hook, url = receiver
    app = make_app(app_factory, ml_source, [{"name": "r", "when": "state:failed", "url": url}])
    with app.app_context():
        rule = db.session.scalars(sa.select(NotificationRule)).one()
        for number in range(3):
            write_delivery(
                dedup_key=f"k{number}",
                event="test",
                task=None,
                rule=rule,
                now=utcnow(),
                sample={"task_id": f"x{number}"},
            )
        db.session.commit()
    stopping = DeliverySender(app, owner="stopping")
    stopping.stopping.set()
    assert stopping.send_due() == 0
    assert hook.attempts == 0
    assert {status for _, status, _, _ in deliveries(app)} == {"pending"}
    # Another sender takes them at once: no lease to wait for.
    assert DeliverySender(app).send_all_due() == 3
    assert len(hook.received) == 3


def test_refresh_once_sends_the_alerts_it_wrote(app_factory, ml_source, ml_state, clock, receiver):  # type: ignore[no-untyped-def]
    hook, url = receiver
    app = make_app(app_factory, ml_source, [{"name": "r", "when": "state:failed", "url": url}])
    ML.add_demo_task(
        ml_state,
        random.Random(1),
        task_id="t-8",
        final="failed",
        queued_seconds=0,
        running_seconds=1,
    )
    clock.advance(5)
    runner = app.test_cli_runner()
    runner.invoke(args=["track", "ml-prod", "t-8"])  # fetched once: this writes the alert
    result = runner.invoke(args=["refresh", "--once"])
    assert result.exit_code == 0, result.output
    assert "1 alert deliveries attempted" in result.output
    assert [m["task"]["task_id"] for m in hook.received] == ["t-8"]
