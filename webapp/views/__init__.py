"""Blueprints, one per area, and the error pages. Blueprint modules never import each other."""

from __future__ import annotations

from flask import Flask
from flask import Response
from flask import jsonify
from flask import render_template
from flask import request
from werkzeug.exceptions import HTTPException

from webapp.sources.registry import registry
from webapp.views import api
from webapp.views import audit
from webapp.views import auth
from webapp.views import health
from webapp.views import metrics
from webapp.views import notifications
from webapp.views import oidc
from webapp.views import preferences
from webapp.views import saved_views
from webapp.views import share
from webapp.views import sources
from webapp.views import tasks
from webapp.views import tokens
from webapp.views import users
from webapp.web import csrf
from webapp.web import formatting
from webapp.web import urls
from webapp.web.urls import RawPathMiddleware
from webapp.web.urls import TaskIdConverter

#: What a person sees when even the error page cannot be drawn: never the error itself.
PLAIN_500 = "Taskdeck hit an error showing this page. It has been logged.\n"

BLUEPRINTS = (
    tasks,
    sources,
    api,
    health,
    metrics,
    preferences,
    saved_views,
    auth,
    tokens,
    share,
    audit,
    users,
    oidc,
    notifications,
)


def init_app(app: Flask) -> None:
    app.url_map.converters["taskid"] = TaskIdConverter
    app.wsgi_app = RawPathMiddleware(app.wsgi_app)  # type: ignore[method-assign]
    for module in BLUEPRINTS:
        app.register_blueprint(module.bp)
    csrf.init_app(app)
    formatting.init_app(app)
    urls.init_app(app)

    @app.context_processor
    def sources_in_templates() -> dict[str, object]:
        return {"all_sources": list(registry(app))}

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
        try:
            return render_template("errors/500.html"), 500
        except Exception:  # the page itself failed (say, the database is gone): say less
            app.logger.exception("the error page failed too")
            return Response(PLAIN_500, 500, mimetype="text/plain")
