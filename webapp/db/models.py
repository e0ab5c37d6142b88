"""The cache: sources, tracked tasks, and their append-only history of state changes."""

from __future__ import annotations

from datetime import UTC
from datetime import datetime
from typing import TYPE_CHECKING
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.types import TypeDecorator


class Base(so.DeclarativeBase):
    metadata = sa.MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


db = SQLAlchemy(model_class=Base)

# ``db.Model`` is built at run time from ``Base``; type checkers cannot follow that, so they are
# shown ``Base`` (which it is, plus Flask-SQLAlchemy's table-name and query conveniences).
if TYPE_CHECKING:
    Model = Base
else:
    Model = db.Model


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores none of its own)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        # SQLite compares datetimes as text: store one fixed format without an offset.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONValue = sa.JSON().with_variant(sa.JSON(none_as_null=True), "sqlite")


class RateSlot(Model):
    """When a source's next request may go, shared by every process (:mod:`webapp.db.rate_slots`).

    Only sources with a ``rate_limit`` have a row; ``next_free`` is in Unix seconds.
    """

    __tablename__ = "rate_slots"

    source: so.Mapped[str] = so.mapped_column(sa.String(64), primary_key=True)
    next_free: so.Mapped[float] = so.mapped_column(sa.Float)


class Source(Model):
    """A configured upstream account or cluster, with its health as the refresher sees it."""

    __tablename__ = "sources"

    name: so.Mapped[str] = so.mapped_column(sa.String(64), primary_key=True)
    provider: so.Mapped[str] = so.mapped_column(sa.String(32))
    #: ``file`` (the config file pins it), ``database`` (added in the UI) or ``demo``.
    origin: so.Mapped[str] = so.mapped_column(sa.String(16), default="file")
    #: The validated settings as JSON, without secrets (names of variables only).
    settings: so.Mapped[dict[str, Any]] = so.mapped_column(JSONValue, default=dict)

    last_success_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)
    last_failure_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)
    last_error: so.Mapped[str | None] = so.mapped_column(sa.Text)
    last_error_kind: so.Mapped[str | None] = so.mapped_column(sa.String(32))
    consecutive_failures: so.Mapped[int] = so.mapped_column(default=0)
    requests_total: so.Mapped[int] = so.mapped_column(sa.BigInteger, default=0)
    failures_total: so.Mapped[int] = so.mapped_column(sa.BigInteger, default=0)
    #: ``closed`` (healthy), ``open`` (failing: probed now and then), ``unauthorized``.
    circuit: so.Mapped[str] = so.mapped_column(sa.String(16), default="closed")
    #: No request to this source before this time (429 Retry-After, an open circuit).
    blocked_until: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)
    #: Credentials typed in the UI, encrypted with ``TASKDECK_SECRETS_KEY`` (a Fernet token).
    encrypted_credentials: so.Mapped[str | None] = so.mapped_column(sa.Text)

    tasks: so.WriteOnlyMapped[Task] = so.relationship(
        back_populates="source_row", passive_deletes=True
    )


