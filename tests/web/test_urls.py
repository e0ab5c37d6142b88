"""The links a list page builds for its rows without the URL map each time."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from flask import url_for

from webapp.web.urls import list_url
from webapp.web.urls import task_url

ODD_IDS = ["plain-1", "a/status", "100%", "x y+z", "ü?#&=", "?q=1#x", "..", "a%2Fb"]


@pytest.mark.parametrize("task_id", ODD_IDS)
@pytest.mark.parametrize("script_root", ["", "/taskdeck"])
def test_a_task_link_is_the_routes_own(app_factory, task_id, script_root):
    app = app_factory()
    with app.test_request_context("/", environ_base={"SCRIPT_NAME": script_root}):
        for source in ("ml-prod", "orkes", "my:src", "a b"):
            task = SimpleNamespace(source=source, task_id=task_id)
            assert task_url(task) == url_for("tasks.detail", source=source, task_id=task_id)


def test_a_list_link_is_the_routes_own_and_built_once(app_factory):
    app = app_factory()
    with app.test_request_context("/"):
        first = list_url("label & more", "label")
        assert first == url_for("tasks.index", label="label & more")
        assert list_url("label & more", "label") is first
        assert list_url("ml-prod", "source") == url_for("tasks.index", source="ml-prod")
