"""Candidate task ids in a payload, by its provider's ``payload_links`` rules. No requests.

Payloads are untrusted: the walk is bounded in depth and in nodes, only strings that look like
ids are taken, and a task yields at most :data:`MAX_CANDIDATES`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

from webapp.providers import find_provider_spec
from webapp.providers.spec import PayloadLink

#: How deep under a detail key an id may sit (an HTTP task's ``response.body.task_id`` is 3).
MAX_DEPTH = 8
#: Values looked at per task, whatever the payload's size.
MAX_NODES = 5000
MAX_CANDIDATES = 50
#: What an upstream task id looks like: printable, no spaces, not too long.
ID_SHAPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+=/-]{0,199}")


@dataclass(frozen=True)
class Candidate:
    """An id a payload names, where, and the rule that says whose task it may be."""

    task_id: str
    #: The dotted path it was found at (``outputData.response.body.task_id``).
    found_in: str
    rule: PayloadLink


def candidates(provider: str, details: Any) -> list[Candidate]:
    """The ids ``details`` (a task's details) names under its provider's rules, first path
    first, each id once."""
    spec = find_provider_spec(provider)
    if spec is None or not spec.payload_links or not isinstance(details, dict):
        return []
    found: dict[str, Candidate] = {}
    budget = [MAX_NODES]
    for rule in spec.payload_links:
        roots = [(key, details.get(key)) for key in rule.within] if rule.within else [("", details)]
        for path, value in roots:
            for where, text in _values_of(rule.key, path, value, budget):
                if len(found) >= MAX_CANDIDATES:
                    return list(found.values())
                if text not in found and ID_SHAPE.fullmatch(text):
                    found[text] = Candidate(text, where[:200], rule)
    return list(found.values())


def _values_of(key: str, path: str, value: Any, budget: list[int]) -> Iterator[tuple[str, str]]:
    """``(path, text)`` for every string held under ``key`` inside ``value``, breadth first,
    within :data:`MAX_DEPTH` and the shared node ``budget``."""
    level: list[tuple[str, Any]] = [(path, value)]
    for _ in range(MAX_DEPTH + 1):
        deeper: list[tuple[str, Any]] = []
        for where, node in level:
            budget[0] -= 1
            if budget[0] < 0:
                return
            if isinstance(node, dict):
                for name, child in islice(node.items(), MAX_NODES):
                    child_path = f"{where}.{name}" if where else str(name)
                    if name == key and isinstance(child, str):
                        yield child_path, child.strip()
                    elif isinstance(child, dict | list):
                        deeper.append((child_path, child))
            elif isinstance(node, list):
                deeper.extend((f"{where}[{i}]", child) for i, child in enumerate(node[:MAX_NODES]))
        if not deeper:
            return
        level = deeper
