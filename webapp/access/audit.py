"""The audit log: who tracked, untracked, imported, edited, or changed a source, a user, a token
or a share link, and when.

:func:`record` adds one :class:`AuditEvent` to the session; the caller's commit writes it, in
the same transaction as the change it describes, so the log never claims a change that was
rolled back (or misses one that was written). Details are plain JSON and never hold a secret:
no credential value, token, token digest or password hash.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask import has_request_context
from flask import request
from werkzeug.datastructures import MultiDict

from webapp.access.principal import current_principal
from webapp.db.models import AuditEvent
from webapp.db.models import db
from webapp.db.models import utcnow

#: Every action the app records, with what the audit page calls it.
ACTIONS: dict[str, str] = {
    "task.track": "tracked a task",
    "task.untrack": "untracked a task",
    "task.import": "imported tasks",
    "task.annotate": "edited labels or note",
    "task.action": "asked the upstream to act on a task",
    "view.create": "saved a view",
    "view.delete": "deleted a view",
    "view.default": "changed the default view",
    "source.create": "added a source",
    "source.update": "changed a source",
    "follow.add": "followed a query on a source",
    "follow.update": "changed a followed query",
    "follow.pause": "paused a followed query",
    "follow.resume": "resumed a followed query",
    "follow.remove": "stopped following a query",
    "follow.run": "ran a followed query now",
    "token.create": "created an API token",
    "token.revoke": "revoked an API token",
    "share.create": "created a share link",
    "share.revoke": "revoked a share link",
    "user.create": "created a user",
    "user.update": "changed a user",
    "user.delete": "removed a user",
    "rule.create": "added an alert rule",
    "rule.update": "changed an alert rule",
    "rule.delete": "deleted an alert rule",
}

#: Detail keys that would hold a secret: refused outright, so a slip fails its test loudly
#: instead of writing a credential into a table that admins read and export.
SECRET_KEYS = frozenset(
    {"token", "token_hash", "password", "password_hash", "secret", "credentials", "api_key"}
)
#: Long free text (a note) is cut here: the log says what changed, it is not a copy.
MAX_DETAIL_TEXT = 200


def record(
    action: str,
    target: str | None = None,
    /,
    *,
    commit: bool = False,
    actor: tuple[str, str] | None = None,
    **details: Any,
) -> AuditEvent:
    """Append an event for ``action`` on ``target`` by the current principal.

    Outside a request (the command line) the actor is ``cli:<login name>``. The event joins the
    session; pass ``commit=True`` when there is no change of the caller's own to commit with it.
    ``actor`` (name, kind) names someone else: the person a proxy has just named, say.
    ``action`` and ``target`` are positional only, so a detail may be called ``action`` (the
    upstream action of ``task.action``).
    """
    refused = SECRET_KEYS.intersection(details)
    if refused:
        raise ValueError(f"audit details must not hold secrets: {', '.join(sorted(refused))}")
    actor_name, actor_kind = actor or current_actor()
    event = AuditEvent(
        at=utcnow(),
        actor=actor_name[:120],
        actor_kind=actor_kind,
        action=action,
        target=target[:600] if target is not None else None,
        details={key: _clip(value) for key, value in details.items()},
        remote_addr=request.remote_addr if has_request_context() else None,
    )
    db.session.add(event)
    if commit:
        db.session.commit()
    return event


def task_target(source: str, task_id: str) -> str:
    """How events name a task: ``source/task_id``, as on the command line."""
    return f"{source}/{task_id}"


def current_actor() -> tuple[str, str]:
    """Who is acting, as the log names them: ``(name, kind)``."""
    principal = current_principal()
    if principal is not None:
        return principal.name, principal.kind
    if has_request_context():
        return "anonymous", "anonymous"
    return f"cli:{_login_name()}", "cli"


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        # No login name in the environment nor in the password database (a bare container).
        return "unknown"


def _clip(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_DETAIL_TEXT:
        return value[:MAX_DETAIL_TEXT] + "…"
    return value


# -- reading the log -------------------------------------------------------------------------

PAGE_SIZE = 50
#: Rows read at a time while an export streams.
EXPORT_BATCH = 500


@dataclass(frozen=True)
class AuditFilter:
    """The audit page's filters, as its query string carries them (so a view can be shared)."""

    actor: str = ""
    action: str = ""
    target: str = ""
    since: datetime | None = None
    until: datetime | None = None
    #: ``<event time>,<event id>`` of the last row of the previous page (newest first).
    after: tuple[datetime, int] | None = None
    problems: list[str] = field(default_factory=list, compare=False)

    @classmethod
    def from_args(cls, args: MultiDict[str, str]) -> AuditFilter:
        problems: list[str] = []
        since = _parse_time(args.get("since", ""), "since", problems)
        until = _parse_time(args.get("until", ""), "until", problems)
        return cls(
            actor=args.get("actor", "").strip(),
            action=args.get("action", "").strip(),
            target=args.get("target", "").strip(),
            since=since,
            until=until,
            after=_parse_cursor(args.get("after", ""), problems),
            problems=problems,
        )

    def args(self, **overrides: Any) -> dict[str, str]:
        """The query string of this filter (without the page), for links and exports."""
        values = {
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "since": _show_time(self.since),
            "until": _show_time(self.until),
        }
        values.update(overrides)
        return {key: value for key, value in values.items() if value}

    def statement(self) -> sa.Select[AuditEvent]:
        """The matching events, newest first (ties broken by id, the order they were added)."""
        stmt = sa.select(AuditEvent).order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        if self.actor:
            stmt = stmt.where(AuditEvent.actor == self.actor)
        if self.action:
            stmt = stmt.where(AuditEvent.action == self.action)
        if self.target:
            pattern = "%" + _escape_like(self.target) + "%"
            stmt = stmt.where(AuditEvent.target.like(pattern, escape="\\"))
        if self.since is not None:
            stmt = stmt.where(AuditEvent.at >= self.since)
        if self.until is not None:
            stmt = stmt.where(AuditEvent.at < self.until)
        return stmt


