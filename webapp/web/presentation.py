"""How a task's provider-specific details are shown: the key fields first, then the rest."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from webapp.providers import find_provider_spec
from webapp.providers.spec import ProviderSpec

#: Labels that the generic camelCase/snake_case split would get wrong (a provider's spec adds
#: its own for its detail keys).
FIELD_LABELS = {"api": "API", "ui": "UI"}
#: Raw payloads larger than this are shown cut, with the whole one downloadable.
RAW_DISPLAY_LIMIT = 100_000


@dataclass(frozen=True)
class Field:
    key: str
    value: Any
    #: ``metric``, ``bytes``, ``list``, ``json`` or ``text``: how the template renders it.
    kind: str
    #: The provider's label for the key, where it has one (else the template derives one).
    label: str | None = None


def _field(spec: ProviderSpec | None, key: str, value: Any) -> Field:
    shown = spec.field_format(key) if spec is not None else None
    wanted = shown.kind if shown is not None else None
    label = shown.label if shown is not None else None
    if wanted == "metric" and isinstance(value, int | float) and not isinstance(value, bool):
        return Field(key, value, "metric", label)
    if wanted == "bytes" and isinstance(value, int) and not isinstance(value, bool):
        return Field(key, value, "bytes", label)
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return Field(key, value, "list", label)
    if isinstance(value, dict | list):
        return Field(key, value, "json", label)
    return Field(key, value, "text", label)


def split_details(provider: str, details: dict[str, Any]) -> tuple[list[Field], list[Field]]:
    """``(key fields, other fields)`` for the detail page, as the provider's spec orders and
    labels them."""
    spec = find_provider_spec(provider)
    keys = spec.key_fields if spec is not None else ()
    first = [_field(spec, k, details[k]) for k in keys if k in details]
    rest = [_field(spec, k, v) for k, v in sorted(details.items()) if k not in keys]
    return first, rest


#: Characters no link of ours may hold: whitespace and controls, which browsers strip or
#: fold in ways that can turn ``java\tscript:`` back into a scheme.
_UNSAFE_IN_LINKS = re.compile(r"[\x00-\x20\x7f-\x9f\\]")


def safe_link(url: object) -> str | None:
    """``url`` if it may be a link on our pages (an absolute http(s) URL with a host), else
    ``None`` (shown as text). The one place that decides which upstream-given URLs become
    ``href`` values: ``javascript:``, ``data:``, relative and protocol-relative ones never do.
    """
    if not isinstance(url, str) or not url or _UNSAFE_IN_LINKS.search(url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return url


def human_bytes(value: int) -> str:
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} B"


#: The timeline bar's drawing width (SVG user units; the bar stretches to its box).
TIMELINE_WIDTH = 1000.0
TIMELINE_GAP = 4.0
#: A moment in a state still shows as a sliver.
TIMELINE_MIN_SEGMENT = 6.0


@dataclass(frozen=True)
class Segment:
    """One state's stretch of the detail page's timeline bar, in SVG user units."""

    x: float
    width: float


def timeline_segments(seconds: list[float | None]) -> list[Segment]:
    """Where each state's stretch of the timeline bar goes, as wide as the time spent in it
    (a final state, ``None``, gets the sliver).

    Drawn as SVG geometry, not inline ``style`` widths, which the Content-Security-Policy
    (``style-src 'self'``) would refuse.
    """
    if not seconds:
        return []
    count = len(seconds)
    # Gaps take at most half the bar, however many state changes a task went through.
    gap = min(TIMELINE_GAP, TIMELINE_WIDTH / (2 * count))
    room = TIMELINE_WIDTH - gap * (count - 1)
    floor = min(TIMELINE_MIN_SEGMENT, room / count)
    spare = room - floor * count
    spent = [max(s or 0.0, 0.0) for s in seconds]
    total = sum(spent)
    segments = []
    x = 0.0
    for value in spent:
        width = floor + (spare * value / total if total else spare / count)
        segments.append(Segment(round(x, 1), round(width, 1)))
        x += width + gap
    return segments
