"""The fields of ML Commons' task index (``.plugins-ml-task``) as OpenSearch indexes them.

The mapping is ml-commons' ``index-mappings/ml_task.json`` (schema version 5): keywords match
whole and case-sensitively, ``error`` is analysed text, ``create_time``/``last_update_time`` are
dates (``strict_date_time||epoch_millis``), ``remote_job`` is a ``flat_object`` (every leaf
indexed as a keyword string, reachable as ``remote_job.a.b``) and ``user`` is ``nested`` (so a
query outside a ``nested`` query finds nothing in it). A field outside the mapping (``task_id``
is one: the id is ``_id``) matches nothing, as on a real cluster.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterator
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from datetime import timezone
from datetime import tzinfo
from typing import Any
from zoneinfo import ZoneInfo
from zoneinfo import ZoneInfoNotFoundError

MAPPING: dict[str, str] = {
    "model_id": "keyword",
    "task_type": "keyword",
    "function_name": "keyword",
    "state": "keyword",
    "input_type": "keyword",
    "progress": "float",
    "output_index": "keyword",
    "worker_node": "keyword",
    "create_time": "date",
    "last_update_time": "date",
    "error": "text",
    "tenant_id": "keyword",
    "is_async": "boolean",
    "remote_job": "flat_object",
    "user": "nested",
    "response": "flat_object",
}
#: The mapping's ``format`` of both date fields.
DATE_FORMAT = "strict_date_time||epoch_millis"
#: Field types whose values are strings matched whole.
STRING_KINDS = frozenset({"keyword", "flat_object", "_id"})
LONG_MIN = -(2**63)
LONG_MAX = 2**63 - 1


class FieldError(Exception):
    """A value a field cannot take (a shard answers it as a failure): ``type`` and reason."""

    def __init__(self, error_type: str, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.type = error_type
        self.reason = reason
        self.status = status


def kind_of(field: str) -> str:
    """The field's type, ``_id``, or ``unmapped``; paths under a ``flat_object`` are its leaves."""
    if field == "_id":
        return "_id"
    if field in MAPPING:
        return MAPPING[field]
    root, _, rest = field.partition(".")
    if rest and MAPPING.get(root) in ("flat_object", "nested"):
        return MAPPING[root]
    return "unmapped"


def values(task_id: str, source: dict[str, Any], field: str) -> list[Any]:
    """The values the index holds for ``field`` of one document (none for null or missing)."""
    kind = kind_of(field)
    if kind == "_id":
        return [task_id]
    if kind in ("unmapped", "nested"):
        return []
    if kind == "flat_object":
        root, _, path = field.partition(".")
        node: Any = source.get(root)
        for step in path.split(".") if path else []:
            node = node.get(step) if isinstance(node, dict) else None
        return [flat_text(leaf) for leaf in _leaves(node)]
    raw = source.get(field)
    items = raw if isinstance(raw, list) else [raw]
    return [item for item in items if item is not None]


def _leaves(node: Any) -> Iterator[Any]:
    if isinstance(node, dict):
        for value in node.values():
            yield from _leaves(value)
    elif isinstance(node, list):
        for value in node:
            yield from _leaves(value)
    elif node is not None:
        yield node


