"""Blueprints, one per area, plus the error pages and CSRF protection for forms."""

from __future__ import annotations

import secrets

from flask import Flask
from flask import abort
from flask import jsonify
from flask import render_template
from flask import request
from flask import session
from werkzeug.exceptions import HTTPException

from webapp import formatting
from webapp.urls import RawPathMiddleware
from webapp.urls import TaskIdConverter

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


def csrf_token() -> str:
    token = session.get(CSRF_FIELD)
    if token is None:
        token = session[CSRF_FIELD] = secrets.token_urlsafe(24)
    return token


def init_app(app: Flask) -> None:
    from webapp.views import api
    from webapp.views import health
    from webapp.views import preferences
    from webapp.views import saved_views
    from webapp.views import sources
    from webapp.views import task_export  # noqa: F401 - adds the export route to tasks.bp
    from webapp.views import task_import  # noqa: F401 - adds the import routes to tasks.bp
    from webapp.views import task_list  # noqa: F401 - adds the list routes to tasks.bp
    from webapp.views import tasks

    app.url_map.converters["taskid"] = TaskIdConverter
    app.wsgi_app = RawPathMiddleware(app.wsgi_app)  # type: ignore[method-assign]
    for module in (tasks, sources, api, health, preferences, saved_views):
        app.register_blueprint(module.bp)
    app.add_template_global(csrf_token)
    formatting.init_app(app)

    @app.context_processor
    def sources_in_templates() -> dict[str, object]:
        return {"all_sources": list(app.extensions["taskdeck.sources"])}

    @app.before_request
    def check_csrf() -> None:
        if request.method in ("GET", "HEAD", "OPTIONS") or app.config.get("CSRF_DISABLED"):
            return
        sent = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD)
        if not sent or not secrets.compare_digest(sent, session.get(CSRF_FIELD, "")):
            abort(
                400,
                description=(
                    "The form expired or came from another site; reload the page and try again."
                ),
            )

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):  # type: ignore[no-untyped-def]
        if request.path.startswith("/api/"):
            response = jsonify({"error": error.description, "status": error.code})
            response.status_code = error.code or 500
            return response
        template = "errors/404.html" if error.code == 404 else "errors/error.html"
        return render_template(template, error=error), error.code

    @app.errorhandler(Exception)
    def server_error(error: Exception):  # type: ignore[no-untyped-def]
        app.logger.exception("unhandled error on %s", request.path)
        if request.path.startswith("/api/"):
            return jsonify({"error": "internal error", "status": 500}), 500
        return render_template("errors/500.html"), 500
