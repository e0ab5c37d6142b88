"""Every request's gate: who is asking (:func:`identify`), and may they (:func:`authorize`).

Each view says the least role it needs with :func:`requires`; a view that says nothing needs
``viewer`` to read and ``editor`` to write (any method but GET/HEAD/OPTIONS). Views marked
:func:`public` (sign-in, health, static files, share links) let anyone in. The API and
``/metrics`` answer 401 to strangers; pages send them to sign in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import NoReturn
from typing import TypeVar

from flask import Flask
from flask import abort
from flask import current_app
from flask import g
from flask import jsonify
from flask import redirect
from flask import request
from flask import session
from flask import url_for
from werkzeug.wrappers import Response

from webapp.access import accounts
from webapp.access.principal import ANONYMOUS
from webapp.access.principal import Principal
from webapp.access.roles import Role
from webapp.access.tokens import principal_for_token

View = TypeVar("View", bound=Callable[..., Any])

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Paths that answer scripts: a 401 to authenticate, never a sign-in page.
MACHINE_PATHS = ("/api/", "/metrics")
#: Flask's own static route has no view of ours to mark.
PUBLIC_ENDPOINTS = frozenset({"static"})


def requires(role: Role) -> Callable[[View], View]:
    """Mark a view as needing at least ``role``, whatever the method."""

    def mark(view: View) -> View:
        view.required_role = role  # type: ignore[attr-defined]
        return view

    return mark


def public(view: View) -> View:
    """Mark a view that anyone may reach, signed in or not."""
    view.public = True  # type: ignore[attr-defined]
    return view


def is_machine_request() -> bool:
    return request.path.startswith(MACHINE_PATHS)


def endpoint_view() -> Callable[..., Any] | None:
    if request.endpoint is None:
        return None
    return current_app.view_functions.get(request.endpoint)


def is_public_endpoint() -> bool:
    view = endpoint_view()
    return request.endpoint in PUBLIC_ENDPOINTS or bool(getattr(view, "public", False))


def required_role() -> Role:
    marked: Role | None = getattr(endpoint_view(), "required_role", None)
    if marked is not None:
        return marked
    return Role.VIEWER if request.method in SAFE_METHODS else Role.EDITOR


def identify() -> Principal | None:
    """The principal behind this request, from its bearer token, session or basic auth."""
    mode = current_app.config["AUTH"]
    authorization = request.authorization
    if authorization is not None and authorization.type == "bearer" and is_machine_request():
        return principal_for_token(authorization.token or "")
    if mode == "none":
        return ANONYMOUS
    user_id = session.get("user_id")
    if user_id is not None:
        return accounts.principal_for_user_id(user_id)
    if authorization is not None and authorization.type == "basic":
        user = accounts.check_password(authorization.username or "", authorization.password or "")
        return accounts.principal_for_user(user) if user is not None else None
    return None


def authorize() -> Response | None:
    """Before every request: let it through, or answer why not."""
    g.principal = None
    if request.endpoint is None or is_public_endpoint():
        return None  # a 404 or a public page: nothing to protect
    principal = g.principal = identify()
    if principal is None:
        return sign_in_first()
    if principal.kind == "share":
        return refuse(403, "A share link opens one task and nothing else.")
    role = required_role()
    if not principal.can(role):
        return refuse(403, f"This needs the {role.label} role; you are {principal.role.label}.")
    return None


def sign_in_first() -> Response:
    if is_machine_request():
        refused = jsonify(
            {"error": "Sign in first (Authorization: Bearer <token>).", "status": 401}
        )
        refused.status_code = 401
        refused.headers["WWW-Authenticate"] = 'Bearer realm="Taskdeck"'
        return refused
    login = url_for("auth.login", next=request.full_path.rstrip("?"))
    if request.headers.get("HX-Request") == "true":
        response = Response("Sign in first.", status=401, mimetype="text/plain")
        # htmx follows HX-Redirect for fragment requests whose session ran out.
        response.headers["HX-Redirect"] = login
        return response
    return redirect(login)


def refuse(status: int, message: str) -> NoReturn:
    abort(status, description=message)


def init_app(app: Flask) -> None:
    app.before_request(authorize)

    @app.context_processor
    def principal_in_templates() -> dict[str, object]:
        principal: Principal | None = g.get("principal")
        return {
            "principal": principal,
            "current_user": principal if principal and principal.kind == "user" else None,
            "Role": Role,
        }