def flat_text(value: Any) -> str:
    """A leaf as ``flat_object`` indexes it: the JSON text of the value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def as_text(value: Any) -> str:
    """A query value for a string field (numbers and booleans as their JSON text)."""
    if isinstance(value, dict | list) or value is None:
        raise FieldError("illegal_argument_exception", f"value [{value}] is not a string")
    return flat_text(value)


def tokens(text: Any) -> list[str]:
    """The standard analyzer, near enough: lower-cased runs of letters and digits."""
    return re.findall(r"\w+(?:['.]\w+)*", str(text).lower())


def as_float(value: Any) -> float:
    if isinstance(value, bool):
        raise FieldError("illegal_argument_exception", f"[{value}] is not a number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise FieldError("number_format_exception", f'For input string: "{value}"') from None


def as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise FieldError(
        "illegal_argument_exception",
        f"Failed to parse value [{value}] as only [true] or [false] are allowed.",
    )


# -- dates -----------------------------------------------------------------------------------

_STRICT_DATE_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:?\d{2})?"
)
_OPTIONAL_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:T\d{2}(?::\d{2}(?::\d{2}(?:\.\d{1,9})?)?)?)?(?:Z|[+-]\d{2}:?\d{2})?"
)
_MATH = re.compile(r"([+-])(\d+)([yMwdhHms])")
_UNIT_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "H": 3600, "m": 60, "s": 1}


def zone(name: str | None) -> tzinfo:
    """A ``time_zone`` parameter: an offset (``+09:00``), ``Z``/``UTC`` or a region."""
    if not name or name in ("Z", "UTC"):
        return UTC
    offset = re.fullmatch(r"([+-])(\d{2}):?(\d{2})", name)
    if offset:
        sign = 1 if offset.group(1) == "+" else -1
        minutes = sign * (int(offset.group(2)) * 60 + int(offset.group(3)))
        return timezone(timedelta(minutes=minutes))
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise FieldError("illegal_argument_exception", f"Unknown time-zone ID: {name}") from None


def date_ms(
    value: Any,
    *,
    now_ms: int,
    formats: str = DATE_FORMAT,
    round_up: bool = False,
    time_zone: tzinfo = UTC,
) -> int:
    """Epoch milliseconds of a date query value: a number, a string in one of ``formats``, or
    date math (``now-1d/d``, ``2026-01-01T00:00:00Z||+1M``); rounding goes up for ``gt`` and
    ``lte`` as OpenSearch does."""
    if isinstance(value, bool) or value is None:
        raise _unparsable(value, formats)
    if isinstance(value, int | float):
        return int(value * 1000) if "epoch_millis" not in formats else int(value)
    text = str(value).strip()
    anchor, math = (text, "")
    if text.startswith("now"):
        anchor, math = "now", text[3:]
    elif "||" in text:
        anchor, _, math = text.partition("||")
    base = now_ms if anchor == "now" else _parse_date(anchor, formats, time_zone)
    if base is None:
        raise _unparsable(value, formats)
    return _apply_math(base, math, round_up, time_zone, value, formats)


def _parse_date(text: str, formats: str, time_zone: tzinfo) -> int | None:
    for name in formats.split("||"):
        if name == "epoch_millis" and re.fullmatch(r"-?\d+(?:\.\d+)?", text):
            return int(float(text))
        if name == "epoch_second" and re.fullmatch(r"-?\d+(?:\.\d+)?", text):
            return int(float(text) * 1000)
        pattern = _STRICT_DATE_TIME if name == "strict_date_time" else _OPTIONAL_TIME
        if name.endswith("date_optional_time") or name == "strict_date_time":
            if pattern.fullmatch(text):
                moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
                if moment.tzinfo is None:
                    moment = moment.replace(tzinfo=time_zone)
                return int(moment.timestamp() * 1000)
    return None


def _apply_math(
    base: int, math: str, round_up: bool, time_zone: tzinfo, value: Any, formats: str
) -> int:
    rounding = None
    if "/" in math:
        math, _, rounding = math.partition("/")
    moment = datetime.fromtimestamp(base / 1000, UTC).astimezone(time_zone)
    consumed = 0
    for match in _MATH.finditer(math):
        if match.start() != consumed:
            raise _unparsable(value, formats)
        consumed = match.end()
        amount = int(match.group(2)) * (1 if match.group(1) == "+" else -1)
        unit = match.group(3)
        if unit in ("y", "M"):
            moment = _add_months(moment, amount * (12 if unit == "y" else 1))
        else:
            moment += timedelta(seconds=amount * _UNIT_SECONDS[unit])
    if consumed != len(math):
        raise _unparsable(value, formats)
    if rounding:
        if rounding not in ("y", "M", "w", "d", "h", "H", "m", "s"):
            raise _unparsable(value, formats)
        start = _round_down(moment, rounding)
        if round_up:
            end = _add_months(start, 12 if rounding == "y" else 1) if rounding in "yM" else None
            span = timedelta(seconds=_UNIT_SECONDS.get(rounding, 0))
            return int(((end or start + span).timestamp()) * 1000) - 1
        moment = start
    return int(moment.timestamp() * 1000)


def _add_months(moment: datetime, months: int) -> datetime:
    index = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(index, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


def _round_down(moment: datetime, unit: str) -> datetime:
    moment = moment.replace(microsecond=0)
    if unit == "s":
        return moment
    moment = moment.replace(second=0)
    if unit == "m":
        return moment
    moment = moment.replace(minute=0)
    if unit in ("h", "H"):
        return moment
    moment = moment.replace(hour=0)
    if unit == "w":
        return moment - timedelta(days=moment.weekday())
    if unit == "d":
        return moment
    moment = moment.replace(day=1)
    return moment if unit == "M" else moment.replace(month=1)


def _unparsable(value: Any, formats: str) -> FieldError:
    reason = f"failed to parse date field [{value}] with format [{formats}]"
    return FieldError("parse_exception", f"{reason}: [{reason}]")
