"""Who may reach each endpoint: THE table that new routes are added to.

Every endpoint of the app is in exactly one of :data:`PUBLIC` (anyone, signed in or not) and
:data:`EXPECTED_ROLE` (the least role that passes the guard, whatever the method). A route in
neither fails ``tests/access/test_url_map.py``, so none slips in unexamined.
:data:`SAMPLE_VALUES` fills each URL variable, with ids no row has (a view that gets past the
guard answers 404 or a form error, and changes nothing).
"""

from __future__ import annotations

from webapp.access.roles import Role

PUBLIC = frozenset(
    {
        "static",
        "health.favicon",
        "health.healthz",
        "auth.login",
        "auth.logout",
        # The OpenID flow: it starts before anyone is signed in.
        "oidc.start",
        "oidc.callback",
        # A share link checks its own signed token, and shows that one task alone.
        "share.page",
        "share.status",
    }
)

VIEWER, EDITOR, ADMIN = Role.VIEWER, Role.EDITOR, Role.ADMIN

EXPECTED_ROLE: dict[str, Role] = {
    # Reading.
    "tasks.index": VIEWER,
    "tasks.live": VIEWER,
    "tasks.charts": VIEWER,
    "tasks.detail": VIEWER,
    "tasks.status": VIEWER,
    "tasks.raw_payload": VIEWER,
    "tasks.export": VIEWER,
    "tasks.import_page": VIEWER,  # shows the latest imports; the form only to editors
    "tasks.import_progress": VIEWER,
    "sources.index": VIEWER,
    "sources.follow_state": VIEWER,
    "api.openapi_document": VIEWER,
    "api.list_tasks": VIEWER,
    "api.get_task": VIEWER,
    # Tracking by push (pipelines, with an editor token).
    "api.push_tasks": EDITOR,
    "metrics.metrics": VIEWER,
    "preferences.set_time_mode": VIEWER,  # the reader's own display cookie
    "saved_views.open_view": VIEWER,
    # A re-fetch sooner than the refresher would: nothing anyone wrote changes.
    "tasks.refresh_now": VIEWER,
    # Tasks, labels, notes, imports and saved views: editors.
    "tasks.track": EDITOR,
    "tasks.untrack": EDITOR,
    "tasks.untrack_selected": EDITOR,
    # Upstream actions (cancel, delete, retry): editors, like every other write to a task.
    "tasks.act": EDITOR,
    "tasks.act_selected": EDITOR,
    "api.act": EDITOR,
    "tasks.annotate": EDITOR,
    "tasks.track_link": EDITOR,
    "tasks.import_preview": EDITOR,
    "tasks.import_start": EDITOR,
    "tasks.import_cancel": EDITOR,
    "saved_views.create": EDITOR,
    "saved_views.set_default": EDITOR,
    "saved_views.delete": EDITOR,
    "share.create": EDITOR,
    "share.revoke": EDITOR,
    # Sources and users: admins (the forms too, not only what they post).
    "sources.new": ADMIN,
    "sources.edit": ADMIN,
    "sources.create": ADMIN,
    "sources.update": ADMIN,
    "sources.follow_add": ADMIN,
    "sources.follow_update": ADMIN,
    "sources.follow_change": ADMIN,
    "users.index": ADMIN,
    "users.create": ADMIN,
    "users.set_role": ADMIN,
    "users.remove": ADMIN,
    # API tokens and the audit log: admins.
    "tokens.index": ADMIN,
    "tokens.create": ADMIN,
    "tokens.revoke": ADMIN,
    "audit.index": ADMIN,
    "audit.export_csv": ADMIN,
    "audit.export_json": ADMIN,
    # Alert rules and the delivery log: admins (the forms and the dry run too).
    "notifications.index": ADMIN,
    "notifications.edit": ADMIN,
    "notifications.create": ADMIN,
    "notifications.update": ADMIN,
    "notifications.toggle": ADMIN,
    "notifications.delete": ADMIN,
    "notifications.send_test": ADMIN,
    "notifications.try_rule": ADMIN,
    "notifications.deliveries": ADMIN,
    # "Notify me" and one's own settings: anyone signed in, for themselves.
    "notifications.account": VIEWER,
    "notifications.save_account": VIEWER,
    "notifications.notify_me": VIEWER,
    "notifications.toggle_notify_me": VIEWER,
}

SAMPLE_VALUES: dict[str, object] = {
    "source": "no-such-source",
    "task_id": "no/such task",
    "fmt": "csv",
    "filename": "css/app.css",
    "name": "no-such-source",
    "change": "pause",
    "job_id": 999999,
    "view_id": 999999,
    "user_id": 999999,
    "token_id": 999999,
    "link_id": 999999,
    "token": "not-a-share-token",
    "action": "cancel",
    "rule_id": 999999,
}

#: Methods every route answers without a view of ours.
IMPLICIT_METHODS = frozenset({"HEAD", "OPTIONS"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def is_machine_path(path: str) -> bool:
    """Paths that answer scripts: 401, never a sign-in page."""
    return path.startswith("/api/") or path == "/metrics"
