"""``/notifications``: rule CRUD by role, typed Slack URLs kept secret, Send test through the
real delivery path, the audit lines, and rules from the config file."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from tests.access.people import add_user
from tests.access.people import form_token
from tests.access.people import signed_in
from tests.helpers import soup
from tests.notify.receivers import webhook_receiver
from webapp import create_app
from webapp.config import ConfigError
from webapp.db.models import AuditEvent
from webapp.db.models import Delivery
from webapp.db.models import NotificationRule
from webapp.db.models import db
from webapp.notify.targets import slack_message

KEY = Fernet.generate_key().decode()
SLACK_URL = "http://127.0.0.1:9/services/T000/B000/very-secret-slack-token"


@pytest.fixture
def app(app_factory):  # type: ignore[no-untyped-def]
    app = app_factory(AUTH="local", SECRETS_KEY=KEY)
    add_user(app, "root", "admin")
    return app


def rules(app):  # type: ignore[no-untyped-def]
    with app.app_context():
        return {r.name: r for r in db.session.scalars(sa.select(NotificationRule))}


def post(client, path, **data):  # type: ignore[no-untyped-def]
    return client.post(path, data={"csrf_token": form_token(client), **data})


def test_only_admins_see_or_change_rules(app):  # type: ignore[no-untyped-def]
    editor = signed_in(app, "ed", "editor")
    assert editor.get("/notifications").status_code == 403
    refused = post(
        editor,
        "/notifications",
        name="x",
        when="state:failed",
        kind="webhook",
        url="http://127.0.0.1:9/hook",
    )
    assert refused.status_code == 403
    assert rules(app) == {}
    admin = signed_in(app, "root")
    page = soup(admin.get("/notifications"))
    assert page.select_one("#rule-form form")


def test_admin_adds_edits_disables_and_deletes_a_rule_with_audit_lines(app):  # type: ignore[no-untyped-def]
    admin = signed_in(app, "root")
    made = post(
        admin,
        "/notifications",
        name="fails",
        when="state:failed",
        kind="webhook",
        url="http://127.0.0.1:9/hook?token=abc",
    )
    assert made.status_code == 303
    rule = rules(app)["fails"]
    assert (rule.target_kind, rule.target, rule.origin) == (
        "webhook",
        "http://127.0.0.1:9/hook?token=abc",
        "database",
    )
    page = soup(admin.get("/notifications"))
    row = page.select_one(f"#rule-{rule.id}")
    assert "token=abc" not in row.get_text()  # the path and query may hold the receiver's token
    assert "added here" in row.get_text()

    bad = post(
        admin,
        f"/notifications/{rule.id}",
        name="fails",
        when="state:nonsense",
        kind="webhook",
        url="http://127.0.0.1:9/hook",
    )
    assert bad.status_code == 422
    assert "unknown state" in soup(bad).select_one("#form-error").get_text()
    assert (
        post(
            admin,
            f"/notifications/{rule.id}",
            name="fails",
            when="state:problems",
            kind="webhook",
            url="http://127.0.0.1:9/hook",
        ).status_code
        == 303
    )
    assert rules(app)["fails"].when == "state:problems"
    assert post(admin, f"/notifications/{rule.id}/toggle").status_code == 303
    assert rules(app)["fails"].enabled is False
    assert post(admin, f"/notifications/{rule.id}/delete").status_code == 303
    assert rules(app) == {}
    with app.app_context():
        lines = [
            (e.action, e.target, e.actor)
            for e in db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.id))
            if e.action.startswith("rule.")
        ]
    assert lines == [
        ("rule.create", "fails", "root"),
        ("rule.update", "fails", "root"),
        ("rule.update", "fails", "root"),
        ("rule.delete", "fails", "root"),
    ]


def test_link_local_webhooks_are_refused(app):  # type: ignore[no-untyped-def]
    admin = signed_in(app, "root")
    refused = post(
        admin,
        "/notifications",
        name="meta",
        when="state:failed",
        kind="webhook",
        url="http://169.254.169.254/latest",
    )
    assert refused.status_code == 422
    assert "cloud-metadata" in soup(refused).select_one("#form-error").get_text()


def test_a_typed_slack_url_is_sealed_and_never_shown(app):  # type: ignore[no-untyped-def]
    admin = signed_in(app, "root")
    assert (
        post(
            admin,
            "/notifications",
            name="slack",
            when="state:failed",
            kind="slack",
            slack_url=SLACK_URL,
        ).status_code
        == 303
    )
    rule = rules(app)["slack"]
    assert rule.target is None and rule.encrypted_target and SLACK_URL not in rule.encrypted_target
    for path in (
        "/notifications",
        f"/notifications/{rule.id}/edit",
        "/notifications/deliveries",
        "/audit",
    ):
        assert "very-secret-slack-token" not in admin.get(path).get_data(as_text=True), path
    # Saved again with the field blank: the stored URL stays.
    assert (
        post(
            admin, f"/notifications/{rule.id}", name="slack", when="state:problems", kind="slack"
        ).status_code
        == 303
    )
    assert rules(app)["slack"].encrypted_target == rule.encrypted_target


def test_a_typed_slack_url_needs_the_secrets_key(app_factory):  # type: ignore[no-untyped-def]
    app = app_factory(AUTH="local")
    add_user(app, "root", "admin")
    admin = signed_in(app, "root")
    refused = post(
        admin,
        "/notifications",
        name="slack",
        when="state:failed",
        kind="slack",
        slack_url=SLACK_URL,
    )
    assert refused.status_code == 422
    assert "TASKDECK_SECRETS_KEY" in soup(refused).select_one("#form-error").get_text()


def test_send_test_goes_through_the_delivery_path(app):  # type: ignore[no-untyped-def]
    admin = signed_in(app, "root")
    with webhook_receiver() as (hook, url):
        post(admin, "/notifications", name="hook", when="state:failed", kind="webhook", url=url)
        rule = rules(app)["hook"]
        answer = post(admin, f"/notifications/{rule.id}/test")
        assert answer.status_code == 303
    assert len(hook.received) == 1
    assert hook.received[0]["event"]["description"] == "test"
    assert hook.received[0]["task"]["task_id"] == "sample-task"
    with app.app_context():
        delivery = db.session.scalars(sa.select(Delivery)).one()
        assert (delivery.status, delivery.attempts, delivery.rule_id) == ("sent", 1, rule.id)
    log = soup(admin.get(f"/notifications/deliveries?rule={rule.id}&status=sent"))
    assert "ok 200" in log.select_one(f"#delivery-{delivery.id} .attempt").get_text()
    assert log.select(f"#delivery-{delivery.id}")
    assert not soup(admin.get("/notifications/deliveries?status=failed")).select(
        f"#delivery-{delivery.id}"
    )


def test_slack_message_shape():  # type: ignore[no-untyped-def]
    payload = {
        "event": {"description": "entered failed", "at": "2026-12-01T00:00:00Z"},
        "rule": {"id": 1, "name": "prod failures", "when": "state:failed"},
        "task": {
            "task_id": "abc",
            "name": "Deploy",
            "state": "failed",
            "upstream_status": "FAILED",
            "source": "ml-prod",
            "task_type": "DEPLOY_MODEL",
            "error": "out of memory",
        },
        "url": "https://td.example/tasks/ml-prod/abc",
    }
    message = slack_message(payload)
    assert message["text"] == "Deploy entered failed"
    kinds = [block["type"] for block in message["blocks"]]
    assert kinds == ["header", "section", "section", "actions"]
    assert message["blocks"][0]["text"] == {"type": "plain_text", "text": "Deploy entered failed"}
    fields = [f["text"] for f in message["blocks"][1]["fields"]]
    assert fields == [
        "*State*\nfailed (FAILED)",
        "*Source*\nml-prod",
        "*Type*\nDEPLOY_MODEL",
        "*Rule*\nprod failures",
    ]
    assert "out of memory" in message["blocks"][2]["text"]["text"]
    button = message["blocks"][3]["elements"][0]
    assert button["type"] == "button" and button["url"] == payload["url"]
    json.dumps(message)  # plain JSON


def test_config_file_rules_sync_and_are_pinned(app_factory, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SLACK_HOOK", "http://127.0.0.1:9/slack")
    config = tmp_path / "taskdeck.toml"
    config.write_text(
        '[[notifications]]\nname = "prod failures"\nwhen = "state:problems"\n'
        'slack_url_env = "SLACK_HOOK"\n'
    )
    app = app_factory(AUTH="local", CONFIG=str(config), NOTIFICATIONS=None)
    add_user(app, "root", "admin")
    rule = rules(app)["prod failures"]
    assert (rule.origin, rule.target_kind, rule.target) == ("file", "slack", "SLACK_HOOK")
    admin = signed_in(app, "root")
    row = soup(admin.get("/notifications")).select_one(f"#rule-{rule.id}")
    assert "config file" in row.get_text() and "$SLACK_HOOK" in row.get_text()
    assert post(admin, f"/notifications/{rule.id}/delete").status_code == 403


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"name": "a", "when": "state:failed"},
            "notification 'a': field 'url': give exactly one of url, slack_url_env or email",
        ),
        (
            {"name": "b", "when": "state:bogus", "url": "http://x.test/"},
            "notification 'b': field 'when': state: unknown state 'bogus'",
        ),
        (
            {"name": "c", "when": "state:failed", "url": "ftp://x"},
            "notification 'c': field 'url': must be an http:// or https:// URL with a host",
        ),
        (
            {"name": "d", "when": "state:failed", "slack_url_env": "NOT_SET_ANYWHERE"},
            "notification 'd': field 'slack_url_env': environment variable NOT_SET_ANYWHERE",
        ),
        (
            {"name": "e", "when": "state:failed", "email": "ops@example.com"},
            "notification 'e': field 'email': e-mail needs TASKDECK_SMTP_URL",
        ),
        (
            {"name": "f", "when": "state:failed", "url": "http://x.test/", "colour": "red"},
            "notification 'f': field 'colour': unknown field",
        ),
    ],
)
def test_config_errors_name_the_rule_and_field(entry, message, instance_path, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TASKDECK_INSTANCE_PATH", str(instance_path))
    with pytest.raises(ConfigError) as raised:
        create_app({"TESTING": True, "SECRET_KEY": "t", "SOURCES": [], "NOTIFICATIONS": [entry]})
    assert str(raised.value).startswith(message)


def test_slack_rules_post_block_kit_to_the_url_from_a_variable_or_sealed(app_factory, monkeypatch):  # type: ignore[no-untyped-def]
    with webhook_receiver() as (hook, url):
        monkeypatch.setenv("TEAM_SLACK", url)
        app = app_factory(
            AUTH="local",
            SECRETS_KEY=KEY,
            NOTIFICATIONS=[{"name": "env", "when": "state:failed", "slack_url_env": "TEAM_SLACK"}],
        )
        add_user(app, "root", "admin")
        admin = signed_in(app, "root")
        post(
            admin, "/notifications", name="typed", when="state:failed", kind="slack", slack_url=url
        )
        for name in ("env", "typed"):
            assert post(admin, f"/notifications/{rules(app)[name].id}/test").status_code == 303
    assert len(hook.received) == 2
    for message in hook.received:
        assert [b["type"] for b in message["blocks"]][:2] == ["header", "section"]
        assert message["text"].endswith("test")


def test_writes_need_the_csrf_token(app):  # type: ignore[no-untyped-def]
    admin = signed_in(app, "root")
    refused = admin.post(
        "/notifications",
        data={"name": "x", "when": "state:failed", "kind": "webhook", "url": "http://127.0.0.1:9/"},
    )
    assert refused.status_code == 400
    assert rules(app) == {}


def test_read_only_refuses_rule_changes_and_hides_the_form(app_factory):  # type: ignore[no-untyped-def]
    app = app_factory(AUTH="local", READ_ONLY=True)
    add_user(app, "root", "admin")
    admin = signed_in(app, "root")
    assert not soup(admin.get("/notifications")).select("#rule-form")
    refused = post(
        admin,
        "/notifications",
        name="x",
        when="state:failed",
        kind="webhook",
        url="http://127.0.0.1:9/",
    )
    assert refused.status_code == 403
