"""The ``follow``, ``follow_interval`` and ``follow_backfill`` source keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from webapp.config import ConfigError
from webapp.config import build_source
from webapp.config import load_sources_file
from webapp.providers.mixpeek import MixpeekProvider

ML = {"name": "ml", "provider": "opensearch-ml", "base_url": "http://ml.internal:9200"}
CONDUCTOR = {"name": "flows", "provider": "conductor", "base_url": "http://conductor.internal"}


def test_no_follow_unless_one_is_given():
    source = build_source(ML)
    assert source.follow is None
    assert (source.follow_interval, source.follow_backfill) == (60.0, 200)
    assert build_source({**ML, "follow": "  "}).follow is None


def test_a_follow_takes_the_import_query_syntax():
    query = '{"term": {"function_name": "TEXT_EMBEDDING"}}'
    source = build_source({**ML, "follow": query, "follow_interval": 5, "follow_backfill": 10})
    assert (source.follow, source.follow_interval, source.follow_backfill) == (query, 5, 10)
    assert build_source({**ML, "follow": "*"}).follow == "*"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {**ML, "follow": '{"term": '},
            "source 'ml': field 'follow': the query cannot be read: is not valid JSON",
        ),
        (
            {**CONDUCTOR, "follow": "status NOT IN (FAILED)"},
            "source 'flows': field 'follow': the query cannot be read",
        ),
        ({**ML, "follow": "*", "follow_interval": 1}, "source 'ml': field 'follow_interval'"),
        ({**ML, "follow_interval": 86401}, "source 'ml': field 'follow_interval'"),
        ({**ML, "follow_backfill": 0}, "source 'ml': field 'follow_backfill'"),
        ({**ML, "follow_backfill": 10_001}, "source 'ml': field 'follow_backfill'"),
    ],
)
def test_a_follow_that_cannot_run_stops_start_up(entry, message):
    with pytest.raises(ConfigError) as caught:
        build_source(entry)
    assert str(caught.value).startswith(message), str(caught.value)


def test_a_follow_needs_an_upstream_search(monkeypatch):
    monkeypatch.setattr(MixpeekProvider, "can_search", False)
    entry = {
        "name": "mx",
        "provider": "mixpeek",
        "base_url": "http://mixpeek.internal",
        "api_key_env": "MX_KEY",
        "follow": "status:FAILED",
    }
    with pytest.raises(ConfigError, match="source 'mx': field 'follow': Mixpeek has no task"):
        build_source(entry, {"MX_KEY": "k"})


def test_the_file_names_the_source_and_the_field(tmp_path: Path):
    path = tmp_path / "sources.toml"
    path.write_text(
        '[[sources]]\nname = "ml"\nprovider = "opensearch-ml"\n'
        'base_url = "http://ml.internal:9200"\nfollow = "state:"\nfollow_interval = 2\n'
    )
    with pytest.raises(ConfigError, match="source 'ml': field 'follow_interval'"):
        load_sources_file(path)
