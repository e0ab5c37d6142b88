"""Helpers of the security tests: API tokens made directly in the database."""

from __future__ import annotations

from flask import Flask

from webapp.access.tokens import new_token
from webapp.access.tokens import token_digest
from webapp.db.models import ApiToken
from webapp.db.models import db


def add_api_token(app: Flask, name: str = "ci", role: str = "editor") -> str:
    """A new API token's row (its digest only, as the CLI stores it); the token itself."""
    token = new_token()
    with app.app_context():
        db.session.add(
            ApiToken(name=name, role=role, token_hash=token_digest(token), prefix=token[:8])
        )
        db.session.commit()
    return token
