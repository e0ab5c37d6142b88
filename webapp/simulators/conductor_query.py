"""Conductor's search ``query`` as an Elasticsearch/OpenSearch-indexed server runs it.

:class:`_Parser` ports conductor-oss ``es7-persistence/.../query/parser`` (``Expression``,
``GroupedExpression``, ``NameValue``, ``ComparisonOp``, ``ConstValue``, ``ListConst``,
``Range``; the es8 and OpenSearch modules hold the same code), quirks included:

- it reads the query's UTF-8 bytes one at a time as characters (non-ASCII arrives garbled);
- operators and ``AND``/``OR`` are upper case; ``AND``/``OR`` nest to the right with no
  precedence (``a AND b OR c`` is ``a AND (b OR c)``);
- it stops at the first thing it cannot join and ignores the rest (``a = 1 and b = 2``);
- an unquoted value is the run of ``-e0123456789.`` characters (``status = FAILED`` compares
  with an empty value), a quoted one becomes ``"text"``;
- ``IN (...)`` values are the raw text between the commas, quotes kept;
- there is no ``NOT``, ``NOT IN``, ``<=``, ``>=`` or ``LIKE``: a ``ParserException``.

:func:`compile_query` then builds ``NameValue.getFilterBuilder``'s filters over the task
index's mapping (``mappings_docType_task.json``): ``=``/``!=`` are ``query_string``
``name:value`` / ``NOT name:value``; ``<``/``>``/``BETWEEN`` ranges with the value as written
(quotes included); ``IN`` a ``terms`` query; ``STARTS_WITH`` a ``prefix`` query; ``IS NULL``
and ``IS NOT NULL`` are built inverted upstream, so ``IS NULL`` matches tasks that *have* the
field. What the parser or the index rejects raises :class:`QueryFailure` with the message the
server reports.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from typing import Any

Row = dict[str, Any]
Matcher = Callable[[Row], bool]

#: The task index's field types (``mappings_docType_task.json``); other fields are mapped
#: dynamically: numbers as ``long``, strings as ``text``.
KEYWORD = frozenset(
    {
        "correlationId",
        "reasonForIncompletion",
        "status",
        "taskDefName",
        "taskId",
        "taskType",
        "workflowId",
        "workflowType",
    }
)
DATE = frozenset({"endTime", "scheduledTime", "startTime", "updateTime"})
LONG = frozenset({"executionTime", "queueWaitTime", "workflowPriority"})
#: What the index's failure becomes in the server's ErrorResponse (``e.getMessage()``).
INDEX_FAILURE = (
    "Elasticsearch exception [type=search_phase_execution_exception, reason=all shards failed]"
)
OPERATOR_MISSING = "Expecting an operator (=, >, <, !=, BETWEEN, IN, STARTS_WITH), but found none."
_NUMBER_CHARS = frozenset("-e0123456789.")
_SPACE = " \t\n\r"
#: Java's ``String.trim`` strips every character up to U+0020.
_TRIM = "".join(map(chr, range(33)))


class QueryFailure(Exception):
    """The parser's or the index's error; ``message`` as the server reports it (``None`` for
    the NullPointerException of ``IS`` with a value other than NULL / NOT NULL)."""

    def __init__(self, message: str | None) -> None:
        super().__init__(message or "")
        self.message = message


@dataclass
class Condition:
    """``NameValue``: ``value`` is ``ConstValue.getValue()`` (``"text"`` with the quotes it
    gained, a number run, ``null`` or ``not null``)."""

    name: str
    op: str
    value: str = ""
    null: str | None = None
    values: list[str] = field(default_factory=list)
    low: str = ""
    high: str = ""


@dataclass
class Node:
    """``Expression``: a condition or a group, then optionally ``AND``/``OR`` and the rest."""

    condition: Condition | None = None
    group: Node | None = None
    joiner: str | None = None
    rest: Node | None = None

    def conditions(self) -> list[Condition]:
        """Every condition in it, left to right."""
        found = [self.condition] if self.condition else []
        for inner in (self.group, self.rest):
            found += inner.conditions() if inner else []
        return found


def parse_query(query: str) -> Node:
    """``Expression.fromString(query)``; raises :class:`QueryFailure`."""
    return _Parser(query).expression()


def compile_query(query: str) -> Matcher:
    """A matcher over indexed ``TaskSummary`` rows; an empty query matches every row (the
    server parses only a non-empty one). Raises :class:`QueryFailure`."""
    if not query:
        return lambda row: True
    return _compile(parse_query(query))


def named_task_ids(query: str) -> list[str] | None:
    """The values a query compares ``taskId`` with (``None``: it names none), as written."""
    if not query:
        return None
    try:
        conditions = parse_query(query).conditions()
    except QueryFailure:
        return None
    ids: list[str] = []
    for c in conditions:
        if c.name == "taskId" and c.op in ("=", "IN"):
            ids += c.values if c.op == "IN" else [_unquoted(c.value)]
    return ids or None


class _Parser:
    def __init__(self, query: str) -> None:
        self.data = query.encode("utf-8").decode("latin-1")
        self.pos = 0

    def peek(self, length: int) -> str:
        chunk = self.data[self.pos : self.pos + length]
        # Past the end Java's stream gives -1: the byte 0xFF, decoded as U+FFFD.
        return chunk + "\ufffd" * (length - len(chunk))

    def read(self, length: int) -> str:
        chunk = self.peek(length)
        self.pos = min(len(self.data), self.pos + length)
        return chunk

    def skip_space(self) -> None:
        while self.pos < len(self.data) and self.data[self.pos] in _SPACE:
            self.pos += 1

    def expression(self) -> Node:
        self.skip_space()
        node = Node()
        if self.peek(1) == "(":
            self.read(1)
            node.group = self.expression()
            found = self.read(1)
            if found != ")":
                raise QueryFailure(f"Expected ), found {found}")
            self.skip_space()
        else:
            node.condition = self.name_value()
        self.skip_space()
        ahead = self.peek(3)
        if ahead.startswith("OR") or ahead == "AND":
            node.joiner = "OR" if ahead.startswith("OR") else "AND"
            self.read(len(node.joiner))
            node.rest = self.expression()
        return node

    def name_value(self) -> Condition:
        condition = Condition(self.token(), self.operator())
        self.skip_space()
        if condition.op == "BETWEEN":
            condition.low, condition.high = self.range()
        if condition.op == "IN":
            condition.values = self.list()
        else:
            condition.value, condition.null = self.constant()
        self.skip_space()
        return condition

    def token(self) -> str:
        """``Name``: up to whitespace (consumed) or an operator character (kept)."""
        self.skip_space()
        start = self.pos
        while self.pos < len(self.data) and self.data[self.pos] not in "=><!" + _SPACE:
            self.pos += 1
        name = self.data[start : self.pos]
        if self.pos < len(self.data) and self.data[self.pos] in _SPACE:
            self.pos += 1
        return name.strip(_TRIM)

    def operator(self) -> str:
        self.skip_space()
        peeked = self.peek(11)
        if peeked[0] in "=><":
            op = peeked[0]
        elif peeked[:2] in ("IN", "IS", "!="):
            op = peeked[:2]
        elif peeked[:7] == "BETWEEN" or peeked == "STARTS_WITH":
            op = peeked[:7] if peeked[:7] == "BETWEEN" else peeked
        else:
            shown = self.data[self.pos : self.pos + 11].encode("latin-1")
            shown += b"\xff" * (11 - len(shown))
            raise QueryFailure(f"{OPERATOR_MISSING}  Peeked=>{shown.decode('utf-8', 'replace')}")
        self.read(len(op))
        return op

    def constant(self) -> tuple[str, str | None]:
        """``ConstValue``: (value, ``NULL``/``NOT_NULL`` or ``None``)."""
        peeked = self.peek(4)
        word = peeked.strip(_TRIM).lower()
        if peeked[0] in "\"'":
            return self.string(), None
        if word.startswith("not"):
            self.read(len("not null"))
            return "not null", "NOT_NULL"
        if word == "null":
            self.read(4)
            return "null", "NULL"
        return self.number(), None

    def string(self) -> str:
        delimiter = self.read(1)
        text: list[str] = []
        while self.pos < len(self.data):
            char = self.read(1)
            if char == delimiter:
                return f'"{"".join(text)}"'
            if char == "\\":
                char = self.read(1) if self.pos < len(self.data) else "\uffff"
            text.append(char)
        raise QueryFailure(f"String constant is not quoted with <{delimiter}> : {''.join(text)}")

    def number(self) -> str:
        start = self.pos
        while self.pos < len(self.data) and self.data[self.pos] in _NUMBER_CHARS:
            self.pos += 1
        return self.data[start : self.pos].strip(_TRIM)

    def list(self) -> list[str]:
        found = self.read(1)
        if found != "(":
            raise QueryFailure(f"Expected (, found {found}")
        values: list[str] = []
        current = ""
        while self.pos < len(self.data):
            char = self.read(1)
            if char == ")":
                return [*values, current.strip(_TRIM)]
            if char == ",":
                values.append(current.strip(_TRIM))
                current = ""
            else:
                current += char
        raise QueryFailure("Expected ')' but never encountered in the stream")

    def range(self) -> tuple[str, str]:
        low = self.number()
        self.skip_space()
        found = self.read(3)
        if found != "AND":
            raise QueryFailure(f"Expected AND, found {found}")
        self.skip_space()
        high = self.number()
        if not high:
            raise QueryFailure("Missing the upper range value...")
        return low, high


# -- the filters, over the index's field types --------------------------------------------


def _compile(node: Node) -> Matcher:
    if node.condition is not None:
        first = _condition(node.condition)
    else:
        assert node.group is not None
        first = _compile(node.group)
    if node.rest is None:
        return first
    rest = _compile(node.rest)
    if node.joiner == "AND":
        return lambda row: first(row) and rest(row)
    return lambda row: first(row) or rest(row)


def _condition(c: Condition) -> Matcher:
    name = c.name
    if c.op in ("=", "!="):
        equal = _equals(name, c.value)
        return equal if c.op == "=" else (lambda row: not equal(row))
    if c.op in ("<", ">", "BETWEEN"):
        # Ranges: ``<``/``>`` exclusive, BETWEEN inclusive (the range query's defaults).
        if c.op == "BETWEEN":
            low, high = _indexed(name, c.low), _indexed(name, c.high)
        else:
            low = high = _indexed(name, c.value)
        if name in DATE or name in LONG or name in KEYWORD:
            return lambda row: _in_range(c.op, _field(row, name), low, high)
        # A text field's range holds when one of its terms is in range.
        return lambda row: any(_in_range(c.op, w, low, high) for w in _words(row.get(name)))
    if c.op == "IN":
        if name in DATE or name in LONG:
            terms = {_indexed(name, value) for value in c.values}
            return lambda row: _field(row, name) in terms - {None}
        if name in KEYWORD:
            return lambda row: _present(row, name) and str(row[name]) in c.values
        return lambda row: _present(row, name) and bool(set(c.values) & set(_words(row[name])))
    if c.op == "IS":
        if c.null == "NULL":
            return lambda row: _present(row, name)
        if c.null == "NOT_NULL":
            return lambda row: not _present(row, name)
        raise QueryFailure(None)
    # STARTS_WITH: a prefix query, on keyword and text fields only.
    prefix = _unquoted(c.value)
    if name in DATE or name in LONG:
        raise QueryFailure(INDEX_FAILURE)
    if name in KEYWORD:
        return lambda row: _present(row, name) and str(row[name]).startswith(prefix)
    return lambda row: _present(row, name) and any(w.startswith(prefix) for w in _words(row[name]))


def _equals(name: str, value: str) -> Matcher:
    """``query_string`` ``name:value``: a quoted value is a phrase."""
    text = _unquoted(value)
    if not text or '"' in text:
        raise QueryFailure(INDEX_FAILURE)  # "name:" or an unbalanced phrase does not parse
    if name in DATE or name in LONG:
        wanted = _indexed(name, text)
        return lambda row: _field(row, name) == wanted
    if name in KEYWORD:
        return lambda row: _present(row, name) and str(row[name]) == text
    phrase = _words(text)

    def matches(row: Row) -> bool:
        words = _words(row[name]) if _present(row, name) else []
        return any(words[i : i + len(phrase)] == phrase for i in range(len(words)))

    return matches


def _present(row: Row, name: str) -> bool:
    return row.get(name) is not None


def _in_range(op: str, value: Any, low: Any, high: Any) -> bool:
    if value is None:
        return False
    if op == "<":
        return bool(value < high)
    if op == ">":
        return bool(value > low)
    return bool(low <= value <= high)


def _field(row: Row, name: str) -> Any:
    """A row's value as the index holds it (epoch ms for dates, numbers for longs); ``None``
    when it has none."""
    value = row.get(name)
    if value is None:
        return None
    if name in DATE:
        return _date_ms(str(value))
    if name in LONG:
        return value if isinstance(value, int | float) else _number(str(value))
    return str(value)


def _indexed(name: str, value: str) -> Any:
    """A query value read as the field's type; the index fails the search when it cannot."""
    parsed: float | None
    if name in DATE:
        parsed = _date_ms(value)
    elif name in LONG:
        parsed = _number(value)
    else:
        return value
    if parsed is None:
        raise QueryFailure(INDEX_FAILURE)
    return parsed


def _date_ms(text: str) -> int | None:
    """``strict_date_optional_time||epoch_millis``."""
    if re.fullmatch(r"\d{4}(-\d{2}(-\d{2}(T[\d:.]+(Z|[+-]\d{2}:?\d{2})?)?)?)?", text):
        try:
            moment = datetime.fromisoformat(text if len(text) > 7 else f"{text}-01-01"[:10])
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return int(moment.timestamp() * 1000)
    return int(text) if re.fullmatch(r"-?\d+", text) else None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _unquoted(value: str) -> str:
    """``ConstValue.getUnquotedValue``."""
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


def _words(value: Any) -> list[str]:
    """The standard analyzer's tokens, near enough: lower-cased runs of word characters."""
    return [] if value is None else re.findall(r"\w+", str(value).lower())
