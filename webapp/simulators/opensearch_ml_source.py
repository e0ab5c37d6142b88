"""``_source`` filtering of search hits, as ``FetchSourceContext`` and ``XContentMapValues.filter``
read it: patterns are dotted paths where ``*`` matches any run of characters; a pattern that
names an object keeps everything under it; excludes win over includes; an object left with
nothing included disappears.

ML Commons' search (``RestActionUtils.getSourceContext``) always rebuilds the context with
fetching on, so ``"_source": false`` still returns whole documents there.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from webapp.simulators.opensearch_ml_terms import ParsingError


def parse_source(value: Any) -> tuple[list[str], list[str]]:
    """``(includes, excludes)`` of a body's ``_source``; both empty: the whole document."""
    if value is None or isinstance(value, bool):
        return [], []
    if isinstance(value, str):
        return [value], []
    if isinstance(value, list):
        return _patterns(value, "_source"), []
    if isinstance(value, dict):
        includes: list[str] = []
        excludes: list[str] = []
        for key, patterns in value.items():
            if key in ("includes", "include"):
                includes += _patterns(patterns, key)
            elif key in ("excludes", "exclude"):
                excludes += _patterns(patterns, key)
            else:
                raise ParsingError(f"Unknown key for a START_ARRAY in [{key}].", key)
        return includes, excludes
    raise ParsingError(
        "Expected one of [VALUE_BOOLEAN, VALUE_STRING, START_ARRAY, START_OBJECT] but found "
        "[VALUE_NUMBER]",
        "_source",
    )


def _patterns(value: Any, key: str) -> list[str]:
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(item, str) for item in items):
        raise ParsingError(f"Unknown key for a VALUE_NUMBER in [{key}].", key)
    return list(items)


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)


def _matches(patterns: list[str], path: str) -> bool:
    return any(_regex(p).fullmatch(path) for p in patterns)


def _may_match_below(patterns: list[str], path: str) -> bool:
    """Could an include pattern name something under ``path``?"""
    return any("*" in p or p.startswith(path + ".") for p in patterns)


def filter_source(
    source: dict[str, Any], includes: list[str], excludes: list[str]
) -> dict[str, Any]:
    if not includes and not excludes:
        return source
    return _filter_object(source, "", includes, excludes, included=not includes)


def _filter_object(
    obj: dict[str, Any], prefix: str, includes: list[str], excludes: list[str], included: bool
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in obj.items():
        path = prefix + key
        if _matches(excludes, path):
            continue
        whole = included or _matches(includes, path)
        if isinstance(value, dict):
            if whole or _may_match_below(includes, path):
                kept = _filter_object(value, path + ".", includes, excludes, whole)
                if kept or (whole and not value):
                    out[key] = kept
        elif isinstance(value, list) and any(isinstance(item, dict) for item in value):
            if whole or _may_match_below(includes, path):
                items = [
                    _filter_object(item, path + ".", includes, excludes, whole)
                    if isinstance(item, dict)
                    else item
                    for item in value
                ]
                kept_items = [item for item in items if item != {} or whole]
                if kept_items:
                    out[key] = kept_items
        elif whole:
            out[key] = value
    return out
