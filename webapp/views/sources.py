"""``/sources``: every source with its health and settings (anyone signed in); adding and editing
UI sources (admins)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Blueprint
from flask import abort
from flask import current_app
from flask import flash
from flask import make_response
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from jinja2_fragments.flask import render_block
from werkzeug.wrappers import Response

from webapp.access import audit
from webapp.access.guard import requires
from webapp.access.principal import current_principal
from webapp.access.roles import Role
from webapp.config import ConfigError
from webapp.config import SourceConfig
from webapp.config import build_source
from webapp.db.models import Follow
from webapp.db.models import db
from webapp.db.setup import save_database_source
from webapp.db.setup import typed_secrets
from webapp.follows import manage as follows
from webapp.follows import status as follow_status
from webapp.follows.status import FollowFormError
from webapp.logs import redactor
from webapp.overdue import setting as overdue_setting
from webapp.providers import provider_specs
from webapp.sources import sealed
from webapp.sources.health import source_overview
from webapp.sources.registry import registry
from webapp.sources.sealed import secrets_box
from webapp.web.htmx import STOP_POLLING

bp = Blueprint("sources", __name__)


@dataclass(frozen=True)
class FormField:
    """One setting the add/edit form offers."""

    name: str
    label: str
    #: ``text``, ``url``, ``number`` or ``checkbox`` (on or off).
    kind: str
    hint: str = ""


def form_fields() -> list[FormField]:
    """Every source's settings, then the ones each provider adds (from its spec)."""
    specs = provider_specs()
    polls = " or ".join(sorted({f"{s.default_poll_interval:g}" for s in specs}))
    rates = ", ".join(f"{s.label}: {s.default_rate_limit:g}" for s in specs if s.default_rate_limit)
    zoneless = ", ".join(s.label for s in specs if s.zoneless_times)
    own: dict[str, FormField] = {}
    for spec in specs:
        for setting in spec.settings:
            hint = f"{spec.label}: {setting.hint}"
            known = own.get(setting.name)
            own[setting.name] = FormField(
                setting.name, setting.label, setting.kind, f"{known.hint} {hint}" if known else hint
            )
    return [
        FormField(
            "base_url", "Base URL", "url", "The server's root, plus a proxy's path prefix if any."
        ),
        FormField(
            "poll_interval",
            "Poll interval (s)",
            "number",
            f"Seconds between polls of an active task (empty: {polls}).",
        ),
        FormField("timeout", "Timeout (s)", "number"),
        FormField("max_concurrency", "Concurrent requests", "number"),
        FormField(
            "rate_limit",
            "Rate limit (requests/s)",
            "number",
            "Empty: none of our own" + (f" ({rates})." if rates else "."),
        ),
        FormField(
            "timezone",
            "Time zone",
            "text",
            "For upstream times sent without one" + (f" ({zoneless})." if zoneless else "."),
        ),
        FormField(
            "overdue_after",
            "Overdue after (s)",
            "text",
            "Seconds an active task may run, e.g. 900, or per type: DEPLOY_MODEL=600, *=1800. "
            "Empty: learned from the history of its type.",
        ),
        *own.values(),
        FormField("ca_bundle", "CA bundle path", "text"),
        FormField(
            "track_related",
            "Track linked tasks",
            "checkbox",
            "Track the tasks this source's tasks lead to (named in their payloads or listed "
            "beside them upstream) as soon as they are found.",
        ),
    ]


def credential_fields() -> list[tuple[str, list[str]]]:
    """Every ``*_env`` field some provider reads, with the names of the providers reading it."""
    readers: dict[str, list[str]] = {}
    for spec in provider_specs():
        for field in spec.credentials.fields:
            readers.setdefault(field, []).append(spec.name)
    return sorted(readers.items())


@bp.get("/sources")
def index() -> str:
    """Sources, their health and their settings."""
    return render_template("sources/list.html", **list_context())


def list_context(follow_error: FollowFormError | None = None) -> dict[str, Any]:
    sources = source_overview()
    return {
        "sources": sources,
        "problems": registry().problems(),
        "retention_days": current_app.config.get("RETENTION_DAYS"),
        "follows": {
            s["config"].name: follow_status.context(
                s["config"].name,
                follow_error if follow_error and follow_error.source == s["config"].name else None,
            )
            for s in sources
        },
        "follow_error": follow_error,
    }


