"""What each provider's spec declares: the actions its upstream has, and the states in which it
takes them (PROVIDERS.md part 3)."""

from __future__ import annotations

from typing import Any

import pytest

from webapp.providers import provider_spec
from webapp.providers import provider_specs
from webapp.providers.spec import ACTION_NAMES

REMOTE = {"function_name": "REMOTE"}


def offered(provider: str, state: str, word: str, task_type: str | None = None, **details: Any):  # type: ignore[no-untyped-def]
    spec = provider_spec(provider)
    return sorted(a.name for a in spec.actions if a.allows(state, word, task_type, details))


def test_every_action_has_a_known_name_a_label_and_a_consequence() -> None:
    for spec in provider_specs():
        names = [a.name for a in spec.actions]
        assert len(names) == len(set(names)), spec.name
        for action in spec.actions:
            assert action.name in ACTION_NAMES
            assert action.label and action.consequence.endswith(".")


def test_retry_only_where_the_platform_has_one() -> None:
    having = {spec.name for spec in provider_specs() if spec.action("retry")}
    assert having == {"conductor"}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("opensearch-ml", "queued", "CREATED", "DEPLOY_MODEL"), ["delete"]),
        (("opensearch-ml", "running", "RUNNING", "DEPLOY_MODEL"), []),
        (("opensearch-ml", "running", "CANCELLING", "BATCH_PREDICTION"), ["delete"]),
        (("opensearch-ml", "succeeded", "COMPLETED", "REGISTER_MODEL"), ["delete"]),
        (("mixpeek", "queued", "QUEUED"), ["cancel"]),
        (("mixpeek", "running", "PROCESSING"), ["cancel"]),
        (("mixpeek", "failed", "FAILED"), []),
        (("conductor", "queued", "SCHEDULED"), ["cancel"]),
        (("conductor", "running", "IN_PROGRESS"), ["cancel"]),
        (("conductor", "failed", "TIMED_OUT"), ["retry"]),
        (("conductor", "cancelled", "CANCELED"), ["retry"]),
        (("conductor", "succeeded", "COMPLETED"), []),
        (("nclue", "queued", "registered"), ["delete"]),
        (("nclue", "queued", "pending"), []),
        (("nclue", "running", "in_progress"), []),
        (("nclue", "succeeded", "completed"), ["delete"]),
        (("nclue", "failed", "failed"), ["delete"]),
    ],
)
def test_actions_offered_by_state(args: tuple[str, ...], expected: list[str]) -> None:
    assert offered(*args) == expected


def test_opensearch_cancel_is_for_a_remote_models_batch_job_while_it_runs() -> None:
    assert offered("opensearch-ml", "running", "RUNNING", "BATCH_PREDICTION", **REMOTE) == [
        "cancel"
    ]
    assert offered("opensearch-ml", "queued", "CREATED", "BATCH_PREDICTION", **REMOTE) == [
        "cancel",
        "delete",
    ]
    # A local model's batch prediction has no remote job to stop.
    assert offered("opensearch-ml", "running", "RUNNING", "BATCH_PREDICTION") == []
    assert "cancel" not in offered(
        "opensearch-ml", "succeeded", "COMPLETED", "BATCH_PREDICTION", **REMOTE
    )
