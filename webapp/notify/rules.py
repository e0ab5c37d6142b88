"""Alert rules: a name, a ``when`` in the task list's search syntax, and one target.

Rules come from the config file (``[[notifications]]``, validated here with one clear
:class:`ConfigError` naming the rule and the field) and from the UI (``/notifications``). File
rules are synced into ``notification_rules`` with origin ``file`` each time the database is
opened: the file wins over a UI rule of the same name. A rule's match is the list's own query
(:class:`TaskQuery` over ``q=<when>``), so whatever the search box understands, a rule does.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import Flask
from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
from pydantic import ValidationError
from pydantic import field_validator
from pydantic import model_validator

from webapp.config import ConfigError
from webapp.db.models import NotificationRule
from webapp.db.models import RuleMatch
from webapp.db.models import Task
from webapp.db.models import db
from webapp.db.models import utcnow
from webapp.listing.query import QueryError
from webapp.listing.query import TaskQuery
from webapp.providers.addresses import refusal_message
from webapp.providers.addresses import refused_host
from webapp.sources.sealed import SealedCredentialsError
from webapp.sources.sealed import SecretsBox
from webapp.sources.sealed import open_sealed

#: The config fields that name a target, and the kind each makes.
TARGET_FIELDS = {"url": "webhook", "slack_url_env": "slack", "email": "email"}
TARGET_LABELS = {"webhook": "JSON webhook", "slack": "Slack", "email": "E-mail"}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class TargetError(Exception):
    """A rule's target cannot be used now (a variable unset, a secret that cannot be opened)."""


def rule_query(when: str, now: datetime | None = None) -> TaskQuery:
    """The list's query for a rule's ``when``; raises :class:`QueryError`."""
    return TaskQuery.from_args({"q": when}, now=now or utcnow())


