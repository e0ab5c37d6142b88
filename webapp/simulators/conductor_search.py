"""Conductor's task search (PROVIDERS.md 3.1, 3.3): ``GET /api/tasks/search`` and ``search-v2``.

``TaskSummary`` rows as Conductor writes them, the SQL-like ``query`` subset, ``freeText``,
``sort`` and ``start``/``size`` paging. The app in :mod:`webapp.simulators.conductor` serves it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from typing import Any

from werkzeug.datastructures import MultiDict


@dataclass
class Search:
    """One search request, parsed; :meth:`answer` runs it over the tasks' ``Task`` JSON."""

    start: int
    size: int
    matcher: Matcher
    free_text: str
    sort: list[str]

    @classmethod
    def parse(cls, args: MultiDict[str, str]) -> Search:
        """Raises ``ValueError`` (a :class:`QueryError` for the query) when Conductor would
        answer 400."""
        start = int(args.get("start", 0))
        size = int(args.get("size", 100))
        matcher = parse_query(args.get("query", ""))
        return cls(start, size, matcher, args.get("freeText", "*"), args.getlist("sort"))

    def answer(self, docs: list[dict[str, Any]], *, full: bool) -> dict[str, Any]:
        """``{totalHits, results}``: summaries, or the full documents for ``search-v2``."""
        hits: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for doc in docs:
            row = summary(doc)
            if self.matcher(row) and free_text_matches(self.free_text, row):
                hits.append((doc, row))
        for spec in reversed(self.sort):
            field, _, order = spec.partition(":")
            hits.sort(key=_by_field(field), reverse=order.upper() == "DESC")
        page = hits[max(0, self.start) : max(0, self.start) + max(0, self.size)]
        return {"totalHits": len(hits), "results": [doc if full else row for doc, row in page]}


def _by_field(field: str) -> Callable[[tuple[dict[str, Any], dict[str, Any]]], tuple[bool, str]]:
    """A sort key on one summary field; rows without it go last."""
    return lambda hit: (hit[1].get(field) is None, str(hit[1].get(field, "")))


# -- TaskSummary ----------------------------------------------------------------------------


def _iso(epoch_ms: Any) -> str:
    """``TaskSummary``'s ``yyyy-MM-dd'T'HH:mm:ss.SSS'Z'`` in GMT; 0 becomes 1970-01-01."""
    value = epoch_ms if isinstance(epoch_ms, int) and not isinstance(epoch_ms, bool) else 0
    moment = datetime.fromtimestamp(value / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value % 1000:03d}Z"


def _compact(value: Any) -> str | None:
    """A map serialized as Jackson writes it (no spaces); ``None`` stays null."""
    return None if value is None else json.dumps(value, separators=(",", ":"))


def summary(doc: dict[str, Any]) -> dict[str, Any]:
    """``new TaskSummary(task)``, in its field order; null fields are left out (NON_NULL)."""
    out: dict[str, Any] = {
        "workflowId": doc.get("workflowInstanceId"),
        "workflowType": doc.get("workflowType"),
        "correlationId": doc.get("correlationId"),
        "scheduledTime": _iso(doc.get("scheduledTime")),
        "startTime": _iso(doc.get("startTime")),
        "updateTime": _iso(doc.get("updateTime")),
        "endTime": _iso(doc.get("endTime")),
        "status": doc.get("status"),
        "reasonForIncompletion": doc.get("reasonForIncompletion"),
        "executionTime": 0,
        "queueWaitTime": doc.get("queueWaitTime", 0),
        "taskDefName": doc.get("taskDefName"),
        "taskType": doc.get("taskType"),
        "input": _compact(doc.get("inputData")),
        "output": _compact(doc.get("outputData")),
        "taskId": doc.get("taskId"),
        "workflowPriority": doc.get("workflowPriority", 0),
        "domain": doc.get("domain"),
    }
    end, start = doc.get("endTime"), doc.get("startTime")
    if isinstance(end, int) and end > 0 and isinstance(start, int):
        out["executionTime"] = end - start
    return {key: value for key, value in out.items() if value is not None}


# -- the query subset -----------------------------------------------------------------------


class QueryError(ValueError):
    """A ``query`` the simulator (or Conductor's parser) cannot read."""


