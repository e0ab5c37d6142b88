"""Who may do what: sign-in modes, roles, API tokens, share links and the audit log."""

from __future__ import annotations

from flask import Flask

from webapp.access import guard
from webapp.access import oidc
from webapp.access import settings


def init_app(app: Flask) -> None:
    settings.init_app(app)
    guard.init_app(app)
    oidc.init_app(app)
