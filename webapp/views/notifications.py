"""``/notifications``: alert rules and the delivery log (admins); "notify me" on a task's page
and the person's own settings (anyone signed in).

The domain is :mod:`webapp.notify`; these views validate forms, keep a typed Slack URL secret
(sealed with ``TASKDECK_SECRETS_KEY``, never shown back), and record rule changes in the audit
log.
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from flask import Blueprint
from flask import abort
from flask import current_app
from flask import flash
from flask import make_response
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from werkzeug.wrappers import Response

from webapp.access import audit
from webapp.access.guard import requires
from webapp.access.principal import current_principal
from webapp.access.roles import Role
from webapp.db.models import Delivery
from webapp.db.models import DeliveryAttempt
from webapp.db.models import NotificationRule
from webapp.db.models import Task
from webapp.db.models import User
from webapp.db.models import db
from webapp.db.models import utcnow
from webapp.listing.query import QueryError
from webapp.logs import redactor
from webapp.notify import subscriptions
from webapp.notify.dryrun import dry_run
from webapp.notify.rules import TARGET_LABELS
from webapp.notify.rules import check_email
from webapp.notify.rules import check_webhook_url
from webapp.notify.rules import rule_query
from webapp.notify.rules import seed_matches
from webapp.notify.rules import target_label
from webapp.notify.sending import DeliverySender
from webapp.notify.triggers import write_delivery
from webapp.sources import sealed
from webapp.sources.sealed import secrets_box
from webapp.web.lookup import get_task_or_404

bp = Blueprint("notifications", __name__)

STATUSES = ("pending", "sending", "sent", "failed")
DELIVERIES_PAGE = 100
SAMPLE_TASK: dict[str, Any] = {
    "source": "example",
    "provider": "example",
    "task_id": "sample-task",
    "state": "failed",
    "upstream_status": "FAILED",
    "terminal": True,
    "task_type": "SAMPLE",
    "name": "A sample task (Send test)",
    "error": "This is a test message from Taskdeck.",
    "links": {},
}


def _rule_or_404(rule_id: int) -> NotificationRule:
    return db.get_or_404(NotificationRule, rule_id, description="There is no such rule.")


def _editable(rule_id: int) -> NotificationRule:
    rule = _rule_or_404(rule_id)
    if rule.origin == "file":
        abort(
            403, description=f"The rule {rule.name} is pinned by the config file; change it there."
        )
    return rule


def _back(anchor: str = "") -> Response:
    return redirect(url_for("notifications.index") + anchor, 303)


@bp.get("/notifications")
@requires(Role.ADMIN)
def index() -> str:
    """The rules, a form to add one, and the latest deliveries."""
    return render_template("notifications/list.html", **_list_context({}, None))


def _list_context(values: dict[str, str], editing: NotificationRule | None) -> dict[str, Any]:
    rules = list(db.session.scalars(sa.select(NotificationRule).order_by(NotificationRule.name)))
    last = {
        rule_id: status
        for rule_id, status in db.session.execute(
            sa.select(Delivery.rule_id, Delivery.status).where(
                Delivery.id.in_(sa.select(sa.func.max(Delivery.id)).group_by(Delivery.rule_id))
            )
        )
    }
    return {
        "rules": rules,
        "last_status": last,
        "label_of": target_label,
        "kinds": TARGET_LABELS,
        "values": values,
        "editing": editing,
        "secrets_enabled": secrets_box() is not None,
        "smtp_enabled": bool(current_app.config.get("SMTP_URL")),
        "recent": _deliveries(None, None, 10),
        "demo": bool(current_app.config.get("DEMO")),
    }


@bp.get("/notifications/<int:rule_id>/edit")
@requires(Role.ADMIN)
def edit(rule_id: int) -> str:
    """The form of a rule added in the UI."""
    rule = _editable(rule_id)
    values = {"name": rule.name, "when": rule.when, "kind": rule.target_kind}
    if rule.target_kind == "webhook":
        values["url"] = rule.target or ""
    elif rule.target_kind == "email":
        values["email"] = rule.target or ""
    elif rule.target:
        values["slack_url_env"] = rule.target
    return render_template("notifications/list.html", **_list_context(values, rule))


@bp.post("/notifications")
@requires(Role.ADMIN)
def create() -> Response:
    """Add a rule from the form."""
    return _save(None)


@bp.post("/notifications/<int:rule_id>")
@requires(Role.ADMIN)
def update(rule_id: int) -> Response:
    """Save an edited rule."""
    return _save(_editable(rule_id))


def _save(existing: NotificationRule | None) -> Response:
    form = request.form
    values = {key: form.get(key, "").strip() for key in ("name", "when", "kind", "url", "email")}
    values["slack_url_env"] = form.get("slack_url_env", "").strip()
    typed_slack = form.get("slack_url", "").strip()
    if typed_slack:
        redactor.add([typed_slack])
    error = None
    target: str | None = None
    sealed_target = existing.encrypted_target if existing is not None else None
    try:
        if not values["name"]:
            raise ValueError("name: give the rule a name")
        clash = db.session.scalar(
            sa.select(NotificationRule.id).where(NotificationRule.name == values["name"])
        )
        if clash is not None and (existing is None or clash != existing.id):
            raise ValueError(f"name: {values['name']!r} is already a rule's name")
        try:
            rule_query(values["when"])
        except QueryError as exc:
            raise ValueError(f"when: {exc}") from None
        if not values["when"]:
            raise ValueError("when: give a search, such as state:failed")
        target, sealed_target = _target(values, typed_slack, sealed_target)
    except ValueError as exc:
        error = str(exc)
    if error is not None:
        context = _list_context(values, existing)
        return make_response(
            render_template("notifications/list.html", error=error, **context), 422
        )
    principal = current_principal()
    rule = existing or NotificationRule(
        origin="database", created_by=principal.name if principal else None
    )
    changed_when = existing is None or existing.when != values["when"]
    rule.name, rule.when, rule.target_kind = values["name"], values["when"], values["kind"]
    rule.target, rule.encrypted_target = target, sealed_target
    if existing is None:
        db.session.add(rule)
    db.session.flush()
    if changed_when:
        seed_matches(rule)
    audit.record(
        "rule.create" if existing is None else "rule.update",
        rule.name,
        when=rule.when,
        target_kind=rule.target_kind,
    )
    db.session.commit()
    flash(f"Rule {rule.name} saved: it tells of tasks that enter its match from now on.", "info")
    return _back(f"#rule-{rule.id}")


def _target(
    values: dict[str, str], typed_slack: str, stored: str | None
) -> tuple[str | None, str | None]:
    """``(target, encrypted target)`` from the form; ``ValueError`` naming the field."""
    kind = values["kind"]
    allow = bool(current_app.config.get("ALLOW_LINK_LOCAL"))
    if kind == "webhook":
        try:
            return check_webhook_url(values["url"], allow_link_local=allow), None
        except ValueError as exc:
            raise ValueError(f"url: {exc}") from None
    if kind == "email":
        if not current_app.config.get("SMTP_URL"):
            raise ValueError("email: e-mail needs TASKDECK_SMTP_URL on the server")
        try:
            return check_email(values["email"]), None
        except ValueError as exc:
            raise ValueError(f"email: {exc}") from None
    if kind == "slack":
        if typed_slack:
            box = secrets_box()
            if box is None:
                raise ValueError(
                    f"slack_url: a typed Slack URL is stored encrypted, which needs "
                    f"{sealed.SETTING}; name an environment variable instead"
                )
            try:
                check_webhook_url(typed_slack, allow_link_local=allow)
            except ValueError as exc:
                raise ValueError(f"slack_url: {exc}") from None
            return None, box.seal({"url": typed_slack})
        if values["slack_url_env"]:
            return values["slack_url_env"], None
        if stored:
            return None, stored
        raise ValueError("slack_url: type the Slack webhook URL or name its environment variable")
    raise ValueError("kind: choose a webhook, Slack or e-mail")


@bp.post("/notifications/<int:rule_id>/toggle")
@requires(Role.ADMIN)
def toggle(rule_id: int) -> Response:
    """Turn a rule on or off."""
    rule = _editable(rule_id)
    rule.enabled = not rule.enabled
    seed_matches(rule)
    audit.record("rule.update", rule.name, enabled=rule.enabled)
    db.session.commit()
    return _back(f"#rule-{rule.id}")


@bp.post("/notifications/<int:rule_id>/delete")
@requires(Role.ADMIN)
def delete(rule_id: int) -> Response:
    """Delete a rule (its deliveries stay in the log)."""
    rule = _editable(rule_id)
    audit.record("rule.delete", rule.name)
    db.session.delete(rule)
    db.session.commit()
    flash(f"Rule {rule.name} deleted.", "info")
    return _back()


@bp.post("/notifications/<int:rule_id>/test")
@requires(Role.ADMIN)
def send_test(rule_id: int) -> Response:
    """Send a sample message now, through the same delivery path as a real one."""
    rule = _rule_or_404(rule_id)
    now = utcnow()
    task = db.session.scalar(
        sa.select(Task).where(*rule_query(rule.when, now).where()).order_by(Task.id.desc())
    )
    delivery_id = write_delivery(
        dedup_key=f"rule:{rule.id}:test:{uuid.uuid4().hex}",
        event="test",
        task=task,
        rule=rule,
        now=now,
        sample=None if task is not None else {**SAMPLE_TASK},
    )
    assert delivery_id is not None  # a fresh key
    db.session.commit()
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    DeliverySender(app).send_due(1, only=[delivery_id])
    delivery = db.session.get(Delivery, delivery_id, populate_existing=True)
    assert delivery is not None
    attempt = db.session.scalar(
        sa.select(DeliveryAttempt)
        .where(DeliveryAttempt.delivery_id == delivery_id)
        .order_by(DeliveryAttempt.id.desc())
    )
    if attempt is not None and attempt.outcome == "ok":
        flash(f"Test message sent for {rule.name} ({attempt.status_code}).", "info")
    else:
        answer = attempt.answer if attempt is not None else "not sent"
        flash(f"Test message for {rule.name} failed: {answer}", "error")
    return _back(f"#rule-{rule.id}")


@bp.post("/notifications/dry-run")
@requires(Role.ADMIN)
def try_rule() -> str:
    """How often a ``when`` would have fired over the cache's last days (a fragment)."""
    when = request.form.get("when", "").strip()
    error = None
    result = None
    try:
        if not when:
            raise QueryError("give a search, such as state:failed")
        result = dry_run(when, utcnow())
    except QueryError as exc:
        error = str(exc)
    return render_template(
        "notifications/_dry_run.html", rule_when=when, result=result, error=error
    )