@dataclass(frozen=True)
class AuditPage:
    events: list[AuditEvent]
    #: The ``after`` cursor of the next (older) page, or ``None`` on the last one.
    next_cursor: str | None


def page(audit_filter: AuditFilter, size: int = PAGE_SIZE) -> AuditPage:
    """One page of matching events, newest first, from the filter's cursor on (keyset paging:
    each page costs the same however deep it is)."""
    stmt = audit_filter.statement()
    if audit_filter.after is not None:
        at, event_id = audit_filter.after
        stmt = stmt.where(
            sa.or_(AuditEvent.at < at, sa.and_(AuditEvent.at == at, AuditEvent.id < event_id))
        )
    rows = list(db.session.scalars(stmt.limit(size + 1)))
    events = rows[:size]
    more = len(rows) > size
    return AuditPage(events, cursor_of(events[-1]) if more and events else None)


def cursor_of(event: AuditEvent) -> str:
    return f"{event.at.isoformat()},{event.id}"


def stream(audit_filter: AuditFilter) -> Iterator[AuditEvent]:
    """Every matching event, newest first, read in batches (an export never holds them all)."""
    stmt = audit_filter.statement().execution_options(yield_per=EXPORT_BATCH)
    yield from db.session.scalars(stmt)


def known_actions() -> list[str]:
    """The actions to filter by: every one the app records, and any other found in the log."""
    found = db.session.scalars(sa.select(AuditEvent.action).distinct())
    return sorted(set(ACTIONS) | set(found))


def known_actors() -> list[str]:
    return sorted(db.session.scalars(sa.select(AuditEvent.actor).distinct()))


def _parse_time(text: str, name: str, problems: list[str]) -> datetime | None:
    """An ISO date or date and time (``2026-12-01``, ``2026-12-01T17:30``), read as UTC when it
    names no zone."""
    text = text.strip()
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        problems.append(f"{name}: give a date or a date and time, as 2026-12-01T17:30")
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _show_time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S") if value is not None else ""


def _parse_cursor(text: str, problems: list[str]) -> tuple[datetime, int] | None:
    if not text:
        return None
    at_text, _, id_text = text.rpartition(",")
    try:
        at = datetime.fromisoformat(at_text)
        event_id = int(id_text)
    except ValueError:
        problems.append("after: not a page of this log; start again from the newest events")
        return None
    return (at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC), event_id)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
