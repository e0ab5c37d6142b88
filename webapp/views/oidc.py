"""Signing in with an OpenID Connect provider (``TASKDECK_AUTH=oidc``): ``/login/oidc`` starts
the flow at the provider, ``/login/oidc/callback`` is where the provider sends the browser back.
Both answer 404 in the other sign-in modes."""

from __future__ import annotations

import logging
from typing import NoReturn

from flask import Blueprint
from flask import abort
from flask import redirect
from flask import request
from flask import session
from werkzeug.wrappers import Response

from webapp.access import oidc
from webapp.access import oidc_accounts
from webapp.access.guard import public

logger = logging.getLogger(__name__)

bp = Blueprint("oidc", __name__)


@bp.get("/login/oidc")
@public
def start() -> Response:
    """Go to the provider to sign in."""
    if not oidc.is_enabled():
        abort(404)
    try:
        return oidc.start_sign_in(request.args.get("next"))
    except oidc.SignInError as exc:
        failed(exc)


@bp.get("/login/oidc/callback")
@public
def callback() -> Response:
    """Back from the provider: sign in the person it vouches for."""
    if not oidc.is_enabled():
        abort(404)
    settings = oidc.oidc_client().settings
    try:
        claims, next_path = oidc.finish_sign_in()
    except oidc.SignInError as exc:
        failed(exc)
    user = oidc_accounts.sign_in(settings, claims)
    # A new session for the signed-in person: nothing set before (by whoever had this browser,
    # or planted by someone else) carries over.
    session.clear()
    session.permanent = True
    session["user_id"] = user.id
    logger.info("%s signed in through %s", user.username, settings.provider_name)
    return redirect(next_path, 303)


def failed(exc: oidc.SignInError) -> NoReturn:
    # The reason goes to the log, for whoever runs Taskdeck; the person gets words, never a trace.
    logger.warning("OpenID Connect sign-in failed: %s", exc.reason)
    abort(exc.status, description=exc.message)
