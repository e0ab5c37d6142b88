"""The OpenAPI 3.1 document of ``/api/v1``, generated from the models the API returns.

The schemas come from :mod:`webapp.web.serialize` (pydantic), the list's parameters from the
same tables :class:`~webapp.listing.query.TaskQuery` parses, so neither can drift from the code.
"""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from webapp.domain import TaskState
from webapp.listing.columns import SORTS
from webapp.listing.query import MAX_LIMIT
from webapp.version import __version__
from webapp.web import push
from webapp.web.serialize import ActionOut
from webapp.web.serialize import ErrorOut
from webapp.web.serialize import TaskOut
from webapp.web.serialize import TaskPageOut

REF = "#/components/schemas/{model}"

#: What each list parameter means (keys: the URL parameters of ``/`` and ``/api/v1/tasks``).
LIST_PARAMETERS: dict[str, str] = {
    "source": "Only this source.",
    "provider": "Only sources of this provider.",
    "state": "A normalized state, or a group: active, finished, problems.",
    "type": "Only this task type.",
    "upstream": "Only this upstream status word.",
    "label": "Only tasks with this label.",
    "created_from": "Created at or after: a date, a time, or an age such as 24h.",
    "created_to": "Created at or before: a date, a time, or an age.",
    "updated_from": "Updated at or after: a date, a time, or an age.",
    "updated_to": "Updated at or before: a date, a time, or an age.",
    "q": "Free text over ids, names, types, errors, labels, notes and raw payloads, with "
    "state: type: source: provider: upstream: label: created: updated: qualifiers.",
    "after": "Keyset paging: the `next` cursor of the previous page.",
    "before": "Keyset paging: the `prev` cursor of the following page.",
}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _list_parameters() -> list[dict[str, Any]]:
    parameters: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": text,
            "schema": {"type": "string"},
        }  # fmt: skip
        for name, text in LIST_PARAMETERS.items()
    ]
    sorts = sorted(SORTS)
    parameters.append(
        {
            "name": "sort",
            "in": "query",
            "required": False,
            "description": "A column, `-` first for descending.",
            "schema": {"type": "string", "enum": [*sorts, *(f"-{s}" for s in sorts)]},
        }
    )
    parameters.append(
        {
            "name": "limit",
            "in": "query",
            "required": False,
            "description": "Tasks per page.",
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
        }
    )
    return parameters


def _push_operation(
    body: dict[str, Any], tracked: dict[str, Any], refused: dict[str, Any], error: dict[str, Any]
) -> dict[str, Any]:
    """``POST /api/v1/tasks``: the request and answers of :mod:`webapp.web.push`."""
    location = {
        "Location": {
            "description": "The new task's API URL (when one object was posted).",
            "schema": {"type": "string"},
        }
    }
    return {
        "operationId": "trackTasks",
        "summary": "Track a task, or a list of tasks, idempotently (editors).",
        "description": "A task tracked already is answered as it is (labels and note "
        "untouched). New tasks are fetched by the refresher within moments; the answer shows "
        f"them not fetched yet. At most {push.MAX_ITEMS} items and {push.MAX_BODY_BYTES} bytes.",
        "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
        "responses": {
            "200": _json("Every task was tracked already: the tasks as they are.", tracked),
            "201": {
                **_json("At least one task is newly tracked: the tasks, in posted order.", tracked),
                "headers": location,
            },
            "400": _json(
                "A bad body (each problem names the item's index and field; nothing was "
                "tracked), or a session's request without its CSRF token.",
                refused,
            ),
            "401": _json("Sign-in is on and no valid credentials came with the request.", error),
            "403": _json("The caller is not an editor, or the dashboard is read-only.", error),
            "413": _json(f"The body is larger than {push.MAX_BODY_BYTES} bytes.", error),
            "415": _json("The body is not sent as JSON (Content-Type: application/json).", error),
        },
    }


def document(sources: list[str] | None = None) -> dict[str, Any]:
    """The whole OpenAPI document (paths relative to the server root). ``sources``, the
    configured sources' names, are the values a pushed task's ``source`` may take."""
    answers = (TaskOut, TaskPageOut, ErrorOut, ActionOut, push.PushAnswer, push.PushErrorOut)
    refs, schemas = models_json_schema(
        [*((m, "serialization") for m in answers), (push.PushBody, "validation")],
        ref_template=REF,
    )
    task, page, error, acted, tracked, refused = (refs[(m, "serialization")] for m in answers)
    track_body = refs[(push.PushBody, "validation")]
    if sources:
        title = push.PushItem.model_config["title"]
        item = next(d for d in schemas["$defs"].values() if d.get("title") == title)
        item["properties"]["source"]["enum"] = sources

    def _error(description: str) -> dict[str, Any]:
        return _json(description, error)

    unauthorized = _error("Sign-in is on and no valid credentials came with the request.")
    task_parameters = [
        {"name": "source", "in": "path", "required": True, "schema": {"type": "string"}},
        {
            "name": "task_id",
            "in": "path",
            "required": True,
            "description": "The upstream's id, URL-encoded (`/` as `%2F`).",
            "schema": {"type": "string"},
        },
    ]
    action_path = {
        "post": {
            "operationId": "actOnTask",
            "summary": "An upstream action on the task, where its state allows it (editors).",
            "parameters": [
                *task_parameters,
                {
                    "name": "action",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "enum": ["cancel", "delete", "retry"]},
                },
            ],
            "responses": {
                "200": _json("The upstream accepted the action.", acted),
                "400": _error(
                    "A session's request without its CSRF token (bearer calls need none)."
                ),
                "401": unauthorized,
                "403": _error("The caller is not an editor, or the dashboard is read-only."),
                "404": _error("No such action on this upstream, or the task is not tracked."),
                "409": _json("Not available in the task's state, or refused upstream.", acted),
                "502": _json("The upstream could not be reached or failed.", acted),
            },
        }
    }
    task_path = {
        "get": {
            "operationId": "getTask",
            "summary": "One task, with its history of state changes.",
            "parameters": task_parameters,
            "responses": {
                "200": _json("The task.", task),
                "401": unauthorized,
                "404": _error("No such source, or the task is not tracked."),
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Taskdeck API",
            "version": __version__,
            "description": "Tasks tracked by Taskdeck, read from its cache. States: "
            + ", ".join(s.value for s in TaskState)
            + ".",
        },
        "paths": {
            "/api/v1/tasks": {
                "get": {
                    "operationId": "listTasks",
                    "summary": "Tasks with the same filters, search, sort and paging as the list.",
                    "parameters": _list_parameters(),
                    "responses": {
                        "200": _json("One page of tasks.", page),
                        "400": _error("A parameter makes no sense (the message names it)."),
                        "401": unauthorized,
                    },
                },
                "post": _push_operation(track_body, tracked, refused, error),
            },
            "/api/v1/tasks/{source}/{task_id}": task_path,
            "/api/v1/tasks/{source}/{task_id}/actions/{action}": action_path,
        },
        "components": {"schemas": schemas["$defs"]},
    }
