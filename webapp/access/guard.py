"""Every request's gate: who is asking (:func:`identify`), and may they (:func:`authorize`).

Each view says the least role it needs with :func:`requires`; a view that says nothing needs
``viewer`` to read and ``editor`` to write (any method but GET/HEAD/OPTIONS). Views marked
:func:`public` (sign-in, health, static files, share links) let anyone in. The API and
``/metrics`` answer 401 to strangers; pages send them to sign in, or, with ``local`` sign-in
and no user yet, explain how to make the first admin. With ``TASKDECK_READ_ONLY`` every write
but signing in and out is refused, whoever asks.
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
from flask import render_template
from flask import request
from flask import session
from flask import url_for
from werkzeug.wrappers import Response

from webapp.access import accounts
from webapp.access import proxy
from webapp.access import throttle
from webapp.access.principal import ANONYMOUS
from webapp.access.principal import Principal
from webapp.access.principal import current_principal
from webapp.access.roles import Role
from webapp.access.settings import is_read_only
from webapp.access.tokens import principal_for_token

View = TypeVar("View", bound=Callable[..., Any])

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Paths that answer scripts: a 401 to authenticate, never a sign-in page.
MACHINE_PATHS = ("/api/", "/metrics")
#: Flask's own static route has no view of ours to mark.
PUBLIC_ENDPOINTS = frozenset({"static"})
#: Writes that stay open under ``TASKDECK_READ_ONLY``: they change only the caller's session.
SESSION_ENDPOINTS = frozenset({"auth.login", "auth.logout"})
READ_ONLY_MESSAGE = (
    "This dashboard is read-only (TASKDECK_READ_ONLY): it shows tasks but changes nothing."
)
FIRST_ADMIN_MESSAGE = (
    "No one can sign in yet: create the first admin with `taskdeck create-user NAME --role admin`."
)


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
    """The principal behind this request: its bearer token, else what the sign-in mode says
    (a trusted proxy's header; the session of a local sign-in; HTTP basic auth)."""
    mode = current_app.config["AUTH"]
    authorization = request.authorization
    if authorization is not None and authorization.type == "bearer" and is_machine_request():
        return principal_for_token(authorization.token or "")
    if mode == "none":
        return ANONYMOUS
    if mode == "proxy":
        found = proxy.identify()
        if isinstance(found, proxy.ProxyRefusal):
            g.proxy_refusal = found
            return None
        return found
    user_id = session.get("user_id")
    if user_id is not None:
        return accounts.principal_for_user_id(user_id)
    if authorization is not None and authorization.type == "basic" and mode == "local":
        return basic_auth(authorization.username or "", authorization.password or "")
    return None


def basic_auth(username: str, password: str) -> Principal | None:
    """HTTP basic auth for scripts, throttled like the sign-in form."""
    address = proxy.client_address()
    if throttle.blocked_until(username, address) is not None:
        refuse(429, "Too many failed sign-ins; try again later.")
    user = accounts.check_password(username, password)
    if user is None:
        throttle.record_failure(username, address)
        return None
    return accounts.principal_for_user(user)


def authorize() -> Response | None:
    """Before every request: let it through, or answer why not."""
    g.principal = None
    if request.endpoint is None:
        return None  # a 404: nothing to protect
    public = is_public_endpoint()
    # Identified first, so that even a refusal's page shows who is signed in.
    principal = g.principal = None if public else identify()
    if (
        request.method not in SAFE_METHODS
        and is_read_only()
        and request.endpoint not in SESSION_ENDPOINTS
    ):
        return refuse(403, READ_ONLY_MESSAGE)
    if public:
        return None
    if principal is None:
        return sign_in_first()
    if principal.kind == "share":
        return refuse(403, "A share link opens one task and nothing else.")
    role = required_role()
    if not principal.can(role):
        return refuse(403, f"This needs the {role.label} role; you are {principal.role.label}.")
    return None


def sign_in_first() -> Response:
    refusal: proxy.ProxyRefusal | None = g.get("proxy_refusal")
    if refusal is not None:
        return refuse(refusal.status, refusal.message)
    if current_app.config["AUTH"] == "local" and not accounts.users_exist():
        return first_admin_only()
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


def first_admin_only() -> Response:
    """With ``local`` sign-in and nobody to sign in as, how to make the first admin, and
    nothing else."""
    if is_machine_request():
        refused = jsonify({"error": FIRST_ADMIN_MESSAGE, "status": 401})
        refused.status_code = 401
        return refused
    return Response(render_template("auth/first_admin.html"), status=503)


def refuse(status: int, message: str) -> NoReturn:
    abort(status, description=message)


def may(role: Role) -> bool:
    """Whether the current principal may use a control that writes with ``role``: what
    templates ask before showing a form or button."""
    principal = current_principal()
    return principal is not None and principal.can(role) and not is_read_only()


def init_app(app: Flask) -> None:
    app.before_request(authorize)

    @app.context_processor
    def principal_in_templates() -> dict[str, object]:
        principal: Principal | None = g.get("principal")
        return {
            "principal": principal,
            "current_user": principal if principal and principal.kind == "user" else None,
            "Role": Role,
            "may": may,
            "read_only": is_read_only(),
            "auth_mode": current_app.config["AUTH"],
        }
