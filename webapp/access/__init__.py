"""Who may do what: sign-in modes, roles, API tokens, share links and the audit log."""

from __future__ import annotations

from flask import Flask

from webapp.access import guard
from webapp.access import oidc


def init_app(app: Flask) -> None:
    guard.init_app(app)
    oidc.init_app(app)