def check_webhook_url(value: str, *, allow_link_local: bool = False) -> str:
    """An http(s) URL with a host (a query string may carry the receiver's token), not a
    link-local or cloud-metadata address (the connection is checked again)."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    reason = None if allow_link_local else refused_host(parts.hostname)
    if reason is not None:
        raise ValueError(refusal_message(reason))
    return value.strip()


def check_email(value: str) -> str:
    value = value.strip()
    if not _EMAIL.match(value) or len(value) > 254:
        raise ValueError("must be an e-mail address (name@example.com)")
    return value


class RuleConfig(BaseModel):
    """One ``[[notifications]]`` entry, validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=120)
    when: str = Field(min_length=1, max_length=2000)
    url: str | None = None
    slack_url_env: str | None = None
    email: str | None = None
    enabled: bool = True

    @field_validator("when")
    @classmethod
    def _check_when(cls, value: str) -> str:
        try:
            rule_query(value)
        except QueryError as exc:
            raise ValueError(str(exc)) from None
        return value.strip()

    @field_validator("email")
    @classmethod
    def _check_email(cls, value: str | None) -> str | None:
        return None if value is None else check_email(value)

    @field_validator("slack_url_env")
    @classmethod
    def _check_env(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.match(value):
            raise ValueError("must name an environment variable (SLACK_HOOK)")
        return value

    @model_validator(mode="after")
    def _one_target(self) -> RuleConfig:
        given = [name for name in TARGET_FIELDS if getattr(self, name)]
        if len(given) != 1:
            raise ValueError("give exactly one of url, slack_url_env or email")
        return self

    @property
    def target_kind(self) -> str:
        return next(kind for name, kind in TARGET_FIELDS.items() if getattr(self, name))

    @property
    def target(self) -> str:
        return next(getattr(self, name) for name in TARGET_FIELDS if getattr(self, name))


def build_rule(
    data: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    *,
    smtp_configured: bool = True,
    allow_link_local: bool = False,
) -> RuleConfig:
    """Validate one rule; raises :class:`ConfigError` naming the rule and the field."""
    environ = os.environ if environ is None else environ
    label = data.get("name") if isinstance(data.get("name"), str) else "?"

    def error(field: str, message: str) -> ConfigError:
        return ConfigError(f"notification {label!r}: field {field!r}: {message}")

    try:
        rule = RuleConfig.model_validate(dict(data))
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "url"
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "unknown field"
        raise error(field, message) from None
    if rule.url is not None:
        try:
            check_webhook_url(rule.url, allow_link_local=allow_link_local)
        except ValueError as exc:
            raise error("url", str(exc)) from None
    if rule.slack_url_env is not None:
        value = environ.get(rule.slack_url_env)
        if not value:
            raise error("slack_url_env", f"environment variable {rule.slack_url_env} is not set")
        try:
            check_webhook_url(value, allow_link_local=allow_link_local)
        except ValueError as exc:
            raise error("slack_url_env", f"{rule.slack_url_env}: {exc}") from None
    if rule.email is not None and not smtp_configured:
        raise error("email", "e-mail needs TASKDECK_SMTP_URL (smtp://user:pass@host:port)")
    return rule


def load_rules(
    entries: list[dict[str, Any]],
    environ: Mapping[str, str] | None = None,
    *,
    smtp_configured: bool = True,
    allow_link_local: bool = False,
) -> list[RuleConfig]:
    """The config file's ``[[notifications]]``, validated; names are unique."""
    rules: list[RuleConfig] = []
    for entry in entries:
        rule = build_rule(
            entry, environ, smtp_configured=smtp_configured, allow_link_local=allow_link_local
        )
        if any(other.name == rule.name for other in rules):
            raise ConfigError(f"notification {rule.name!r}: field 'name': used by two rules")
        rules.append(rule)
    return rules


def target_label(rule: NotificationRule) -> str:
    """Where a rule sends, as pages and the delivery log show it: never a secret URL."""
    if rule.target_kind == "slack":
        if rule.target:
            return f"Slack (URL from ${rule.target})"
        return "Slack (stored URL)"
    if rule.target_kind == "webhook" and rule.target:
        parts = urlsplit(rule.target)
        # The path and query may carry the receiver's token: show the host only.
        return f"{parts.scheme}://{parts.netloc}/…" if parts.path.strip("/") else rule.target
    return rule.target or "?"


def resolve_target(
    rule: NotificationRule, box: SecretsBox | None, environ: Mapping[str, str] | None = None
) -> str:
    """The URL or address a rule sends to now; raises :class:`TargetError`."""
    environ = os.environ if environ is None else environ
    if rule.target_kind == "slack":
        if rule.encrypted_target:
            try:
                url = open_sealed(rule.encrypted_target, box).get("url")
            except SealedCredentialsError as exc:
                raise TargetError(f"the stored Slack URL: {exc}") from None
            if not url:
                raise TargetError("no Slack URL is stored")
            return url
        value = environ.get(rule.target or "")
        if not value:
            raise TargetError(f"environment variable {rule.target} is not set")
        return value
    if not rule.target:
        raise TargetError("the rule has no target")
    return rule.target


def seed_matches(rule: NotificationRule, now: datetime | None = None) -> int:
    """Record the tasks already inside a new (or changed) rule's match, without a delivery: a
    rule tells of tasks that enter its match from now on, not of the whole cache."""
    db.session.execute(sa.delete(RuleMatch).where(RuleMatch.rule_id == rule.id))
    if not rule.enabled:
        return 0
    now = now or utcnow()
    query = rule_query(rule.when, now)
    matching = sa.select(
        sa.literal(rule.id), Task.id, Task.state, sa.literal(now, type_=RuleMatch.matched_at.type)
    ).where(*query.where())
    result = db.session.execute(
        sa.insert(RuleMatch).from_select(["rule_id", "task_pk", "state", "matched_at"], matching)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def sync_file_rules(app: Flask) -> None:
    """Store the config file's rules (origin ``file``; the file wins over a UI rule of the same
    name) and drop file rules that left the file. Seeds the matches of new or changed rules."""
    configured: list[RuleConfig] = app.config.get("NOTIFICATIONS") or []
    with app.app_context():
        names = {rule.name for rule in configured}
        stale = db.session.scalars(
            sa.select(NotificationRule).where(
                NotificationRule.origin == "file", NotificationRule.name.not_in(names)
            )
        )
        for row in stale:
            db.session.delete(row)
        for rule in configured:
            found = db.session.scalar(
                sa.select(NotificationRule).where(NotificationRule.name == rule.name)
            )
            before = None if found is None else (found.when, found.enabled, found.origin)
            row = found or NotificationRule(name=rule.name, created_by="config file")
            if found is None:
                db.session.add(row)
            row.when = rule.when
            row.target_kind = rule.target_kind
            row.target = rule.target
            row.encrypted_target = None
            row.origin = "file"
            row.enabled = rule.enabled
            db.session.flush()
            if before != (row.when, row.enabled, row.origin):
                seed_matches(row)
        db.session.commit()
