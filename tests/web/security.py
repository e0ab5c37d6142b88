"""Helpers of the security tests: API tokens made directly in the database."""

from __future__ import annotations

from flask import Flask

from webapp.access.roles import Role
from webapp.access.tokens import create_token
from webapp.db.models import db


def add_api_token(app: Flask, name: str = "ci", role: str = "editor") -> str:
    """A new API token (its digest stored, as the CLI does); the token itself."""
    with app.app_context():
        _row, token = create_token(name, Role.parse(role), created_by="tests")
        db.session.commit()
    return token
