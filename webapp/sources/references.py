"""Reading what a person pastes into "track": task ids, or upstream URLs of tasks."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from webapp.sources.registry import SourceRegistry

_SEPARATORS = re.compile(r"[\s,]+")


def parse_task_references(
    text: str, default_source: str | None, registry: SourceRegistry
) -> tuple[list[tuple[str, str]], list[str]]:
    """``(references, problems)``: each reference is ``(source, task_id)``.

    One id or URL per line (commas and spaces separate too, except inside a URL). A URL is
    matched against each source's task URLs (:func:`source_from_url`), so the source is
    detected; a bare id belongs to ``default_source``.
    """
    references: list[tuple[str, str]] = []
    problems: list[str] = []
    for item in _SEPARATORS.split(text.strip()):
        if not item:
            continue
        if item.startswith(("http://", "https://")):
            found = source_from_url(item, registry)
            if found is None:
                problems.append(f"{item}: no configured source has this URL")
            else:
                references.append(found)
        elif default_source is None:
            problems.append(f"{item}: choose the source this task belongs to")
        else:
            references.append((default_source, item))
    return list(dict.fromkeys(references)), problems


def source_from_url(url: str, registry: SourceRegistry) -> tuple[str, str] | None:
    """The ``(source, task_id)`` an upstream task URL points at, if a source matches it.

    Each source's provider says where its task URLs live (its spec's ``task_urls``): under the
    source's base URL (the API) or another of its settings (a web UI).
    """
    parts = urlsplit(url)
    for source in registry:
        for shape in source.spec.task_urls:
            root_url = source.base_url if shape.root == "base_url" else source.setting(shape.root)
            if not root_url:
                continue
            root = urlsplit(root_url)
            if (parts.scheme, parts.netloc) != (root.scheme, root.netloc):
                continue
            expected = root.path.rstrip("/") + shape.prefix
            if not parts.path.startswith(expected):
                continue
            task_id = shape.task_id(parts.path[len(expected) :])
            if task_id is not None:
                return source.name, task_id
    return None
