"""API tokens: ``Authorization: Bearer <token>`` on ``/api/v1`` and ``/metrics``.

A token is ``tdk_`` plus 32 random bytes; only its SHA-256 digest is stored (the token has
far too much entropy for a slow hash to add anything), so a leaked database gives none away.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

import sqlalchemy as sa

from webapp.access import audit
from webapp.access.principal import Principal
from webapp.access.roles import Role
from webapp.db.models import ApiToken
from webapp.db.models import db
from webapp.db.models import utcnow

TOKEN_PREFIX = "tdk_"
#: ``last_used_at`` is written at most this often per token, not on every request.
LAST_USED_PRECISION = timedelta(minutes=1)


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def principal_for_token(token: str) -> Principal | None:
    """The principal a bearer token stands for, or ``None`` for an unknown or revoked one."""
    row = db.session.scalar(sa.select(ApiToken).where(ApiToken.token_hash == token_digest(token)))
    if row is None:
        return None
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_PRECISION:
        db.session.execute(
            sa.update(ApiToken).where(ApiToken.id == row.id).values(last_used_at=now)
        )
        db.session.commit()
    return Principal(name=row.name, role=Role.parse(row.role), kind="token", token_id=row.id)


# -- managing tokens (``taskdeck token …`` and ``/tokens``) ------------------------------------

MAX_NAME = 80
#: How many characters of a token lists show, to tell tokens apart (``tdk_`` and four more:
#: far too few to guess the rest from).
SHOWN_PREFIX = len(TOKEN_PREFIX) + 4


class TokenProblem(ValueError):
    """Why a token cannot be made or revoked, in words for the person asking."""


def create_token(name: str, role: Role, created_by: str | None = None) -> tuple[ApiToken, str]:
    """Make a token for ``role`` and record it in the audit log (not committed).

    Returns the row and the token itself, which is never stored: show it once, then forget it.
    """
    name = " ".join(name.split())
    if not name or len(name) > MAX_NAME:
        raise TokenProblem(f"give the token a name of 1 to {MAX_NAME} characters")
    if find_token(name) is not None:
        raise TokenProblem(f"a token called {name!r} exists already; revoke it or pick another")
    token = new_token()
    row = ApiToken(
        name=name,
        role=role.label,
        token_hash=token_digest(token),
        prefix=token[:SHOWN_PREFIX],
        created_by=created_by or audit.current_actor()[0],
        created_at=utcnow(),
    )
    db.session.add(row)
    db.session.flush()
    audit.record("token.create", name, role=role.label, token_id=row.id)
    return row, token


def revoke_token(name: str) -> ApiToken:
    """Delete the token called ``name`` (it stops working at once) and record it (not
    committed). The audit log keeps its history; the row goes."""
    row = find_token(name)
    if row is None:
        raise TokenProblem(f"there is no token called {name!r}")
    audit.record("token.revoke", row.name, role=row.role, token_id=row.id)
    db.session.delete(row)
    return row


def find_token(name: str) -> ApiToken | None:
    return db.session.scalar(sa.select(ApiToken).where(ApiToken.name == name))


def all_tokens() -> list[ApiToken]:
    return list(db.session.scalars(sa.select(ApiToken).order_by(ApiToken.name)))
