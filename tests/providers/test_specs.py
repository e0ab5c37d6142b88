"""Every registered provider's spec is complete and agrees with its client and its simulator."""

from __future__ import annotations

import importlib

import pytest

from webapp.config import SourceConfig
from webapp.providers import PROVIDERS
from webapp.providers import provider_spec
from webapp.providers.spec import TaskUrl
from webapp.simulators import SIMULATORS

each_provider = pytest.mark.parametrize("name", list(PROVIDERS))


@each_provider
def test_spec_names_its_client_and_simulator(name: str) -> None:
    spec = provider_spec(name)
    client = PROVIDERS[name]
    assert spec.name == name == client.name
    assert (client.label, client.times_note) == (spec.label, spec.times_note)
    assert name in SIMULATORS
    importlib.import_module(spec.simulator)
    # Searching clients tell people how their search reads.
    assert bool(spec.search_help) == client.can_search


@each_provider
def test_its_source_fields_do_not_shadow_common_ones(name: str) -> None:
    spec = provider_spec(name)
    own = [*spec.credentials.fields, *(setting.name for setting in spec.settings)]
    assert not set(own) & set(SourceConfig.model_fields)
    assert all(field.endswith("_env") for field in spec.credentials.fields)
    rules = spec.credentials
    named = {f for pair in rules.pairs for f in pair} | set(rules.required)
    named |= {f for group in rules.alternatives for f in group}
    assert named <= set(rules.fields)


@each_provider
def test_its_api_task_url_is_recognised(name: str) -> None:
    spec = provider_spec(name)
    api = [shape for shape in spec.task_urls if shape.root == "base_url"]
    assert api and api[0].prefix == PROVIDERS[name].api_prefix + "/"
    assert api[0].task_id("a%2Fb") == "a/b"
    assert api[0].task_id("a/b") is None and api[0].task_id("") is None


def test_task_url_patterns_match_whole_paths() -> None:
    shape = TaskUrl("/execution/{workflow_id}/{task_id}", root="ui_url")
    assert shape.prefix == "/execution/"
    assert shape.task_id("wf-1/t%201/") == "t 1"
    assert shape.task_id("wf-1") is None and shape.task_id("wf-1/t/x") is None
