"""How a task's provider-specific details are shown: the key fields first, then the rest."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


def human_bytes(value: int) -> str:
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} B"