@bp.get("/notifications/deliveries")
@requires(Role.ADMIN)
def deliveries() -> str:
    """The delivery log, newest first, with every attempt and answer; by rule and status."""
    rule_id = request.args.get("rule", type=int)
    status = request.args.get("status") or None
    if status not in (None, *STATUSES):
        status = None
    rows = _deliveries(rule_id, status, DELIVERIES_PAGE)
    attempts: dict[int, list[DeliveryAttempt]] = {}
    if rows:
        for attempt in db.session.scalars(
            sa.select(DeliveryAttempt)
            .where(DeliveryAttempt.delivery_id.in_([d.id for d in rows]))
            .order_by(DeliveryAttempt.id)
        ):
            attempts.setdefault(attempt.delivery_id, []).append(attempt)
    return render_template(
        "notifications/deliveries.html",
        deliveries=rows,
        attempts=attempts,
        rules=list(db.session.scalars(sa.select(NotificationRule).order_by(NotificationRule.name))),
        rule_id=rule_id,
        status=status,
        statuses=STATUSES,
        tasks=_tasks_of(rows),
    )


def _deliveries(rule_id: int | None, status: str | None, limit: int) -> list[Delivery]:
    stmt = sa.select(Delivery).order_by(Delivery.id.desc()).limit(limit)
    if rule_id is not None:
        stmt = stmt.where(Delivery.rule_id == rule_id)
    if status is not None:
        stmt = stmt.where(Delivery.status == status)
    return list(db.session.scalars(stmt))


