"""Page cursors come back from browsers and scripts: a forged one is a 400, never a 500."""

from __future__ import annotations

import base64
import json
from datetime import UTC
from datetime import datetime

import pytest

from webapp.listing import cursors
from webapp.listing.columns import SORTS

WHEN = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def forged(values: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


@pytest.mark.parametrize("sort", sorted(SORTS))
def test_a_cursor_round_trips_for_every_sort(sort):
    sample = {str: "x", datetime: WHEN, int: 7}
    values = [sample[cursors._python_type(k.type)] for k, _ in SORTS[sort].directions(False)]
    assert cursors.decode(cursors.encode(values), sort) == values


@pytest.mark.parametrize(
    "token",
    [
        "å",  # not ASCII
        "%%%",  # not base64
        forged({"a": 1}),  # not a list
        forged([{"dt": "2026-12-01T12:00:00+00:00"}]),  # too short for the sort
        forged(["text", 5]),  # a string where a time goes
        forged([{"dt": "2026-12-01T12:00:00"}, 5]),  # a time without a zone
        forged([{"dt": "2026-12-01T12:00:00+00:00"}, "5"]),  # the id as a string
        forged([{"dt": "not a time"}, 5]),
    ],
)
def test_forged_cursors_are_refused(token, client):
    with pytest.raises(ValueError):
        cursors.decode(token, "created")
    for url in ("/", "/api/v1/tasks", "/tasks/export.json"):
        assert client.get(url, query_string={"after": token}).status_code == 400
    assert client.get("/api/v1/tasks", query_string={"before": token}).status_code == 400
