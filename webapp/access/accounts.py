"""People who sign in: passwords (hashed with werkzeug's scrypt) and their principals."""

from __future__ import annotations

import sqlalchemy as sa
from werkzeug.security import check_password_hash
from werkzeug.security import generate_password_hash

from webapp.access.principal import Principal
from webapp.access.roles import Role
from webapp.db.models import User
from webapp.db.models import db

MIN_PASSWORD_LENGTH = 10


def users_exist() -> bool:
    return db.session.scalar(sa.select(sa.exists().select_from(User))) or False


def find_user(username: str) -> User | None:
    return db.session.scalar(sa.select(User).where(User.username == username))


def hash_password(password: str) -> str:
    return generate_password_hash(password)


def check_password(username: str, password: str) -> User | None:
    """The user with this name and password, or ``None``."""
    user = find_user(username)
    if user is None or not user.password_hash:
        return None
    return user if check_password_hash(user.password_hash, password) else None


def principal_for_user(user: User) -> Principal:
    return Principal(name=user.username, role=Role.parse(user.role), kind="user", user_id=user.id)


def principal_for_user_id(user_id: object) -> Principal | None:
    """The signed-in person a session names, read afresh so a new role or a removed account
    applies at the next request."""
    if not isinstance(user_id, int):
        return None
    user = db.session.get(User, user_id)
    return principal_for_user(user) if user is not None else None