@bp.get("/sources/new")
@requires(Role.ADMIN)
def new() -> str:
    """The form to add a source (stored in the database)."""
    return render_template("sources/form.html", **form_context({}, None))


@bp.get("/sources/<name>/edit")
@requires(Role.ADMIN)
def edit(name: str) -> str:
    """The form to edit a source added from the UI."""
    source = editable_source_or_404(name)
    values = source.model_dump(exclude={"credentials", "origin"}, exclude_none=True)
    if source.overdue_after is not None:
        values["overdue_after"] = overdue_setting.as_text(source.overdue_after)
    return render_template("sources/form.html", **form_context(values, source))


@bp.post("/sources")
@requires(Role.ADMIN)
def create() -> Response:
    """Add a source from the form."""
    return save(None)


@bp.post("/sources/<name>")
@requires(Role.ADMIN)
def update(name: str) -> Response:
    """Save an edited source."""
    return save(editable_source_or_404(name))


def save(existing: SourceConfig | None) -> Response:
    values = form_values(request.form)
    if existing is not None:
        values["name"] = existing.name
    known = registry()
    error = None
    typed = typed_values(request.form, values, existing)
    if existing is None and values.get("name") in known:
        error = f"source {values['name']!r}: field 'name': already used by another source"
    elif typed and secrets_box() is None:
        error = TYPED_SECRETS_NEED_A_KEY
    else:
        try:
            source = build_source(
                values,
                origin="database",
                typed=typed,
                allow_link_local=current_app.config["ALLOW_LINK_LOCAL"],
            )
        except ConfigError as exc:
            error = str(exc)
    if error is not None:
        context = form_context(values, existing)
        return make_response(render_template("sources/form.html", error=error, **context), 422)
    audit.record(
        "source.create" if existing is None else "source.update",
        source.name,
        provider=source.provider,
        changed=changed_settings(existing, source),
    )
    save_database_source(source)
    flash(f"Source {source.name} saved; its tasks are fetched with the new settings.", "info")
    return redirect(url_for("sources.index") + f"#source-{source.name}", 303)


TYPED_SECRETS_NEED_A_KEY = (
    f"Typed secrets are stored encrypted, which needs {sealed.SETTING} on the server "
    "(see the README's Security section); name an environment variable instead."
)


def typed_values(
    form: Any, values: dict[str, Any], existing: SourceConfig | None
) -> dict[str, str]:
    """The secrets typed in the form, over the ones ``existing`` stores: a blank field keeps
    the stored one, "clear" drops it, and naming a variable for the field replaces it."""
    stored = typed_secrets(existing) if existing is not None else {}
    typed: dict[str, str] = {}
    for field, _ in credential_fields():
        entered = form.get(f"secret-{field}", "")
        if entered:
            redactor.add([entered])
            typed[field] = entered
        elif field in stored and field not in values and form.get(f"clear-{field}") != "on":
            typed[field] = stored[field]
    return typed


def changed_settings(existing: SourceConfig | None, source: SourceConfig) -> list[str]:
    """The names of the settings a save changed; never their values, which may name or hold
    credentials."""
    after = source.model_dump(exclude={"origin"})
    before = existing.model_dump(exclude={"origin"}) if existing is not None else {}
    changed = {key for key, value in after.items() if before.get(key) != value}
    # Credentials are left out of dumps; which ones changed is still worth a line.
    old_credentials = existing.credentials if existing is not None else {}
    changed.update(
        f"credentials.{name}"
        for name in set(source.credentials) | set(old_credentials)
        if source.credentials.get(name) != old_credentials.get(name)
    )
    return sorted(changed)


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
    fields = form_fields()
    settings = [field.name for field in fields if field.kind != "checkbox"]
    for field in ["name", "provider", *settings, *(name for name, _ in credential_fields())]:
        value = form.get(field, "").strip()
        if value:
            values[field] = value
    values["verify_tls"] = form.get("verify_tls") == "on"
    for checkbox in (field.name for field in fields if field.kind == "checkbox"):
        values[checkbox] = form.get(checkbox) == "on"
    return values