def _tasks_of(rows: list[Delivery]) -> dict[int, Task]:
    pks = {d.task_pk for d in rows if d.task_pk is not None}
    if not pks:
        return {}
    return {t.id: t for t in db.session.scalars(sa.select(Task).where(Task.id.in_(pks)))}


# -- "notify me" and the person's own settings -------------------------------------------------


def _signed_in_user() -> User | None:
    principal = current_principal()
    if principal is None or principal.user_id is None:
        return None
    return db.session.get(User, principal.user_id)


@bp.get("/account")
@requires(Role.VIEWER)
def account() -> str:
    """The signed-in person's own settings: where "notify me" tells them."""
    return render_template("notifications/account.html", user=_signed_in_user(), error=None)


@bp.post("/account")
@requires(Role.VIEWER)
def save_account() -> Response:
    """Save one's e-mail address and personal webhook."""
    user = _signed_in_user()
    if user is None:
        abort(403, description="Only a signed-in person has settings of their own.")
    email = request.form.get("email", "").strip()
    webhook = request.form.get("notify_webhook", "").strip()
    try:
        user.email = check_email(email) if email else None
        allow = bool(current_app.config.get("ALLOW_LINK_LOCAL"))
        user.notify_webhook = (
            check_webhook_url(webhook, allow_link_local=allow) if webhook else None
        )
    except ValueError as exc:
        db.session.rollback()
        page = render_template("notifications/account.html", user=user, error=str(exc))
        return make_response(page, 422)
    db.session.commit()
    flash("Your settings are saved.", "info")
    return redirect(url_for("notifications.account"), 303)


