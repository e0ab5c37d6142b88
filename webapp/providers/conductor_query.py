"""What Taskdeck sends as Conductor's search ``query`` (PROVIDERS.md 3.1 and part 3).

Conductor's parser (``es7-persistence/.../query/parser``, the same in the es8 and OpenSearch
modules) reads ``name OP value`` conditions joined by ``AND``/``OR``, with parentheses. ``OP``
is one of ``=``, ``!=``, ``<``, ``>``, ``IN``, ``IS``, ``BETWEEN``, ``STARTS_WITH``, in upper
case: there is no ``NOT``, ``NOT IN``, ``<=`` or ``LIKE``. It stops at the first thing it
cannot join and ignores the rest, so ``a = 1 and b = 2`` silently searches ``a = 1`` alone.
The values of ``IN (...)`` are the raw text between the commas: Elasticsearch/OpenSearch
servers keep any quotes (``taskId IN ('a')`` finds nothing), PostgreSQL ones strip them, so
unquoted is the form every backend reads alike.

:func:`where_clause` checks a user's clause against that grammar before anything is sent
(raising ``ValueError`` with what to write instead) and sends ``IN`` values unquoted, as it
does a date compared with ``<`` or ``>`` (Elasticsearch would read the quotes as part of it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from dataclasses import field
from typing import NoReturn

OPERATORS = ("=", "!=", "<", ">", "IN", "IS", "BETWEEN", "STARTS_WITH")
_OPERATOR_LIST = ", ".join(OPERATORS)
#: Characters Conductor's list syntax cannot carry: it splits at commas up to the first ``)``
#: and keeps quotes. The parser reads bytes as characters, so non-ASCII ids arrive garbled.
_LIST_BREAKERS = frozenset(",()'\"")
_PRINTABLE_ASCII = re.compile(r"[!-~]+")
#: ``ConstValue.readNumber``: a run of these characters is an unquoted value.
_NUMBER_CHARS = frozenset("-e0123456789.")
_NAME = re.compile(r"[A-Za-z_][\w.]*")
_SYMBOL_OPERATOR = re.compile(r"!=|<=|>=|<>|==|=|<|>")
_WORD = re.compile(r"[A-Za-z_]+")
#: A clause, not free text: a field name followed by a comparison, an upper-case operator word,
#: or a lower-case one in its SQL shape (``in (``, ``is null``...), so a SQL habit Conductor
#: lacks is refused with advice instead of searched for as words. A bare ``NOT`` stays free
#: text: query-string syntax has it (``encode NOT resize``).
_LOOKS_LIKE_CLAUSE = re.compile(
    r"^[\s(]*(?i:NOT\s+)?[A-Za-z_][\w.]*\s*"
    r"(?:!=|<=|>=|<>|=|<|>|(?:IN|IS|BETWEEN|STARTS_WITH|LIKE|NOT\s+(?:IN|LIKE))\b"
    r"|(?i:in\s*\(|not\s+in\s*\(|is\s+(?:not\s+)?null\b|between\s+\S+\s+and\b"
    r"|starts_with\b|(?:not\s+)?like\b))"
)
_INSTEAD = {
    "<=": "use < or BETWEEN low AND high",
    ">=": "use > or BETWEEN low AND high",
    "<>": "use !=",
    "==": "use =",
    "NOT": "use != to leave out one value, IN to list the ones you want",
    "LIKE": "use STARTS_WITH 'prefix'",
}


def carries_unquoted(task_id: str) -> bool:
    """Whether ``task_id`` can stand unquoted in ``taskId IN (...)`` and arrive intact."""
    return bool(_PRINTABLE_ASCII.fullmatch(task_id)) and not _LIST_BREAKERS & set(task_id)


def ids_query(task_ids: list[str]) -> str:
    """``taskId IN (a,b,...)``: unquoted, as every indexing backend reads it (see module doc).
    Every id must pass :func:`carries_unquoted`."""
    return "taskId IN (" + ",".join(task_ids) + ")"


def looks_like_clause(text: str) -> bool:
    """Whether ``--query`` text is meant as a where clause rather than ``freeText``."""
    return bool(_LOOKS_LIKE_CLAUSE.match(text))


def where_clause(text: str) -> str:
    """``text`` as the ``query`` to send: checked against Conductor's grammar, with the values
    inside ``IN (...)`` and after ``<``/``>`` unquoted. Raises ``ValueError`` saying what
    Conductor cannot read."""
    return _Clause(text).read()


@dataclass
class _Clause:
    text: str
    pos: int = 0
    #: (start, end, replacement) of each value rewritten without quotes, left to right.
    edits: list[tuple[int, int, str]] = field(default_factory=list)

    def read(self) -> str:
        self.expression(depth=0)
        out: list[str] = []
        last = 0
        for start, end, replacement in self.edits:
            out.append(self.text[last:start] + replacement)
            last = end
        return "".join(out) + self.text[last:]

    # -- the grammar, as Expression/GroupedExpression/NameValue read it -------------------
    def expression(self, depth: int) -> None:
        self.skip_space()
        if self.rest.startswith("("):
            self.pos += 1
            self.expression(depth + 1)
            if not self.rest.startswith(")"):
                self.fail("a ( is never closed")
            self.pos += 1
        else:
            self.condition()
        self.skip_space()
        joiner = re.match(r"(AND|OR)\b", self.rest)
        if joiner:
            self.pos += joiner.end()
            self.expression(depth)
        elif self.rest and not (depth and self.rest.startswith(")")):
            word = _WORD.match(self.rest)
            if word and word.group().upper() in ("AND", "OR"):
                self.fail(f"write {word.group().upper()} in upper case", at_rest=True)
            self.fail("join conditions with AND or OR", at_rest=True)

    def condition(self) -> None:
        name = _NAME.match(self.rest)
        if not name or name.group().upper() == "NOT":
            if self.rest[:3].upper() == "NOT":
                self.fail(f"Conductor's query has no NOT or NOT IN: {_INSTEAD['NOT']}")
            self.fail("expected a field name")
        self.pos += name.end()
        self.skip_space()
        operator = self.operator(name.group())
        self.skip_space()
        if operator == "IN":
            self.in_list()
        elif operator == "IS":
            null = re.match(r"(NOT\s+)?NULL\b", self.rest, re.IGNORECASE)
            if not null:
                self.fail("IS takes NULL or NOT NULL")
            self.pos += null.end()
        elif operator == "BETWEEN":
            self.number("BETWEEN takes two numbers: low AND high")
            self.skip_space()
            if not self.rest.startswith("AND"):
                self.fail("BETWEEN takes two numbers: low AND high")
            self.pos += 3
            self.skip_space()
            self.number("BETWEEN takes two numbers: low AND high")
        else:
            self.value(operator)

    def operator(self, name: str) -> str:
        symbol = _SYMBOL_OPERATOR.match(self.rest)
        word = _WORD.match(self.rest)
        found = symbol.group() if symbol else (word.group() if word else self.rest[:1])
        if found in OPERATORS:
            self.pos += len(found)
            return found
        upper = found.upper()
        if upper in OPERATORS:
            self.fail(f"Conductor reads operators in upper case: write {upper}")
        if upper == "NOT":
            self.fail(f"Conductor's query has no NOT or NOT IN: {_INSTEAD['NOT']}")
        if upper in _INSTEAD:
            self.fail(f"Conductor's query has no {upper}: {_INSTEAD[upper]}")
        self.fail(f"expected an operator after {name} ({_OPERATOR_LIST})")

    def value(self, operator: str) -> None:
        quote = self.rest[:1]
        if quote in ("'", '"'):
            start, end = self.pos, self.pos + 1
            while end < len(self.text) and self.text[end] != quote:
                end += 2 if self.text[end] == "\\" else 1
            if end >= len(self.text):
                self.fail(f"a {quote} is never closed")
            self.pos = end + 1
            if operator in ("<", ">"):
                # Elasticsearch compares with the quotes included; unquoted is what it reads.
                content = self.text[start + 1 : end]
                if not content or not set(content) <= _NUMBER_CHARS:
                    self.fail(f"{operator} compares numbers or dates written unquoted (2026-01-31)")
                self.edits.append((start, end + 1, content))
            return
        if re.match(r"(not|null)\b", self.rest, re.IGNORECASE):
            self.fail("compare with NULL through IS NULL or IS NOT NULL")
        self.number("quote text values: status = 'FAILED'")

    def number(self, problem: str) -> None:
        end = self.pos
        while end < len(self.text) and self.text[end] in _NUMBER_CHARS:
            end += 1
        after = self.text[end : end + 1]
        if end == self.pos or (after and not after.isspace() and after != ")"):
            self.fail(problem)
        self.pos = end

    def in_list(self) -> None:
        if not self.rest.startswith("("):
            self.fail("IN takes a list: IN (a,b)")
        close = self.text.find(")", self.pos)
        if close < 0:
            self.fail("a ( is never closed")
        values = []
        for raw in self.text[self.pos + 1 : close].split(","):
            value = raw.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in ("'", '"'):
                value = value[1:-1]
            if not value or _LIST_BREAKERS & set(value):
                self.fail("the values in IN (...) cannot be empty or hold , ( ) or quotes")
            values.append(value)
        self.edits.append((self.pos, close + 1, "(" + ",".join(values) + ")"))
        self.pos = close + 1

    # -- reading ------------------------------------------------------------------------------
    @property
    def rest(self) -> str:
        return self.text[self.pos :]

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def fail(self, problem: str, *, at_rest: bool = False) -> NoReturn:
        near = self.rest[:30]
        where = f" (Conductor would ignore: {near!r})" if at_rest else f" near {near!r}"
        raise ValueError(f"--query: {problem}{where if near else ''}")
