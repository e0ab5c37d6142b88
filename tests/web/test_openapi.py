"""``/api/v1/openapi.json`` describes the API, and the live API keeps to it (schemathesis)."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.conftest import track
from webapp.simulators import SIMULATORS
from webapp.simulators.server import ServerThread
from webapp.web import push


@pytest.fixture
def editor_token(ml_app) -> str:
    """Writes need a bearer token (or a session's CSRF token), even with sign-in off."""
    result = ml_app.test_cli_runner().invoke(args=["token", "create", "fuzz", "--role", "editor"])
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


@pytest.fixture
def live_api(ml_app, ml_state, clock, driver) -> Iterator[str]:
    """Taskdeck over real HTTP with a few tasks in the cache: odd ids, history, every state."""
    module = SIMULATORS["opensearch-ml"]
    rng = random.Random(3)
    made = [
        module.add_demo_task(
            ml_state,
            rng,
            task_id=f"odd/id {n}?%",
            final=final,
            queued_seconds=1,
            running_seconds=5,
        ).task_id
        for n, final in enumerate(("succeeded", "failed", "succeeded"))
    ]
    track(ml_app, "ml-prod", *made)
    driver.pass_()
    clock.advance(3)
    driver.pass_()
    with ServerThread(ml_app) as server:
        yield server.url


def test_the_live_api_keeps_to_its_document(live_api: str, editor_token: str) -> None:
    """Generated requests for every operation: no 500, no answer outside the document."""
    schema = schemathesis.openapi.from_url(f"{live_api}/api/v1/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} == {
        "/api/v1/tasks",
        "/api/v1/tasks/{source}/{task_id}",
        "/api/v1/tasks/{source}/{task_id}/actions/{action}",
    }
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=80,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case) -> None:  # type: ignore[no-untyped-def]
            # A string the schema allows may still name no state or hold no date: a 400 that
            # says which parameter is the documented answer, not a failure.
            case.call_and_validate(
                headers={"Authorization": f"Bearer {editor_token}"},
                excluded_checks=[positive_data_acceptance],
            )

        check()


def test_the_document_names_every_list_parameter(client) -> None:
    document = client.get("/api/v1/openapi.json").get_json()
    assert document["openapi"] == "3.1.0"
    listed = {p["name"] for p in document["paths"]["/api/v1/tasks"]["get"]["parameters"]}
    assert {"source", "state", "q", "sort", "limit", "after", "before"} <= listed
    ref = document["paths"]["/api/v1/tasks/{source}/{task_id}"]["get"]["responses"]["200"]
    name = ref["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    task = document["components"]["schemas"][name]
    assert {"source", "task_id", "state", "upstream_status", "raw", "history"} <= set(
        task["properties"]
    )


def test_the_document_describes_pushing_tasks_from_the_models_that_validate_it(client) -> None:
    document = client.get("/api/v1/openapi.json").get_json()
    operation = document["paths"]["/api/v1/tasks"]["post"]
    schemas = document["components"]["schemas"]
    body_ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    body = schemas[body_ref.rsplit("/", 1)[1]]
    one, many = body["oneOf"]
    item = schemas[one["$ref"].rsplit("/", 1)[1]]
    assert many["items"] == one and (many["minItems"], many["maxItems"]) == (1, push.MAX_ITEMS)
    assert set(item["properties"]) == set(push.FIELDS) and item["additionalProperties"] is False
    assert item["properties"]["task_id"]["maxLength"] == 512
    # The configured sources are the values `source` takes (the app here has none).
    assert "enum" not in item["properties"]["source"]
    assert item["properties"]["labels"]["maxItems"] == 20
    assert {"200", "201", "400", "401", "403", "413", "415"} <= set(operation["responses"])
    assert "Location" in operation["responses"]["201"]["headers"]


def test_a_pushed_tasks_source_is_documented_as_one_of_the_configured_sources(ml_app) -> None:
    document = ml_app.test_client().get("/api/v1/openapi.json").get_json()
    [item] = [s for s in document["components"]["schemas"].values() if s["title"] == "TrackRequest"]
    assert item["properties"]["source"]["enum"] == ["ml-prod"]
