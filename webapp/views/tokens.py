"""``/tokens``: admins list, create and revoke API tokens, and see every active share link."""

from __future__ import annotations

from flask import Blueprint
from flask import flash
from flask import make_response
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from werkzeug.wrappers import Response

from webapp.access import shares
from webapp.access import tokens
from webapp.access.guard import requires
from webapp.access.roles import ROLE_NAMES
from webapp.access.roles import Role
from webapp.db.models import ApiToken
from webapp.db.models import db

bp = Blueprint("tokens", __name__, url_prefix="/tokens")


def _page(status: int = 200, **extra: object) -> Response:
    return make_response(
        render_template(
            "tokens/list.html",
            tokens=tokens.all_tokens(),
            share_links=shares.all_active_links(),
            roles=ROLE_NAMES,
            **extra,
        ),
        status,
    )


@bp.get("")
@requires(Role.ADMIN)
def index() -> Response:
    """The API tokens (never the tokens themselves) and the share links still open."""
    return _page()


@bp.post("")
@requires(Role.ADMIN)
def create() -> Response:
    """Make a token and show it, this once."""
    name = request.form.get("name", "")
    try:
        row, token = tokens.create_token(name, Role.parse(request.form.get("role", "viewer")))
    except (tokens.TokenProblem, ValueError) as exc:
        return _page(422, error=str(exc), form={"name": name})
    db.session.commit()
    response = make_response(render_template("tokens/created.html", row=row, token=token))
    # The one page that carries a token: keep it out of every cache, the browser's included.
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/<int:token_id>/revoke")
@requires(Role.ADMIN)
def revoke(token_id: int) -> Response:
    """Revoke a token: requests carrying it are refused from now on."""
    row = db.get_or_404(ApiToken, token_id, description="There is no such token (revoked?).")
    tokens.revoke_token(row.name)
    db.session.commit()
    flash(f"Revoked the token {row.name}.", "info")
    return redirect(url_for("tokens.index"), 303)
