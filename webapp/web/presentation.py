"""How a task's provider-specific details are shown: the key fields first, then the rest."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Detail keys worth showing first, per provider, in this order (the rest follow).
KEY_FIELDS: dict[str, tuple[str, ...]] = {
    "opensearch-ml": ("function_name", "worker_nodes", "progress", "input_type", "output_index"),
    "mixpeek": ("description", "inputs", "outputs", "batch_id", "bucket_id", "cluster_id"),
    "conductor": (
        "workflowType",
        "referenceTaskName",
        "taskDefName",
        "workerId",
        "retryCount",
        "inputData",
        "outputData",
    ),
    "nclue": ("auroc", "line_count", "disk_usage", "train_feature_name", "test_feature_name"),
}
#: Labels that the generic camelCase/snake_case split would get wrong.
FIELD_LABELS = {"auroc": "AUROC", "auroc_raw": "AUROC (as sent)", "api": "API", "ui": "UI"}
#: Detail keys that are metrics (numbers shown with their precision).
METRIC_KEYS = frozenset({"auroc", "progress"})
BYTE_KEYS = frozenset({"disk_usage"})
#: Detail keys the page shows in sections of their own.
SECTION_KEYS = frozenset({"logs"})
#: Raw payloads larger than this are shown cut, with the whole one downloadable.
RAW_DISPLAY_LIMIT = 100_000


@dataclass(frozen=True)
class Field:
    key: str
    value: Any
    #: ``metric``, ``bytes``, ``list``, ``json`` or ``text``: how the template renders it.
    kind: str


def _kind(key: str, value: Any) -> str:
    if key in METRIC_KEYS and isinstance(value, int | float):
        return "metric"
    if key in BYTE_KEYS and isinstance(value, int):
        return "bytes"
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return "list"
    if isinstance(value, dict | list):
        return "json"
    return "text"


def split_details(provider: str, details: dict[str, Any]) -> tuple[list[Field], list[Field]]:
    """``(key fields, other fields)`` for the detail page."""
    keys = KEY_FIELDS.get(provider, ())
    first = [Field(k, details[k], _kind(k, details[k])) for k in keys if k in details]
    rest = [Field(k, v, _kind(k, v)) for k, v in sorted(details.items()) if k not in keys]
    return first, rest


def human_bytes(value: int) -> str:
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} B"
