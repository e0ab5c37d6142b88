"""The account behind an OpenID Connect sign-in: found by ``issuer subject``, made on first
sign-in (without a password), and given a role from the provider's groups when configured.

The subject is the one stable key a provider gives a person (names and e-mail addresses
change), so an account is never matched by name: a new subject whose name is taken gets the
name with a number after it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from flask import g

from webapp.access import audit
from webapp.access.accounts import principal_for_user
from webapp.access.oidc import OidcSettings
from webapp.access.roles import Role
from webapp.db.models import User
from webapp.db.models import db
from webapp.db.models import utcnow

#: The ``username`` column's width.
MAX_USERNAME_LENGTH = 80
#: The ``email`` column's width.
MAX_EMAIL_LENGTH = 254
#: Tries at making a new account when another request takes its name at the same moment.
CREATE_ATTEMPTS = 3
_BLANKS = re.compile(r"\s+")


def subject_key(claims: Mapping[str, Any]) -> str:
    """``issuer subject``: the ``users.oidc_subject`` of the person the claims describe."""
    return f"{claims['iss']} {claims['sub']}"


def claim_values(claims: Mapping[str, Any], path: str) -> list[str]:
    """The values of a claim given as a dotted path (``realm_access.roles`` reads
    ``{"realm_access": {"roles": [...]}}``): a list's items, or a single text as one value."""
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return []
        value = value[part]
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [str(item) for item in value if isinstance(item, str | int)]
    return []


def role_from_claims(settings: OidcSettings, claims: Mapping[str, Any]) -> Role | None:
    """The role the provider's groups give, the highest that matches, else the default role;
    ``None`` when no roles claim is configured (roles are then given in Taskdeck)."""
    if settings.roles_claim is None:
        return None
    values = set(claim_values(claims, settings.roles_claim))
    if values & settings.admin_values:
        return Role.ADMIN
    if values & settings.editor_values:
        return Role.EDITOR
    return settings.default_role


def clean_username(text: str) -> str:
    """A name fit for the ``users`` table and the pages: no blanks or control characters."""
    printable = "".join(c for c in text if c.isprintable())
    return _BLANKS.sub("-", printable.strip())[:MAX_USERNAME_LENGTH]


def wanted_username(settings: OidcSettings, claims: Mapping[str, Any]) -> str:
    """The configured claim, else the e-mail address, else the subject."""
    for name in (settings.username_claim, "email", "sub"):
        value = claims.get(name)
        if isinstance(value, str | int) and clean_username(str(value)):
            return clean_username(str(value))
    return clean_username(str(claims["sub"])) or "user"


def free_username(wanted: str) -> str:
    """``wanted``, or ``wanted-2``, ``wanted-3``... whichever no one has yet."""
    name, number = wanted, 1
    while db.session.scalar(sa.select(User.id).where(User.username == name)) is not None:
        number += 1
        suffix = f"-{number}"
        name = wanted[: MAX_USERNAME_LENGTH - len(suffix)] + suffix
    return name


def email_from(claims: Mapping[str, Any]) -> str | None:
    email = claims.get("email")
    if isinstance(email, str) and 0 < len(email) <= MAX_EMAIL_LENGTH:
        return email
    return None


def find_by_subject(key: str) -> User | None:
    return db.session.scalar(sa.select(User).where(User.oidc_subject == key))


def sign_in(settings: OidcSettings, claims: Mapping[str, Any]) -> User:
    """The account of the person the verified ``claims`` describe, made if new, with its
    e-mail, role (when the provider gives roles) and ``last_login_at`` brought up to date;
    committed."""
    attempt = 1
    while True:
        try:
            return _update_or_create(settings, claims)
        except sa.exc.IntegrityError:
            # Another request made this account, or took its name, since we looked.
            db.session.rollback()
            if attempt == CREATE_ATTEMPTS:
                raise
            attempt += 1


def _update_or_create(settings: OidcSettings, claims: Mapping[str, Any]) -> User:
    key = subject_key(claims)
    role = role_from_claims(settings, claims)
    user = find_by_subject(key)
    created = user is None
    if user is None:
        user = User(
            username=free_username(wanted_username(settings, claims)),
            oidc_subject=key,
            role=(role or settings.default_role).label,
        )
        db.session.add(user)
        db.session.flush()
    previous_role = user.role
    if role is not None:
        # The provider's groups are the truth: leaving the admin group there ends being admin
        # here at the next sign-in.
        user.role = role.label
    user.email = email_from(claims) or user.email
    user.last_login_at = utcnow()
    # The audit log names the person now signed in as the one who acted, not "anonymous".
    g.principal = principal_for_user(user)
    if created:
        audit.record("user.create", user.username, role=user.role, via="OpenID Connect")
    elif user.role != previous_role:
        audit.record(
            "user.update",
            user.username,
            role=user.role,
            previous_role=previous_role,
            via="OpenID Connect groups",
        )
    db.session.commit()
    return user
