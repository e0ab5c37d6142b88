"""Reading what a person pastes into "track": task ids, or upstream URLs of tasks."""

from __future__ import annotations

import re
from urllib.parse import unquote
from urllib.parse import urlsplit

from webapp.providers import PROVIDERS
from webapp.sources.registry import SourceRegistry

_SEPARATORS = re.compile(r"[\s,]+")


def parse_task_references(
    text: str, default_source: str | None, registry: SourceRegistry
) -> tuple[list[tuple[str, str]], list[str]]:
    """``(references, problems)``: each reference is ``(source, task_id)``.

    One id or URL per line (commas and spaces separate too, except inside a URL). A URL is
    matched against each source's base URL and API path, or its UI's execution page, so the
    source is detected; a bare id belongs to ``default_source``.
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
    seen: set[tuple[str, str]] = set()
    unique = [r for r in references if not (r in seen or seen.add(r))]
    return unique, problems


def source_from_url(url: str, registry: SourceRegistry) -> tuple[str, str] | None:
    """The ``(source, task_id)`` an upstream task URL points at, if a source matches it."""
    parts = urlsplit(url)
    raw_path = parts.path
    for source in registry:
        base = urlsplit(source.base_url)
        candidates = [(base, PROVIDERS[source.provider].api_prefix + "/")]
        if source.ui_url:
            candidates.append((urlsplit(source.ui_url), "/execution/"))
        for root, prefix in candidates:
            if (parts.scheme, parts.netloc) != (root.scheme, root.netloc):
                continue
            expected = root.path.rstrip("/") + prefix
            if not raw_path.startswith(expected):
                continue
            rest = raw_path[len(expected) :].strip("/")
            if not rest:
                continue
            segments = rest.split("/")
            if prefix == "/execution/":
                # /execution/{workflowId}/{taskId}: the task is the last segment.
                if len(segments) < 2:
                    continue
                return source.name, unquote(segments[-1])
            if len(segments) == 1:
                return source.name, unquote(segments[0])
    return None
