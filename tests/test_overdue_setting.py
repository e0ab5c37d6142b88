"""``overdue_after``: in the sources file (seconds, or a table per type), in the sources form
(the same as text), refused with the field named when it makes no sense."""

from __future__ import annotations

import pytest

from tests.helpers import csrf
from tests.helpers import soup
from webapp.config import ConfigError
from webapp.config import load_sources_file
from webapp.overdue.setting import as_text
from webapp.overdue.setting import bound_for
from webapp.overdue.setting import parse_overdue_after
from webapp.sources.registry import registry

FILE = """
[[sources]]
name = "ml-prod"
provider = "opensearch-ml"
base_url = "https://search.internal:9200"
overdue_after = 900

[[sources]]
name = "ml-dev"
provider = "opensearch-ml"
base_url = "https://search-dev.internal:9200"
overdue_after = {DEPLOY_MODEL = 600, "*" = 1800}

[[sources]]
name = "ml-lab"
provider = "opensearch-ml"
base_url = "https://search-lab.internal:9200"
"""


def test_the_file_sets_seconds_for_every_type_or_per_type(tmp_path):
    path = tmp_path / "taskdeck.toml"
    path.write_text(FILE)
    prod, dev, lab = load_sources_file(path, {})
    assert prod.overdue_after == 900.0
    assert bound_for(prod.overdue_after, "TRAINING") == 900.0
    assert dev.overdue_after == {"DEPLOY_MODEL": 600.0, "*": 1800.0}
    assert bound_for(dev.overdue_after, "DEPLOY_MODEL") == 600.0
    assert bound_for(dev.overdue_after, "TRAINING") == 1800.0
    assert bound_for(dev.overdue_after, None) == 1800.0
    assert lab.overdue_after is None and bound_for(lab.overdue_after, "X") is None
    assert bound_for({"DEPLOY_MODEL": 60.0}, "TRAINING") is None  # learned instead


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-5", "field 'overdue_after': overdue_after: between 0 and"),
        ('"soon"', "a number of seconds, not 'soon'"),
        ("{DEPLOY_MODEL = 0}", "type DEPLOY_MODEL: between 0 and"),
        ("true", "a number of seconds, not True"),
    ],
)
def test_nonsense_is_refused_with_the_source_and_field(tmp_path, value, message):
    path = tmp_path / "taskdeck.toml"
    path.write_text(FILE.replace("overdue_after = 900", f"overdue_after = {value}"))
    with pytest.raises(ConfigError, match="source 'ml-prod'") as caught:
        load_sources_file(path, {})
    assert message in str(caught.value)


def test_form_text_reads_like_the_file():
    assert parse_overdue_after("900") == 900.0
    assert parse_overdue_after(" ") is None
    assert parse_overdue_after("DEPLOY_MODEL=600, *=1800") == {"DEPLOY_MODEL": 600.0, "*": 1800.0}
    assert as_text({"DEPLOY_MODEL": 600.0, "*": 1800.0}) == "DEPLOY_MODEL=600, *=1800"
    assert as_text(900.0) == "900"
    with pytest.raises(ValueError, match="write TYPE=SECONDS"):
        parse_overdue_after("DEPLOY_MODEL=600, oops")


def test_the_sources_form_sets_and_shows_it(ml_app, sim_server, monkeypatch):
    monkeypatch.setenv("TEAM_MIXPEEK_KEY", "sk_test_demo_key")
    client = ml_app.test_client()
    form = {
        "csrf_token": csrf(client),
        "name": "team-mixpeek",
        "provider": "mixpeek",
        "base_url": f"{sim_server.url}/mixpeek",
        "api_key_env": "TEAM_MIXPEEK_KEY",
        "overdue_after": "thumbnail=120, *=3600",
    }
    assert client.post("/sources", data=form).status_code == 303
    source = registry(ml_app).get("team-mixpeek")
    assert source.overdue_after == {"thumbnail": 120.0, "*": 3600.0}
    edit = soup(client.get("/sources/team-mixpeek/edit"))
    assert edit.select_one("#f-overdue_after")["value"] == "thumbnail=120, *=3600"
    bad = client.post("/sources", data={**form, "name": "other", "overdue_after": "later"})
    assert bad.status_code == 422
    assert "field 'overdue_after'" in soup(bad).select_one("#form-error").get_text()
