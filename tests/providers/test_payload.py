"""The lenient payload field types: odd values become text or None, never a rejected task."""

from __future__ import annotations

from datetime import UTC
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from webapp.domain import FetchError
from webapp.domain import FetchErrorKind
from webapp.providers.payload import Count
from webapp.providers.payload import EpochMs
from webapp.providers.payload import Float
from webapp.providers.payload import Id
from webapp.providers.payload import IsoTime
from webapp.providers.payload import Payload
from webapp.providers.payload import Scalar
from webapp.providers.payload import Text
from webapp.providers.payload import validate_payload


class Sample(Payload):
    status: str
    text: Text = None
    id: Id = None
    scalar: Scalar = None
    number: Float = None
    count: Count = None
    epoch: EpochMs = None
    iso: IsoTime = None


def read(**fields: Any) -> Sample:
    return validate_payload(Sample, {"status": "ok", **fields}, "no status")


@pytest.mark.parametrize(
    ("field", "sent", "read_as"),
    [
        ("text", "plain", "plain"),
        ("text", 7, "7"),
        ("text", {"b": 1, "a": [2]}, '{"a": [2], "b": 1}'),
        ("id", "wf-1", "wf-1"),
        ("id", "", None),
        ("id", 7, None),
        ("scalar", 3, 3),
        ("scalar", 0.5, 0.5),
        ("scalar", True, True),
        ("scalar", "one", "one"),
        ("scalar", ["x"], '["x"]'),
        ("number", "0.75", 0.75),
        ("number", 1, 1.0),
        ("number", "n/a", None),
        ("number", False, None),
        ("count", 12, 12),
        ("count", "12", None),
        ("count", True, None),
        ("epoch", 1_767_225_600_000, datetime(2026, 1, 1, tzinfo=UTC)),
        ("epoch", "yesterday", None),
        ("epoch", 10**20, None),
        ("iso", "2026-01-01T09:00:00+09:00", datetime(2026, 1, 1, tzinfo=UTC)),
        ("iso", "2026-01-01T00:00:00", datetime(2026, 1, 1, tzinfo=UTC)),
        ("iso", "soon", None),
        ("iso", 5, None),
    ],
)
def test_odd_values_are_read_not_rejected(field: str, sent: Any, read_as: Any) -> None:
    assert getattr(read(**{field: sent}), field) == read_as


def test_zone_less_times_are_read_in_the_zone_given() -> None:
    payload = {"status": "ok", "iso": "2026-01-01T09:00:00"}
    sample = validate_payload(Sample, payload, "no status", zone=ZoneInfo("Asia/Seoul"))
    assert sample.iso == datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("payload", [{"text": "x"}, {"status": 5}, [1, 2], "text", None])
def test_what_cannot_be_tracked_is_a_bad_payload_kept_raw(payload: Any) -> None:
    with pytest.raises(FetchError) as caught:
        validate_payload(Sample, payload, "no string 'status'", status_code=200)
    error = caught.value
    assert (error.kind, error.message, error.status_code) == (
        FetchErrorKind.BAD_PAYLOAD,
        "no string 'status'",
        200,
    )
    assert error.raw == payload