def _notify_me_context(task: Task) -> dict[str, Any]:
    user = _signed_in_user()
    watching = user is not None and subscriptions.subscription(user.id, task) is not None
    return {
        "task": task,
        "user": user,
        "watching": watching,
        "channel": subscriptions.channel(user) if user is not None else None,
    }


@bp.get("/tasks/<source>/<taskid:task_id>/notify-me")
@requires(Role.VIEWER)
def notify_me(source: str, task_id: str) -> str:
    """The "notify me" control of a task's page (loaded by the page)."""
    task = get_task_or_404(source, task_id)
    return render_template("notifications/_notify_me.html", **_notify_me_context(task))


@bp.post("/tasks/<source>/<taskid:task_id>/notify-me")
@requires(Role.VIEWER)
def toggle_notify_me(source: str, task_id: str) -> Response:
    """Ask to be told when the task finishes (``on=1``), or not any more (``on=0``)."""
    task = get_task_or_404(source, task_id)
    user = _signed_in_user()
    error = None
    if user is None:
        error = "Sign in as a person to be told when a task finishes."
    elif request.form.get("on") == "1":
        try:
            subscriptions.subscribe(user, task)
        except ValueError as exc:
            error = str(exc)
    else:
        subscriptions.unsubscribe(user.id, task)
    db.session.commit()
    context = _notify_me_context(task)
    body = render_template("notifications/_notify_me.html", error=error, **context)
    if request.headers.get("HX-Request") == "true" and not request.headers.get("HX-Boosted"):
        return make_response(body)  # htmx 2 swaps no 4xx answer: the error is in the markup
    if error:
        flash(error, "error")
    return redirect(url_for("tasks.detail", source=task.source, task_id=task.task_id), 303)
