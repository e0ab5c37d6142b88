"""webapp/follows/manage.py: every change to a follow is checked before a row moves."""

from __future__ import annotations

from datetime import timedelta

import pytest

from webapp.db.models import Follow
from webapp.db.models import db
from webapp.db.models import utcnow
from webapp.follows import manage
from webapp.follows.manage import FollowProblem
from webapp.providers.opensearch_ml import OpenSearchMLProvider


@pytest.fixture
def app(app_factory, make_source):
    return app_factory(
        [make_source("opensearch-ml", name="ml-prod"), make_source("conductor", name="orkes-prod")]
    )


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield app


def configured_follow(source: str, query: str | None = None) -> Follow:
    """A follow as the configuration-file sync writes it."""
    follow = manage.add(source, manage.read_settings(source, query, None, None), actor=None)
    follow.origin = "file"
    db.session.commit()
    return follow


def test_defaults_apply_to_empty_fields(ctx):
    settings = manage.read_settings("ml-prod", "  ", "", None)
    assert settings == manage.FollowSettings(None, 60.0, 200)
    settings = manage.read_settings("ml-prod", "state:FAILED", "5", "10000")
    assert settings == manage.FollowSettings("state:FAILED", 5.0, 10000)


@pytest.mark.parametrize(
    ("query", "interval", "backfill", "field", "words"),
    [
        ('{"term": ', None, None, "query", "The query cannot be read: is not valid JSON"),
        ("[1, 2]", None, None, "query", None),  # query-string text, which ML takes as it is
        ("x" * 4001, None, None, "query", "at most 4,000"),
        (None, "4", None, "interval", "between 5 and 86400 seconds"),
        (None, "86401", None, "interval", "between 5 and 86400 seconds"),
        (None, "nan", None, "interval", "between 5 and 86400"),
        (None, "inf", None, "interval", "between 5 and 86400"),
        (None, "soon", None, "interval", "must be a number, not 'soon'"),
        (None, None, "0", "backfill", "between 1 and 10000 tasks"),
        (None, None, "10001", "backfill", "between 1 and 10000 tasks"),
        (None, None, "2.5", "backfill", "whole number"),
    ],
)
def test_bad_settings_are_refused_with_the_field_named(
    ctx, query, interval, backfill, field, words
):
    if words is None:
        manage.read_settings("ml-prod", query, interval, backfill)  # accepted
        return
    with pytest.raises(FollowProblem) as refused:
        manage.read_settings("ml-prod", query, interval, backfill)
    assert refused.value.field == field
    assert words in refused.value.message


def test_a_query_is_checked_by_its_own_provider(ctx):
    # Conductor's where clauses follow its grammar: NOT IN is refused before anything runs.
    with pytest.raises(FollowProblem, match="The query cannot be read: ") as refused:
        manage.read_settings("orkes-prod", "status NOT IN (FAILED)", None, None)
    assert "--query" not in refused.value.message
    assert manage.read_settings("orkes-prod", "status = 'FAILED'", None, None).query


def test_unknown_and_unsearchable_sources_are_refused(ctx, monkeypatch):
    with pytest.raises(FollowProblem, match="There is no source called “nope”"):
        manage.read_settings("nope", None, None, None)
    monkeypatch.setattr(OpenSearchMLProvider, "can_search", False)
    with pytest.raises(FollowProblem, match="has no task search"):
        manage.read_settings("ml-prod", None, None, None)


def test_add_once_per_source(ctx):
    follow = manage.add("ml-prod", manage.read_settings("ml-prod", "a", None, None), actor="ann")
    db.session.commit()
    assert (follow.origin, follow.paused, follow.next_run_at, follow.created_by) == (
        "database",
        False,
        None,
        "ann",
    )
    with pytest.raises(FollowProblem, match="follows a query already"):
        manage.add("ml-prod", manage.read_settings("ml-prod", "b", None, None), actor="ann")


def test_a_new_query_starts_over_and_a_shorter_interval_comes_sooner(ctx):
    follow = manage.add("ml-prod", manage.read_settings("ml-prod", "a", "3600", None), actor=None)
    now = utcnow()
    follow.runs, follow.watermark, follow.frontier = 4, now, ["t-9"]
    follow.last_note = "the first run tracked the newest 200 of 5,431"
    follow.next_run_at = now + timedelta(seconds=3000)
    db.session.commit()

    changed = manage.update(follow, manage.read_settings("ml-prod", "a", "60", "50"))
    assert changed == ["interval", "backfill"]
    assert follow.runs == 4 and follow.watermark is not None  # same query: carries on
    assert follow.next_run_at <= utcnow() + timedelta(seconds=60)

    changed = manage.update(follow, manage.read_settings("ml-prod", "b", "60", "50"))
    assert changed == ["query"]
    assert (
        follow.runs,
        follow.watermark,
        follow.frontier,
        follow.last_note,
        follow.next_run_at,
    ) == (
        0,
        None,
        [],
        None,
        None,
    )
    assert manage.update(follow, manage.read_settings("ml-prod", "b", "60", "50")) == []


def test_pause_resume_run_now(ctx):
    follow = manage.add("ml-prod", manage.read_settings("ml-prod", None, None, None), actor=None)
    follow.next_run_at = utcnow() + timedelta(seconds=50)
    db.session.commit()
    assert manage.pause(follow) is True and manage.pause(follow) is False
    assert not manage.is_pending(follow, utcnow() + timedelta(hours=1))
    with pytest.raises(FollowProblem, match="paused; resume it to run it"):
        manage.run_now(follow, ctx)
    assert manage.resume(follow) is True and manage.resume(follow) is False
    assert follow.next_run_at is None and manage.is_pending(follow)
    follow.next_run_at = utcnow() + timedelta(seconds=50)
    manage.run_now(follow, ctx)
    db.session.expire_all()
    assert manage.follow_for("ml-prod").next_run_at is None


def test_file_follows_may_be_paused_and_run_but_never_edited_or_removed(ctx):
    follow = configured_follow("ml-prod", "state:FAILED")
    with pytest.raises(FollowProblem, match="set in the configuration file"):
        manage.update(follow, manage.read_settings("ml-prod", "other", None, None))
    with pytest.raises(FollowProblem, match="set in the configuration file"):
        manage.remove(follow)
    assert manage.pause(follow) and manage.resume(follow)
    manage.run_now(follow, ctx)
    assert manage.follow_for("ml-prod").query == "state:FAILED"


def test_remove_keeps_nothing_but_the_tasks(ctx):
    follow = manage.add("ml-prod", manage.read_settings("ml-prod", None, None, None), actor=None)
    db.session.commit()
    manage.remove(follow)
    db.session.commit()
    assert manage.follow_for("ml-prod") is None