_TOKEN = re.compile(
    r"\s*(?:'(?P<single>[^']*)'|\"(?P<double>[^\"]*)\"|(?P<op>!=|=|\(|\)|,)"
    r"|(?P<word>[^\s=!(),'\"]+))"
)
Matcher = Callable[[dict[str, Any]], bool]


def _tokens(text: str) -> list[tuple[str, str]]:
    """(kind, text) pairs: kind is ``value`` for quoted strings, ``op`` or ``word``."""
    out: list[tuple[str, str]] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise QueryError(f"Invalid query near position {position}")
        position = match.end()
        if match.group("single") is not None or match.group("double") is not None:
            out.append(("value", match.group("single") or match.group("double") or ""))
        elif match.group("op"):
            out.append(("op", match.group("op")))
        else:
            out.append(("word", match.group("word")))
    return out


def parse_query(text: str) -> Matcher:
    """A matcher over summaries for the SQL-like ``query`` (an empty query matches all)."""
    tokens = _tokens(text or "")
    if not tokens:
        return lambda row: True
    position = 0

    def peek() -> tuple[str, str] | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> tuple[str, str]:
        nonlocal position
        if position >= len(tokens):
            raise QueryError("Invalid query: unexpected end")
        position += 1
        return tokens[position - 1]

    def keyword(word: str) -> bool:
        token = peek()
        return token is not None and token[0] == "word" and token[1].upper() == word

    def value() -> str:
        kind, text = take()
        if kind == "op":
            raise QueryError(f"Invalid query: expected a value, got {text!r}")
        return text

    def values() -> list[str]:
        if take() != ("op", "("):
            raise QueryError("Invalid query: expected '(' after IN")
        out = [value()]
        while peek() == ("op", ","):
            take()
            out.append(value())
        if take() != ("op", ")"):
            raise QueryError("Invalid query: expected ')'")
        return out

    def atom() -> Matcher:
        if peek() == ("op", "("):
            take()
            inner = disjunction()
            if take() != ("op", ")"):
                raise QueryError("Invalid query: expected ')'")
            return inner
        kind, field = take()
        if kind != "word":
            raise QueryError(f"Invalid query: expected a field name, got {field!r}")
        if keyword("NOT"):
            take()
            if not keyword("IN"):
                raise QueryError("Invalid query: expected IN after NOT")
            take()
            excluded = values()
            return lambda row: _text(row.get(field)) not in excluded
        if keyword("IN"):
            take()
            allowed = values()
            return lambda row: _text(row.get(field)) in allowed
        kind, op = take()
        if (kind, op) == ("op", "="):
            wanted = value()
            return lambda row: _text(row.get(field)) == wanted
        if (kind, op) == ("op", "!="):
            unwanted = value()
            return lambda row: _text(row.get(field)) != unwanted
        raise QueryError(f"Unsupported operator {op!r} in the simulator's query subset")

    def conjunction() -> Matcher:
        parts = [atom()]
        while keyword("AND"):
            take()
            parts.append(atom())
        return lambda row: all(part(row) for part in parts)

    def disjunction() -> Matcher:
        parts = [conjunction()]
        while keyword("OR"):
            take()
            parts.append(conjunction())
        return lambda row: any(part(row) for part in parts)

    matcher = disjunction()
    if position != len(tokens):
        raise QueryError(f"Invalid query: unexpected {tokens[position][1]!r}")
    return matcher


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value)


def task_ids_in(query: str) -> list[str] | None:
    """The task ids a ``taskId = …`` / ``taskId IN (…)`` query names, so per-task faults hit
    batched fetches too."""
    match = re.search(r"\btaskId\s*(?:=\s*(.+?)(?:\s+AND\b|\s+OR\b|$)|IN\s*\(([^)]*)\))", query)
    if match is None:
        return None
    raw = match.group(1) if match.group(1) is not None else match.group(2)
    return [part.strip().strip("'\"") for part in raw.split(",") if part.strip()]


def free_text_matches(free_text: str, row: dict[str, Any]) -> bool:
    """A small slice of ES query-string syntax: ``*``, words (anywhere) and ``field:value``."""
    haystack = json.dumps(row).lower()
    for token in free_text.split():
        if token in ("*", "AND"):
            continue
        field, sep, wanted = token.partition(":")
        if sep:
            actual = _text(row.get(field))
            wanted = wanted.strip("'\"")
            if actual is None or (wanted != "*" and actual.lower() != wanted.lower()):
                return False
        elif token.lower() not in haystack:
            return False
    return True
