"""The sources file and the environment: good files load, bad ones fail with one clear line."""

from __future__ import annotations

import pytest

from webapp import create_app
from webapp.config import ConfigError
from webapp.config import load_sources_file
from webapp.sources.registry import registry

GOOD = """
[[sources]]
name = "ml-prod"
provider = "opensearch-ml"
base_url = "https://search.internal:9200/"
poll_interval = 5
username_env = "ML_USER"
password_env = "ML_PASS"
verify_tls = false

[[sources]]
name = "nclue-kr"
provider = "nclue"
base_url = "https://nclue.apigw.ntruss.com"
access_key_env = "NCP_ACCESS"
secret_key_env = "NCP_SECRET"
timezone = "Asia/Seoul"
"""
ENV = {"ML_USER": "admin", "ML_PASS": "s3cret", "NCP_ACCESS": "AK", "NCP_SECRET": "SK"}


def write(tmp_path, text):
    path = tmp_path / "taskdeck.toml"
    path.write_text(text)
    return path


def test_good_file_loads_with_credentials_kept_secret(tmp_path):
    sources = load_sources_file(write(tmp_path, GOOD), ENV)
    ml, nclue = sources
    assert ml.name == "ml-prod" and ml.base_url == "https://search.internal:9200"
    assert ml.secret("password_env") == "s3cret"
    assert "s3cret" not in repr(ml) and "s3cret" not in str(ml.public_settings())
    assert nclue.effective_rate_limit == 1.0
    assert str(nclue.zone) == "Asia/Seoul"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("opensearch-ml", "opensearch"), "source 'ml-prod': field 'provider': unknown provider"),
        (
            ('name = "ml-prod"', 'name = "ML Prod"'),
            "source 'ML Prod': field 'name': must be a slug",
        ),
        (("https://search.internal:9200/", "ftp://x"), "source 'ml-prod': field 'base_url'"),
        (("poll_interval = 5", "poll_interval = -1"), "source 'ml-prod': field 'poll_interval'"),
        (
            ("verify_tls = false", "verify_tls = false\ncolour = 'red'"),
            "field 'colour': unknown field",
        ),
        (
            ('timezone = "Asia/Seoul"', 'timezone = "Mars/Base"'),
            "source 'nclue-kr': field 'timezone'",
        ),
        (('access_key_env = "NCP_ACCESS"\n', ""), "source 'nclue-kr'"),
        (('name = "nclue-kr"', 'name = "ml-prod"'), "source 'ml-prod': field 'name': used by two"),
        (('name = "nclue-kr"', 'name = "import"'), "field 'name': 'import' names a page"),
        (("[[sources]]", "[[sources]"), "not valid TOML"),
    ],
)
def test_bad_files_fail_with_one_line_naming_source_and_field(tmp_path, change, message):
    old, new = change
    with pytest.raises(ConfigError) as caught:
        load_sources_file(write(tmp_path, GOOD.replace(old, new, 1)), ENV)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_variable_is_named(tmp_path):
    env = dict(ENV)
    del env["ML_PASS"]
    with pytest.raises(
        ConfigError,
        match="source 'ml-prod': field 'password_env': environment variable ML_PASS is not set",
    ):
        load_sources_file(write(tmp_path, GOOD), env)


def test_app_reads_the_file_named_by_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TASKDECK_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("TASKDECK_CONFIG", str(write(tmp_path, GOOD)))
    monkeypatch.setenv("TASKDECK_SECRET_KEY", "k")
    monkeypatch.setenv("TASKDECK_REFRESHER", "false")
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    app = create_app()
    assert registry(app).names() == ["ml-prod", "nclue-kr"]
    assert app.config["REFRESHER"] is False
    assert app.config["SQLALCHEMY_DATABASE_URI"].endswith("instance/taskdeck.sqlite")


def test_secret_key_is_required_outside_testing(tmp_path, monkeypatch):
    monkeypatch.setenv("TASKDECK_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.delenv("TASKDECK_SECRET_KEY", raising=False)
    monkeypatch.delenv("TASKDECK_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="TASKDECK_SECRET_KEY is not set"):
        create_app()


@pytest.mark.sqlite_only
def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(app):
    import sqlalchemy as sa

    from webapp.db.models import db

    with app.app_context():
        assert db.session.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
        assert db.session.execute(sa.text("PRAGMA busy_timeout")).scalar() == 10000


@pytest.mark.sqlite_only
def test_an_older_database_schema_is_refused_clearly(instance_path, bare_app_factory):
    import sqlite3

    from webapp.db.setup import open_database

    database = instance_path / "taskdeck.sqlite"
    connection = sqlite3.connect(database)
    connection.execute("CREATE TABLE tasks (id INTEGER PRIMARY KEY, source TEXT)")
    connection.close()
    with pytest.raises(ConfigError) as refused:
        open_database(bare_app_factory())
    assert str(refused.value) == (
        "the database was made before schema migrations: run `taskdeck db upgrade` "
        f"(sqlite:///{database})"
    )