class Task(Model):
    """One tracked upstream task: the normalized fields, the raw payload, fetch bookkeeping."""

    __tablename__ = "tasks"
    __table_args__ = (
        sa.UniqueConstraint("source", "task_id", name="uq_tasks_source_task_id"),
        sa.Index("ix_tasks_created_sort", sa.text("sort_at DESC"), sa.text("id DESC")),
        sa.Index("ix_tasks_state_sort", "state", sa.text("sort_at DESC"), sa.text("id DESC")),
        sa.Index("ix_tasks_source_sort", "source", sa.text("sort_at DESC"), sa.text("id DESC")),
        sa.Index("ix_tasks_due", "terminal", "next_poll_at"),
        # The refresher's claims: a source's due tasks, oldest first.
        sa.Index("ix_tasks_source_due", "source", "next_poll_at"),
        sa.Index("ix_tasks_related", "source", "related_key"),
        sa.Index("ix_tasks_overdue_sort", "overdue", sa.text("sort_at DESC"), sa.text("id DESC")),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    source: so.Mapped[str] = so.mapped_column(
        sa.ForeignKey("sources.name", ondelete="CASCADE", onupdate="CASCADE")
    )
    provider: so.Mapped[str] = so.mapped_column(sa.String(32))
    #: The upstream's id, exactly as the task was tracked (any string).
    task_id: so.Mapped[str] = so.mapped_column(sa.String(512))

    state: so.Mapped[str] = so.mapped_column(sa.String(16), default="unknown")
    upstream_status: so.Mapped[str | None] = so.mapped_column(sa.String(128))
    terminal: so.Mapped[bool] = so.mapped_column(default=False)
    task_type: so.Mapped[str | None] = so.mapped_column(sa.String(128), index=True)
    name: so.Mapped[str | None] = so.mapped_column(sa.String(512))
    created_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)
    updated_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)
    finished_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)
    error: so.Mapped[str | None] = so.mapped_column(sa.Text)
    links: so.Mapped[dict[str, str]] = so.mapped_column(JSONValue, default=dict)
    details: so.Mapped[dict[str, Any]] = so.mapped_column(JSONValue, default=dict)
    raw: so.Mapped[Any] = so.mapped_column(JSONValue, nullable=True)

    #: The list's sort key: upstream creation time, or when we first saw it when there is none.
    sort_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, default=utcnow)
    tracked_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, default=utcnow)
    first_seen_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)
    last_changed_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)
    last_fetched_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)
    last_success_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)
    fetch_error: so.Mapped[str | None] = so.mapped_column(sa.Text)
    fetch_error_kind: so.Mapped[str | None] = so.mapped_column(sa.String(32))
    #: Seen upstream before, now answered "not found": kept, shown as gone upstream.
    gone_upstream: so.Mapped[bool] = so.mapped_column(default=False)

    #: Scheduling (the refresher): when to fetch next; ``None`` once no more fetches are due.
    next_poll_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)
    #: Polls in a row without a change, for back-off.
    unchanged_polls: so.Mapped[int] = so.mapped_column(default=0)
    #: Fetch failures in a row, for exponential back-off.
    failed_polls: so.Mapped[int] = so.mapped_column(default=0)
    lease_owner: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    lease_until: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)
    #: Bumped by every write, so a stale writer cannot overwrite a newer result.
    version: so.Mapped[int] = so.mapped_column(default=0)
    #: Bumped whenever something shown in a row changes (the list's live updates).
    changed_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, default=utcnow, index=True)

    #: The id that ties this task to its siblings upstream (a workflow, a model, a batch), for
    #: "related tasks" on the detail page.
    related_key: so.Mapped[str | None] = so.mapped_column(sa.String(512))

    #: People's annotations: free-form labels and a note (never touched by the refresher).
    labels: so.Mapped[list[str]] = so.mapped_column(JSONValue, default=list)
    note: so.Mapped[str | None] = so.mapped_column(sa.Text)

    #: An active task running past its bound (configured, learned, or an upstream's signal).
    overdue: so.Mapped[bool] = so.mapped_column(default=False, server_default=sa.false())
    #: Why, in words for the page: "running 3× longer than usual for DEPLOY_MODEL".
    overdue_reason: so.Mapped[str | None] = so.mapped_column(sa.String(300))

    #: How tracking began: ``hand`` (a person, the CLI), ``import``, ``follow`` (a source's
    #: followed query), ``push`` (``POST /api/v1/tasks``) or ``link`` (related to a tracked
    #: task); ``None`` for tasks tracked before this was kept.
    tracked_via: so.Mapped[str | None] = so.mapped_column(sa.String(16))
    #: When the refresher last looked for the tasks this one's payload or upstream names
    #: (:class:`TaskLink`); ``None``: not yet.
    links_checked_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)

    source_row: so.Mapped[Source] = so.relationship(back_populates="tasks")
    events: so.Mapped[list[TaskEvent]] = so.relationship(
        back_populates="task",
        order_by="TaskEvent.id",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )


class TaskEvent(Model):
    """A state change, appended when the upstream word changed. Never updated."""

    __tablename__ = "task_events"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    task_pk: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("tasks.id", ondelete="CASCADE"), index=True
    )
    at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, default=utcnow)
    state: so.Mapped[str] = so.mapped_column(sa.String(16))
    upstream_status: so.Mapped[str | None] = so.mapped_column(sa.String(128))

    task: so.Mapped[Task] = so.relationship(back_populates="events")


class SavedView(Model):
    """A named task-list view (its query string), shared with the whole team."""

    __tablename__ = "saved_views"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    name: so.Mapped[str] = so.mapped_column(sa.String(120), unique=True)
    #: The list's query string, without paging (``state=problems&source=ml-prod``).
    query_string: so.Mapped[str] = so.mapped_column(sa.String(2000))
    #: The team's default: ``/`` without a query string opens this view.
    is_default: so.Mapped[bool] = so.mapped_column(default=False)
    created_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, default=utcnow)


class User(Model):
    """Someone who may sign in: with a password (``local``), or made on first sign-in through a
    trusted proxy or an OpenID provider (no password)."""

    __tablename__ = "users"
    __table_args__ = (sa.Index("ix_users_oidc_subject", "oidc_subject", unique=True),)

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    username: so.Mapped[str] = so.mapped_column(sa.String(80), unique=True)
    #: ``None`` for people who sign in through a proxy or an OpenID provider.
    password_hash: so.Mapped[str | None] = so.mapped_column(sa.String(256))
    created_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, default=utcnow)
    #: ``viewer``, ``editor`` or ``admin`` (:class:`webapp.access.roles.Role`).
    role: so.Mapped[str] = so.mapped_column(sa.String(16), default="viewer")
    email: so.Mapped[str | None] = so.mapped_column(sa.String(254))
    #: ``issuer subject`` of an OpenID Connect account, the stable key of its person.
    oidc_subject: so.Mapped[str | None] = so.mapped_column(sa.String(512))
    last_login_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)
    #: Where "notify me" sends when the person prefers a webhook to e-mail.
    notify_webhook: so.Mapped[str | None] = so.mapped_column(sa.String(2000))


class ApiToken(Model):
    """A bearer token for ``/api/v1`` and ``/metrics``. Only its SHA-256 digest is kept: the
    token is printed once, when it is made."""

    __tablename__ = "api_tokens"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    name: so.Mapped[str] = so.mapped_column(sa.String(80), unique=True)
    role: so.Mapped[str] = so.mapped_column(sa.String(16))
    token_hash: so.Mapped[str] = so.mapped_column(sa.String(64), unique=True)
    #: The first characters of the token, to tell tokens apart in lists and logs.
    prefix: so.Mapped[str] = so.mapped_column(sa.String(16))
    created_by: so.Mapped[str | None] = so.mapped_column(sa.String(120))
    created_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, default=utcnow)
    last_used_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)


class ShareLink(Model):
    """A read-only link to one task's page for someone without an account. The URL carries a
    signed id; this row says whether it still holds."""

    __tablename__ = "share_links"
    __table_args__ = (sa.Index("ix_share_links_task", "source", "task_id"),)

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    source: so.Mapped[str] = so.mapped_column(sa.String(64))
    task_id: so.Mapped[str] = so.mapped_column(sa.String(512))
    created_by: so.Mapped[str | None] = so.mapped_column(sa.String(120))
    created_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, default=utcnow)
    expires_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime)
    revoked_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)


