"""An alert through real ``taskdeck worker`` processes (a SQLite file, PostgreSQL): the worker
that wrote a task's failure, and its delivery in the same transaction, is killed with SIGKILL
before its message got through; the next worker sends it, and the receiver gets exactly one."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import track
from tests.conftest import wait_for
from tests.integration.conftest import worker_env
from tests.integration.conftest import write_sources
from webapp.config import build_source
from webapp.db.models import Delivery
from webapp.db.models import DeliveryAttempt
from webapp.db.models import Task
from webapp.db.models import TaskEvent
from webapp.db.models import db
from webapp.db.models import utcnow
from webapp.simulators import SIMULATORS
from webapp.simulators.server import ServerThread


@dataclass
class HoldingReceiver:
    """A webhook receiver whose first request hangs, unanswered, until ``release`` is set, and
    then gets no answer but a 503 to a sender that is gone: that message never got through.
    Every later request is recorded and answered 200."""

    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    received: list[dict[str, Any]] = field(default_factory=list)
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        with self.lock:
            self.requests += 1
            first = self.requests == 1
        if first:
            self.arrived.set()
            self.release.wait(30)
            start_response("503 SERVICE UNAVAILABLE", [("Content-Type", "text/plain")])
            return [b"not taken"]
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        with self.lock:
            self.received.append(json.loads(body))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]


@pytest.fixture
def receiver() -> Iterator[tuple[HoldingReceiver, str]]:
    hook = HoldingReceiver()
    with ServerThread(hook) as server:
        try:
            yield hook, f"{server.url}/hook"
        finally:
            hook.release.set()


def test_a_worker_killed_between_writing_the_event_and_sending_alerts_exactly_once(
    upstreams, tmp_path, database_url, app_factory, dispose_engines, start_worker, clock, receiver
):  # type: ignore[no-untyped-def]
    hook, url = receiver
    entry, environ = upstreams.source_entry("opensearch-ml", "ml", poll_interval=0.5)
    config = write_sources(tmp_path / "sources.toml", [entry])
    with config.open("a") as file:
        file.write(
            f'\n[[notifications]]\nname = "ml fails"\nwhen = "state:failed"\nurl = "{url}"\n'
        )
    env = worker_env(database_url, config, tmp_path, environ)
    rule = {"name": "ml fails", "when": "state:failed", "url": url}
    app = dispose_engines(
        app_factory([build_source(entry, environ)], DATABASE_URL=database_url, NOTIFICATIONS=[rule])
    )
    SIMULATORS["opensearch-ml"].add_demo_task(
        upstreams.state("opensearch-ml"),
        random.Random(1),
        task_id="t-1",
        final="failed",
        queued_seconds=0,
        running_seconds=1,
    )
    clock.advance(5)  # failed upstream before anyone fetched it: its first fetch enters the match
    track(app, "ml", "t-1")

    first = start_worker(env)
    assert hook.arrived.wait(30), first.output()
    # The worker fetched the failure, wrote the event and the delivery (one transaction), and
    # its message is on the wire, unanswered. Kill it there.
    with app.app_context():
        delivery = db.session.scalars(sa.select(Delivery)).one()
        assert (delivery.status, delivery.attempts) == ("sending", 0)
        assert delivery.lease_owner.startswith(first.owner_prefix)
        task = db.session.scalars(sa.select(Task)).one()
        events = db.session.scalars(sa.select(TaskEvent.state).where(TaskEvent.task_pk == task.id))
        assert "failed" in list(events)
    first.kill()
    hook.release.set()
    # Its claim's 2-minute lease runs out (moved back here rather than waited for).
    with app.app_context():
        db.session.execute(sa.update(Delivery).values(lease_until=utcnow() - timedelta(seconds=1)))
        db.session.commit()

    second = start_worker(env)

    def sent() -> bool:
        with app.app_context():
            return db.session.scalars(sa.select(Delivery.status)).one() == "sent"

    wait_for(sent, timeout=30, what="the next worker to send the delivery")
    second.stop()
    assert second.process.returncode == 0, second.output()
    assert len(hook.received) == 1
    message = hook.received[0]
    assert message["event"]["description"] == "entered failed"
    assert message["task"]["task_id"] == "t-1" and message["rule"]["name"] == "ml fails"
    with app.app_context():
        delivery = db.session.scalars(sa.select(Delivery)).one()
        assert delivery.attempts == 1 and delivery.lease_owner is None
        attempts = db.session.scalars(sa.select(DeliveryAttempt)).all()
        assert [(a.outcome, a.status_code) for a in attempts] == [("ok", 200)]
