"""People who sign in: passwords (hashed with werkzeug's scrypt), roles, and their principals.

Every change to the ``users`` table goes through here, for the web page (``/users``), the
command line and the sign-in modes that make accounts on first sight.
"""

from __future__ import annotations

import functools
import secrets
from datetime import timedelta
from typing import Literal

import sqlalchemy as sa
from werkzeug.security import check_password_hash
from werkzeug.security import generate_password_hash

from webapp.access import audit
from webapp.access.principal import Principal
from webapp.access.roles import Role
from webapp.db.models import User
from webapp.db.models import db
from webapp.db.models import utcnow

MIN_PASSWORD_LENGTH = 10
#: The ``username`` column's width.
MAX_USERNAME_LENGTH = 80
#: A proxy names its user on every request; their last sign-in is written at most this often.
SEEN_PRECISION = timedelta(minutes=5)

UserKind = Literal["local", "proxy", "oidc"]


class AccountError(ValueError):
    """A change to the accounts that is refused, in words for the person who asked."""


def users_exist() -> bool:
    return db.session.scalar(sa.select(sa.exists().select_from(User))) or False


def find_user(username: str) -> User | None:
    return db.session.scalar(sa.select(User).where(User.username == username))


def list_users() -> list[User]:
    return list(db.session.scalars(sa.select(User).order_by(User.username)))


def user_kind(user: User) -> UserKind:
    """How someone signs in: with a password here, through an OpenID provider, or named by a
    trusted proxy (an account without either)."""
    if user.password_hash:
        return "local"
    return "oidc" if user.oidc_subject else "proxy"


def hash_password(password: str) -> str:
    return generate_password_hash(password)


@functools.cache
def _stand_in_hash() -> str:
    return generate_password_hash(secrets.token_hex(16))


def check_password(username: str, password: str) -> User | None:
    """The user with this name and password, or ``None``."""
    user = find_user(username)
    if user is None or not user.password_hash:
        # Hash anyway, so the answer takes as long as for a real name: how long a refusal takes
        # does not tell which names exist.
        check_password_hash(_stand_in_hash(), password)
        return None
    return user if check_password_hash(user.password_hash, password) else None


def check_username(username: str) -> str:
    """The name without surrounding blanks; raises :class:`AccountError` if it cannot be one."""
    name = username.strip()
    if not name:
        raise AccountError("give a user name")
    if len(name) > MAX_USERNAME_LENGTH:
        raise AccountError(f"a user name has at most {MAX_USERNAME_LENGTH} characters")
    if any(c.isspace() or not c.isprintable() for c in name):
        raise AccountError("a user name has no spaces or control characters")
    return name


def check_new_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
    return password


def create_user(
    username: str, role: Role, password: str | None = None, email: str | None = None
) -> User:
    """Add someone (not committed); ``password`` ``None`` for someone who signs in elsewhere."""
    name = check_username(username)
    if find_user(name) is not None:
        raise AccountError(f"user {name!r} exists")
    user = User(username=name, role=role.label, email=email or None)
    if password is not None:
        user.password_hash = hash_password(check_new_password(password))
    db.session.add(user)
    return user


def set_password(user: User, password: str) -> None:
    user.password_hash = hash_password(check_new_password(password))


def admin_count() -> int:
    return db.session.scalar(sa.select(sa.func.count(User.id)).where(User.role == "admin")) or 0


def _keep_an_admin(user: User, what: str) -> None:
    if user.role == Role.ADMIN.label and admin_count() <= 1:
        raise AccountError(
            f"{user.username} is the last admin: make someone else admin before {what}"
        )


def set_role(user: User, role: Role) -> None:
    """Change someone's role (not committed); the last admin stays one."""
    if role is not Role.ADMIN:
        _keep_an_admin(user, "changing their role")
    user.role = role.label


def remove_user(user: User) -> None:
    """Remove someone (not committed); their session ends at its next request."""
    _keep_an_admin(user, "removing them")
    db.session.delete(user)


def record_sign_in(user: User) -> None:
    user.last_login_at = utcnow()


def outside_user(username: str, email: str | None, role: Role) -> User:
    """The account of someone an outside sign-in (a trusted proxy) names, made with ``role`` the
    first time they come. Committed; raises :class:`AccountError` for a name that cannot be one."""
    name = check_username(username)
    user = find_user(name)
    if user is None:
        user = User(username=name, role=role.label, email=email or None, last_login_at=utcnow())
        db.session.add(user)
        audit.record("user.create", name, actor=(name, "user"), role=role.label, via="proxy")
        try:
            db.session.commit()
        except sa.exc.IntegrityError:
            # Another process made the same account between our look and our insert.
            db.session.rollback()
            found = find_user(name)
            if found is None:
                raise
            return found
        return user
    now = utcnow()
    if user.last_login_at is None or now - user.last_login_at >= SEEN_PRECISION:
        user.last_login_at = now
        if email and not user.email:
            user.email = email
        db.session.commit()
    return user


def principal_for_user(user: User) -> Principal:
    return Principal(name=user.username, role=Role.parse(user.role), kind="user", user_id=user.id)


def principal_for_user_id(user_id: object) -> Principal | None:
    """The signed-in person a session names, read afresh so a new role or a removed account
    applies at the next request."""
    if not isinstance(user_id, int):
        return None
    user = db.session.get(User, user_id)
    return principal_for_user(user) if user is not None else None