class AuditEvent(Model):
    """Who changed what, and when. Appended, never updated."""

    __tablename__ = "audit_events"
    __table_args__ = (sa.Index("ix_audit_events_at", sa.text("at DESC"), sa.text("id DESC")),)

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, default=utcnow)
    #: The user or token name, ``cli`` for the command line, ``anonymous`` with sign-in off.
    actor: so.Mapped[str] = so.mapped_column(sa.String(120), index=True)
    #: ``user``, ``token``, ``cli`` or ``anonymous``.
    actor_kind: so.Mapped[str] = so.mapped_column(sa.String(16))
    #: ``task.track``, ``source.update``, ``token.revoke``...
    action: so.Mapped[str] = so.mapped_column(sa.String(48), index=True)
    #: What was acted on: ``ml-prod/abc123``, a source, user or token name.
    target: so.Mapped[str | None] = so.mapped_column(sa.String(600))
    details: so.Mapped[dict[str, Any]] = so.mapped_column(JSONValue, default=dict)
    remote_addr: so.Mapped[str | None] = so.mapped_column(sa.String(64))


class LoginThrottle(Model):
    """Failed sign-ins per user name and per client address, shared by every process."""

    __tablename__ = "login_throttle"

    key: so.Mapped[str] = so.mapped_column(sa.String(200), primary_key=True)
    failures: so.Mapped[int] = so.mapped_column(default=0)
    window_started_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, default=utcnow)
    blocked_until: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)


class ImportJob(Model):
    """An import from an upstream search started in the web UI. It runs in a background thread;
    its progress is kept here so that whichever web process answers can show it."""

    __tablename__ = "import_jobs"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    source: so.Mapped[str] = so.mapped_column(sa.String(64))
    query: so.Mapped[str | None] = so.mapped_column(sa.Text)
    limit: so.Mapped[int] = so.mapped_column()
    #: ``running``, ``cancelling``, then ``done``, ``failed`` or ``cancelled``.
    status: so.Mapped[str] = so.mapped_column(sa.String(16), default="running")
    #: How many tasks the search has (up to ``limit``), when the upstream says.
    total: so.Mapped[int | None] = so.mapped_column()
    processed: so.Mapped[int] = so.mapped_column(default=0)
    tracked: so.Mapped[int] = so.mapped_column(default=0)
    skipped: so.Mapped[int] = so.mapped_column(default=0)
    failed: so.Mapped[int] = so.mapped_column(default=0)
    error: so.Mapped[str | None] = so.mapped_column(sa.Text)
    started_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, default=utcnow)
    #: Last progress written: a running job that stops moving has lost its process.
    updated_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, default=utcnow)
    finished_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)


class TaskAction(Model):
    """An upstream action someone asked for (cancel, delete, retry), and what the upstream said.
    Shown in the task's history beside its state changes."""

    __tablename__ = "task_actions"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    task_pk: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("tasks.id", ondelete="CASCADE"), index=True
    )
    at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, default=utcnow)
    action: so.Mapped[str] = so.mapped_column(sa.String(16))
    actor: so.Mapped[str] = so.mapped_column(sa.String(120))
    #: ``done`` or ``refused`` (the upstream said no) or ``failed`` (it could not be reached).
    outcome: so.Mapped[str] = so.mapped_column(sa.String(16))
    message: so.Mapped[str | None] = so.mapped_column(sa.Text)


class NotificationRule(Model):
    """An alert rule: when a task enters the match of ``when``, tell ``target``."""

    __tablename__ = "notification_rules"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    name: so.Mapped[str] = so.mapped_column(sa.String(120), unique=True)
    #: The list's search syntax (``state:problems source:ml-prod``, ``is:overdue``).
    when: so.Mapped[str] = so.mapped_column(sa.String(2000))
    #: ``webhook``, ``slack`` or ``email``.
    target_kind: so.Mapped[str] = so.mapped_column(sa.String(16))
    #: The webhook URL, the e-mail address, or the variable holding a Slack URL; ``None`` when
    #: the target is a secret typed in the UI (then in ``encrypted_target``).
    target: so.Mapped[str | None] = so.mapped_column(sa.String(2000))
    encrypted_target: so.Mapped[str | None] = so.mapped_column(sa.Text)
    #: ``file`` (the config file pins it) or ``database`` (added in the UI).
    origin: so.Mapped[str] = so.mapped_column(sa.String(16), default="database")
    enabled: so.Mapped[bool] = so.mapped_column(default=True)
    created_by: so.Mapped[str | None] = so.mapped_column(sa.String(120))
    created_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, default=utcnow)


