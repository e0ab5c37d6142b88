"""Share links: a signed, expiring, read-only link to one task's page (``/share/<token>``).

The token in the URL is the :class:`ShareLink` row's id signed with the app's secret key
(itsdangerous, salt ``share-link``), so it cannot be guessed or altered. The row says whether
the link still holds: its expiry and its revocation. Nothing about the token is stored: the
same row can be signed again, which is why revoking is done on the row.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app
from itsdangerous import BadSignature
from itsdangerous import URLSafeTimedSerializer

from webapp.access import audit
from webapp.db.models import ShareLink
from webapp.db.models import Task
from webapp.db.models import db
from webapp.db.models import utcnow
from webapp.db.store import get_task

SALT = "share-link"


@dataclass(frozen=True)
class Expiry:
    key: str
    label: str
    lifetime: timedelta


#: What the task page offers, shortest first.
EXPIRIES = (
    Expiry("1h", "1 hour", timedelta(hours=1)),
    Expiry("1d", "1 day", timedelta(days=1)),
    Expiry("7d", "7 days", timedelta(days=7)),
    Expiry("30d", "30 days", timedelta(days=30)),
)
EXPIRY_BY_KEY = {expiry.key: expiry for expiry in EXPIRIES}
DEFAULT_EXPIRY = "1d"
#: itsdangerous's own age check: no link lives longer, whatever its row says.
MAX_AGE = max(expiry.lifetime for expiry in EXPIRIES)


class ShareProblem(ValueError):
    """Why a share link cannot be made, in words for the person asking."""


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key or "", salt=SALT)


def create_link(task: Task, expiry_key: str) -> tuple[ShareLink, str]:
    """A new link to ``task`` that ends after the chosen expiry, recorded in the audit log
    (not committed). Returns the row and the token for its URL."""
    expiry = EXPIRY_BY_KEY.get(expiry_key)
    if expiry is None:
        raise ShareProblem(f"choose how long the link lasts: {', '.join(EXPIRY_BY_KEY)}")
    now = utcnow()
    link = ShareLink(
        source=task.source,
        task_id=task.task_id,
        created_by=audit.current_actor()[0],
        created_at=now,
        expires_at=now + expiry.lifetime,
    )
    db.session.add(link)
    db.session.flush()
    audit.record(
        "share.create",
        audit.task_target(task.source, task.task_id),
        link_id=link.id,
        expires_at=link.expires_at.isoformat(),
    )
    return link, token_for(link)


def token_for(link: ShareLink) -> str:
    return str(_serializer().dumps(link.id))


def resolve(token: str, now: datetime | None = None) -> tuple[ShareLink, Task] | None:
    """The link and task a token opens, or ``None`` when it is tampered with, unknown, expired,
    revoked, or its task is no longer tracked."""
    try:
        link_id = _serializer().loads(token, max_age=int(MAX_AGE.total_seconds()))
    except BadSignature:  # SignatureExpired is one too
        return None
    if not isinstance(link_id, int):
        return None
    link = db.session.get(ShareLink, link_id)
    if link is None or not is_active(link, now):
        return None
    task = get_task(link.source, link.task_id)
    # A link made before the task was last tracked pointed at an earlier life of it, which
    # its sharer untracked (and so forgot): it does not open the new one.
    if task is None or task.tracked_at > link.created_at:
        return None
    return link, task


def is_active(link: ShareLink, now: datetime | None = None) -> bool:
    return link.revoked_at is None and link.expires_at > (now or utcnow())


def revoke(link: ShareLink) -> None:
    """End a link now and record it (not committed); the row stays, for the record."""
    if link.revoked_at is not None:
        return
    link.revoked_at = utcnow()
    audit.record("share.revoke", audit.task_target(link.source, link.task_id), link_id=link.id)


def _active() -> sa.Select[ShareLink]:
    return (
        sa.select(ShareLink)
        .where(ShareLink.revoked_at.is_(None), ShareLink.expires_at > utcnow())
        .order_by(ShareLink.expires_at, ShareLink.id)
    )


#: Built once: every task page an editor opens asks it.
_ACTIVE_FOR_TASK = (
    sa.select(ShareLink)
    .where(
        ShareLink.revoked_at.is_(None),
        ShareLink.expires_at > sa.bindparam("now"),
        ShareLink.source == sa.bindparam("source"),
        ShareLink.task_id == sa.bindparam("task_id"),
    )
    .order_by(ShareLink.expires_at, ShareLink.id)
)


def active_links_for(source: str, task_id: str) -> list[ShareLink]:
    """The task's links that still open it, soonest to expire first."""
    key = {"now": utcnow(), "source": source, "task_id": task_id}
    return list(db.session.scalars(_ACTIVE_FOR_TASK, key))


def all_active_links() -> list[ShareLink]:
    return list(db.session.scalars(_active()))


# -- keeping tokens out of the logs ----------------------------------------------------------

#: A share link's token in a logged URL or request line.
_TOKEN_IN_PATH = re.compile(r"(/share/)[^/\s?\"]+")
#: The loggers that write request lines: werkzeug's (``taskdeck run``) and gunicorn's access
#: log. Filters on a logger apply to every handler it writes to.
ACCESS_LOGGERS = ("werkzeug", "gunicorn.access")


class ShareTokenFilter(logging.Filter):
    """Writes ``/share/***`` for ``/share/<token>`` in log lines: the token opens a task to
    whoever holds it, and a log is read by more people than the link was sent to."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = _TOKEN_IN_PATH.sub(r"\1***", message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def hide_tokens_in_logs(handler_name: str) -> None:
    """Install :class:`ShareTokenFilter` on the access loggers and on the app's own log handler
    (for lines such as an error's path), once per process."""
    targets: list[logging.Filterer] = [logging.getLogger(name) for name in ACCESS_LOGGERS]
    targets += [h for h in logging.getLogger().handlers if h.get_name() == handler_name]
    for target in targets:
        if not any(isinstance(f, ShareTokenFilter) for f in target.filters):
            target.addFilter(ShareTokenFilter())