def form_context(values: dict[str, Any], existing: SourceConfig | None) -> dict[str, Any]:
    return {
        "values": values,
        "existing": existing,
        "providers": provider_specs(),
        "form_fields": form_fields(),
        "credential_fields": credential_fields(),
        # Which fields hold a typed secret: names only, the form never shows a secret.
        "stored_secrets": set(typed_secrets(existing)) if existing is not None else set(),
        "secrets_enabled": secrets_box() is not None,
        "secrets_setting": sealed.SETTING,
    }


# -- the source's followed query (webapp/follows/manage.py checks every change) ----------------
FOLLOW_TEMPLATE = "sources/_follow.html"


@bp.get("/sources/<name>/follow")
def follow_state(name: str) -> Response:
    """The follow's status part, which replaces itself while a run is due or under way; 286
    (stop polling) once nothing is pending and no run is due soon."""
    if name not in registry():
        abort(404, description=f"There is no source called “{name}”.")
    context = follow_status.context(name)
    html = render_block(FOLLOW_TEMPLATE, "follow_status", **context)
    return make_response(html, 200 if context["poll"] else STOP_POLLING)


@bp.post("/sources/<name>/follow")
@requires(Role.ADMIN)
def follow_add(name: str) -> Response:
    """Follow a query on the source (added here, so editable here)."""
    form = request.form
    try:
        settings = follows.read_settings(
            name, form.get("query"), form.get("interval"), form.get("backfill")
        )
        principal = current_principal()
        follow = follows.add(name, settings, actor=principal.name if principal else None)
    except follows.FollowProblem as problem:
        return follow_refused(name, problem)
    audit.record(
        "follow.add",
        name,
        query=follow.query,
        interval=follow.interval_seconds,
        backfill=follow.backfill_limit,
    )
    db.session.commit()
    follows.wake(current_app)
    return follow_done(name, f"{name} now follows its query; the first run is on its way.")


@bp.post("/sources/<name>/follow/edit")
@requires(Role.ADMIN)
def follow_update(name: str) -> Response:
    """Change the follow's query, interval or first-run limit (not one the file sets)."""
    follow = follow_or_404(name)
    form = request.form
    try:
        settings = follows.read_settings(
            name, form.get("query"), form.get("interval"), form.get("backfill")
        )
        changed = follows.update(follow, settings)
    except follows.FollowProblem as problem:
        db.session.rollback()
        return follow_refused(name, problem)
    if not changed:
        return follow_done(name, "Nothing changed.")
    audit.record("follow.update", name, changed=changed, query=follow.query)
    db.session.commit()
    if "query" in changed:
        follows.wake(current_app)
        return follow_done(name, "Follow saved; the new query starts over with a first run.")
    return follow_done(name, "Follow saved.")


@bp.post("/sources/<name>/follow/<change>")
@requires(Role.ADMIN)
def follow_change(name: str, change: str) -> Response:
    """Pause, resume, remove, or run the follow now."""
    follow = follow_or_404(name)
    try:
        if change == "pause":
            done = follows.pause(follow)
            message = "Follow paused." if done else "The follow was paused already."
        elif change == "resume":
            done = follows.resume(follow)
            message = "Follow resumed; it runs at once." if done else "The follow was not paused."
        elif change == "remove":
            follows.remove(follow)
            done, message = True, "Stopped following; the tasks it tracked stay tracked."
        elif change == "run":
            follows.run_now(follow, current_app)
            done, message = True, "The follow runs now."
        else:
            abort(404, description=f"A follow cannot be told to {change[:40]!r}.")
    except follows.FollowProblem as problem:
        db.session.rollback()
        return follow_refused(name, problem)
    if done:
        audit.record(f"follow.{change}", name)
        db.session.commit()
        if change == "resume":
            follows.wake(current_app)
    return follow_done(name, message)


def follow_or_404(name: str) -> Follow:
    follow = follows.follow_for(name)
    if follow is None:
        abort(404, description=f"The source “{name[:64]}” follows no query.")
    return follow


def follow_refused(name: str, problem: follows.FollowProblem) -> Response:
    """The sources page again, with the message by the follow's form and what was typed."""
    error = FollowFormError(
        source=name,
        message=problem.message,
        field=problem.field,
        values={key: request.form.get(key, "") for key in ("query", "interval", "backfill")},
    )
    return make_response(render_template("sources/list.html", **list_context(error)), 422)


def follow_done(name: str, message: str) -> Response:
    flash(message, "info")
    return redirect(url_for("sources.index") + f"#source-{name}", 303)