class RuleMatch(Model):
    """A task now inside a rule's match, and the state it entered in: a rule fires on the way in,
    once per state."""

    __tablename__ = "rule_matches"

    rule_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("notification_rules.id", ondelete="CASCADE"), primary_key=True
    )
    task_pk: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    state: so.Mapped[str] = so.mapped_column(sa.String(16))
    matched_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, default=utcnow)


class Subscription(Model):
    """A "notify me": one person, one task, one delivery when it finishes."""

    __tablename__ = "subscriptions"
    __table_args__ = (sa.UniqueConstraint("user_id", "task_pk"),)

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    user_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    task_pk: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("tasks.id", ondelete="CASCADE"), index=True
    )
    #: ``email`` or ``webhook`` (the person's own).
    target_kind: so.Mapped[str] = so.mapped_column(sa.String(16))
    created_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, default=utcnow)


class Delivery(Model):
    """One message to send, written in the same transaction as the change that caused it and
    sent by a refresher process, with retries; ``dedup_key`` makes it exactly one."""

    __tablename__ = "deliveries"
    __table_args__ = (sa.Index("ix_deliveries_due", "status", "next_attempt_at"),)

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    dedup_key: so.Mapped[str] = so.mapped_column(sa.String(300), unique=True)
    rule_id: so.Mapped[int | None] = so.mapped_column(
        sa.ForeignKey("notification_rules.id", ondelete="SET NULL"), index=True
    )
    subscription_user_id: so.Mapped[int | None] = so.mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    task_pk: so.Mapped[int | None] = so.mapped_column(
        sa.ForeignKey("tasks.id", ondelete="SET NULL"), index=True
    )
    #: What happened, for the log: "entered failed", "finished", "test".
    event: so.Mapped[str] = so.mapped_column(sa.String(120))
    target_kind: so.Mapped[str] = so.mapped_column(sa.String(16))
    #: Where it goes, as shown in the log (never a secret URL: those are masked).
    target_label: so.Mapped[str] = so.mapped_column(sa.String(300))
    payload: so.Mapped[dict[str, Any]] = so.mapped_column(JSONValue, default=dict)
    #: ``pending``, ``sending``, ``sent`` or ``failed`` (gave up after its attempts).
    status: so.Mapped[str] = so.mapped_column(sa.String(16), default="pending")
    attempts: so.Mapped[int] = so.mapped_column(default=0)
    next_attempt_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime, default=utcnow)
    lease_owner: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    lease_until: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)
    created_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, default=utcnow)
    sent_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)


class DeliveryAttempt(Model):
    """One try at sending a delivery, and the answer it got."""

    __tablename__ = "delivery_attempts"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    delivery_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("deliveries.id", ondelete="CASCADE"), index=True
    )
    at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, default=utcnow)
    #: ``ok``, ``error`` (the receiver answered no) or ``unreachable``.
    outcome: so.Mapped[str] = so.mapped_column(sa.String(16))
    status_code: so.Mapped[int | None] = so.mapped_column()
    #: The start of the receiver's answer, or the error, for the delivery log.
    answer: so.Mapped[str | None] = so.mapped_column(sa.Text)
    seconds: so.Mapped[float | None] = so.mapped_column(sa.Float)


