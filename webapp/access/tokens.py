"""API tokens: ``Authorization: Bearer <token>`` on ``/api/v1`` and ``/metrics``.

A token is ``tdk_`` plus 32 random bytes; only its SHA-256 digest is stored (the token has
far too much entropy for a slow hash to add anything), so a leaked database gives none away.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

import sqlalchemy as sa

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
