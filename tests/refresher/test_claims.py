"""Each database gets the refresher's lease SQL written for it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from webapp.refresher.claims import PostgresClaims
from webapp.refresher.claims import SqliteClaims
from webapp.refresher.claims import claims_for


def test_claims_follow_the_engines_dialect():
    sqlite = claims_for(sa.create_engine("sqlite://"), "me", None)
    assert isinstance(sqlite, SqliteClaims) and sqlite.owner == "me"
    postgres = claims_for(sa.create_engine("postgresql+psycopg://"), "me", 30.0)
    assert isinstance(postgres, PostgresClaims) and postgres.lease_seconds == 30.0
    with pytest.raises(RuntimeError, match="does not support 'mysql'"):
        claims_for(SimpleNamespace(dialect=SimpleNamespace(name="mysql")), "me", None)


def test_sqlite_writers_of_one_process_queue_on_one_lock():
    claims = claims_for(sa.create_engine("sqlite://"), "me", None)
    assert claims.writing() is claims.writing()
    with claims.writing():
        assert not claims.writing().acquire(blocking=False)
