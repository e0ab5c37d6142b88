"""``/sources``: every source with its health and settings; adding and editing UI sources."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from flask import Response
from flask import abort
from flask import current_app
from flask import flash
from flask import make_response
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for

from webapp.config import CREDENTIAL_FIELDS
from webapp.config import ConfigError
from webapp.config import SourceConfig
from webapp.config import build_source
from webapp.db.setup import save_database_source
from webapp.providers import PROVIDERS
from webapp.sources.health import source_overview
from webapp.sources.registry import registry

bp = Blueprint("sources", __name__)

#: The settings the add/edit form offers: (field, label, input type, hint).
FORM_FIELDS: list[tuple[str, str, str, str]] = [
    ("base_url", "Base URL", "url", "The server's root, plus a proxy's path prefix if any."),
    ("poll_interval", "Poll interval (s)", "number", "Seconds between polls of an active task."),
    ("timeout", "Timeout (s)", "number", ""),
    ("max_concurrency", "Concurrent requests", "number", ""),
    ("rate_limit", "Rate limit (requests/s)", "number", "Empty: none of our own (NCLUE: 1)."),
    ("ui_url", "UI URL", "url", "Conductor: where /execution/{workflowId} pages are."),
    ("timezone", "Time zone", "text", "For upstream times sent without one (NCLUE)."),
    ("tenant_id", "Tenant id", "text", "OpenSearch ML Commons multi-tenancy."),
    ("namespace", "Namespace", "text", "Mixpeek X-Namespace."),
    ("ca_bundle", "CA bundle path", "text", ""),
]
ENV_FIELDS = sorted({f for fields in CREDENTIAL_FIELDS.values() for f in fields})


@bp.get("/sources")
def index() -> str:
    """Sources, their health and their settings."""
    return render_template(
        "sources/list.html",
        sources=source_overview(),
        retention_days=current_app.config.get("RETENTION_DAYS"),
    )


@bp.get("/sources/new")
def new() -> str:
    """The form to add a source (stored in the database)."""
    return render_template("sources/form.html", **form_context({"poll_interval": 5}, None))


@bp.get("/sources/<name>/edit")
def edit(name: str) -> str:
    """The form to edit a source added from the UI."""
    source = editable_source_or_404(name)
    values = source.model_dump(exclude={"credentials", "origin"}, exclude_none=True)
    return render_template("sources/form.html", **form_context(values, source))


@bp.post("/sources")
def create() -> Response:
    """Add a source from the form."""
    return save(None)


@bp.post("/sources/<name>")
def update(name: str) -> Response:
    """Save an edited source."""
    return save(editable_source_or_404(name))


def save(existing: SourceConfig | None) -> Response:
    values = form_values(request.form)
    if existing is not None:
        values["name"] = existing.name
    known = registry()
    error = None
    if existing is None and values.get("name") in known:
        error = f"source {values['name']!r}: field 'name': already used by another source"
    else:
        try:
            source = build_source(values, origin="database")
        except ConfigError as exc:
            error = str(exc)
    if error is not None:
        context = form_context(values, existing)
        return make_response(render_template("sources/form.html", error=error, **context), 422)
    save_database_source(source)
    flash(f"Source {source.name} saved; its tasks are fetched with the new settings.", "info")
    return redirect(url_for("sources.index") + f"#source-{source.name}", 303)


def editable_source_or_404(name: str) -> SourceConfig:
    source = registry().get(name)
    if source is None:
        abort(404, description=f"There is no source called “{name}”.")
    if source.origin != "database":
        abort(
            403,
            description=f"The source {name} is pinned by the {source.origin} configuration; "
            "change it there.",
        )
    return source


def form_values(form: Any) -> dict[str, Any]:
    """The submitted settings, without empty fields (so defaults apply)."""
    values: dict[str, Any] = {}
    for field in ["name", "provider", *[f for f, *_ in FORM_FIELDS], *ENV_FIELDS]:
        value = form.get(field, "").strip()
        if value:
            values[field] = value
    values["verify_tls"] = form.get("verify_tls") == "on"
    return values


def form_context(values: dict[str, Any], existing: SourceConfig | None) -> dict[str, Any]:
    return {
        "values": values,
        "existing": existing,
        "providers": PROVIDERS,
        "form_fields": FORM_FIELDS,
        "env_fields": ENV_FIELDS,
        "credential_fields": CREDENTIAL_FIELDS,
    }