class Follow(Model):
    """A source's standing upstream query: refresher processes re-run it every
    ``interval_seconds`` and track the tasks that are new since the last run
    (:mod:`webapp.follows`).

    One per source. ``origin`` is ``file`` or ``demo`` when the configuration declares it (the
    file wins: only pausing is left to the UI) and ``database`` when it was added in the UI.
    """

    __tablename__ = "follows"

    source: so.Mapped[str] = so.mapped_column(
        sa.ForeignKey("sources.name", ondelete="CASCADE", onupdate="CASCADE"), primary_key=True
    )
    #: The upstream's own query, as ``taskdeck import --query`` takes it; ``None``: every task.
    query: so.Mapped[str | None] = so.mapped_column(sa.Text)
    interval_seconds: so.Mapped[float] = so.mapped_column(sa.Float)
    #: The most tasks the first run tracks (the newest); older matches are left untracked.
    backfill_limit: so.Mapped[int] = so.mapped_column()
    origin: so.Mapped[str] = so.mapped_column(sa.String(16), default="database")
    paused: so.Mapped[bool] = so.mapped_column(default=False)
    created_by: so.Mapped[str | None] = so.mapped_column(sa.String(120))
    created_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, default=utcnow)

    #: When the next run is due; ``None``: at once.
    next_run_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)
    #: The process running it now, so that two never run one follow at once.
    lease_owner: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    lease_until: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)

    runs: so.Mapped[int] = so.mapped_column(default=0)
    last_started_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)
    last_finished_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)
    last_success_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)
    #: New tasks the last run tracked, and every run's together.
    last_found: so.Mapped[int] = so.mapped_column(default=0)
    total_found: so.Mapped[int] = so.mapped_column(sa.BigInteger, default=0)
    last_error: so.Mapped[str | None] = so.mapped_column(sa.Text)
    consecutive_failures: so.Mapped[int] = so.mapped_column(default=0)
    #: What the last run wants people to know ("the first run tracked the newest 200 of 5,431").
    last_note: so.Mapped[str | None] = so.mapped_column(sa.String(300))

    #: The newest creation time the query has shown: the next run reads back to it, less an
    #: overlap for tasks the upstream lists late.
    watermark: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)
    #: The newest ids the last run saw: where the next run stops on an upstream whose tasks
    #: carry no creation time.
    frontier: so.Mapped[list[str]] = so.mapped_column(JSONValue, default=list)

    def restart(self) -> None:
        """Forget where the query got to (it changed): the next run is a first run, at once."""
        self.watermark = None
        self.frontier = []
        self.runs = 0
        self.last_success_at = None
        self.last_note = None
        self.last_error = None
        self.consecutive_failures = 0
        self.next_run_at = None


class TaskLink(Model):
    """Another upstream task that a tracked task leads to: named in its payload (a Conductor
    task's output holding an ML task id) or listed beside it upstream (the same model's or
    workflow's other tasks). Resolved to a source by the refresher, tracked when the source's
    ``track_related`` says so."""

    __tablename__ = "task_links"
    __table_args__ = (
        sa.UniqueConstraint("task_pk", "target_task_id", name="uq_task_links_task_pk"),
        sa.Index("ix_task_links_target", "target_source", "target_task_id"),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    task_pk: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("tasks.id", ondelete="CASCADE"), index=True
    )
    #: How the two are related, in words for the page: ``launched``, ``same model``...
    relation: so.Mapped[str] = so.mapped_column(sa.String(32))
    #: The upstream id as the payload or the upstream named it.
    target_task_id: so.Mapped[str] = so.mapped_column(sa.String(512))
    #: Which provider's task it is, once known.
    target_provider: so.Mapped[str | None] = so.mapped_column(sa.String(32))
    #: The configured source it was found on; ``None`` until resolved.
    target_source: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    #: ``pending`` (not looked up yet), ``found``, ``not_found`` or ``ambiguous``.
    status: so.Mapped[str] = so.mapped_column(sa.String(16), default="pending")
    #: Where it was seen, for the page: ``output.task_id``, ``model_id``.
    found_in: so.Mapped[str | None] = so.mapped_column(sa.String(200))
    discovered_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, default=utcnow)
    resolved_at: so.Mapped[datetime | None] = so.mapped_column(UTCDateTime)
