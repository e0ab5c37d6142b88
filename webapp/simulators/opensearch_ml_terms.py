"""The leaf queries of the simulated ``_search``, as OpenSearch runs them on the task index.

``match_all``, ``match_none``, ``ids``, ``term``, ``terms``, ``match``, ``match_phrase``,
``prefix``, ``wildcard`` (``*`` and ``?``), ``range`` (``gt``/``gte``/``lt``/``lte``; dates as
epoch ms, ``strict_date_time`` or date math) and ``exists``, each by the field's type in the
mapping (:mod:`webapp.simulators.opensearch_ml_fields`). Builders raise :class:`ParsingError`
for what the REST layer rejects and ``FieldError`` for what a shard rejects;
:mod:`webapp.simulators.opensearch_ml_query` combines them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from webapp.simulators.opensearch_ml_fields import DATE_FORMAT
from webapp.simulators.opensearch_ml_fields import STRING_KINDS
from webapp.simulators.opensearch_ml_fields import FieldError
from webapp.simulators.opensearch_ml_fields import as_bool
from webapp.simulators.opensearch_ml_fields import as_float
from webapp.simulators.opensearch_ml_fields import as_text
from webapp.simulators.opensearch_ml_fields import date_ms
from webapp.simulators.opensearch_ml_fields import kind_of
from webapp.simulators.opensearch_ml_fields import tokens
from webapp.simulators.opensearch_ml_fields import values
from webapp.simulators.opensearch_ml_fields import zone

#: One document: its ``_id`` and its ``_source``.
Doc = tuple[str, dict[str, Any]]
Predicate = Callable[[Doc], bool]
_COMMON = frozenset({"boost", "_name"})


class ParsingError(Exception):
    """A body the REST layer cannot parse: answered as ``parsing_exception`` (400).

    ``token`` is the JSON key the error is about, which the answer locates in the body.
    """

    def __init__(self, reason: str, token: str | None = None, caused_by: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.token = token
        self.caused_by = caused_by


@dataclass(frozen=True)
class Context:
    """What a query is compiled against: the cluster's ``now`` for date math."""

    now_ms: int


def always(doc: Doc) -> bool:
    return True


def never(doc: Doc) -> bool:
    return False


def check_options(name: str, spec: Any, allowed: set[str] | frozenset[str]) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise ParsingError(f"[{name}] query malformed, no start_object after query name", name)
    for key in spec:
        if key not in allowed and key not in _COMMON:
            raise ParsingError(f"[{name}] query does not support [{key}]", key)
    return spec


def single_field(
    name: str, spec: Any, value_key: str, allowed: set[str]
) -> tuple[str, Any, dict[str, Any]]:
    """``{"field": value}`` or ``{"field": {value_key: value, ...options}}``."""
    if not isinstance(spec, dict) or not spec:
        raise ParsingError(f"[{name}] query malformed, no start_object after query name", name)
    fields = list(spec)
    if len(fields) > 1:
        raise ParsingError(
            f"[{name}] query doesn't support multiple fields, found [{fields[0]}] and "
            f"[{fields[1]}]",
            fields[1],
        )
    field, raw = fields[0], spec[fields[0]]
    if isinstance(raw, dict):
        options = check_options(name, raw, allowed | {value_key})
        if value_key not in options:
            raise ParsingError(f"[{name}] query requires a [{value_key}]", field)
        return field, options[value_key], options
    if isinstance(raw, list):
        raise ParsingError(f"[{name}] query does not support array of values", field)
    return field, raw, {}


def on_values(field: str, test: Callable[[Any], bool]) -> Predicate:
    return lambda doc: any(test(value) for value in values(doc[0], doc[1], field))


def doc_number(kind: str, value: Any, ctx: Context) -> float | int | None:
    """A document's date/number/boolean value as the index holds it."""
    try:
        if kind == "date":
            return date_ms(value, now_ms=ctx.now_ms)
        if kind == "boolean":
            return int(as_bool(value))
        return as_float(value)
    except FieldError:
        return None


def query_number(
    kind: str, value: Any, ctx: Context, round_up: bool = False, **date: Any
) -> float | int:
    """A query's date/number/boolean value; date math rounds up for ``gt`` and ``lte``."""
    if kind == "date":
        return date_ms(value, now_ms=ctx.now_ms, round_up=round_up, **date)
    if kind == "boolean":
        return int(as_bool(value))
    return as_float(value)


def equals(
    field: str, value: Any, ctx: Context, *, ci: bool = False, lenient: bool = False
) -> Predicate:
    """``term``: a keyword whole and case-sensitive, a text field's one (analysed) token, a
    date/number/boolean by value."""
    kind = kind_of(field)
    try:
        if kind in STRING_KINDS or kind == "text":
            want = as_text(value).lower() if ci else as_text(value)

            def test(doc_value: Any) -> bool:
                found = tokens(doc_value) if kind == "text" else [str(doc_value)]
                return any((t.lower() if ci else t) == want for t in found)

            return on_values(field, test)
        if kind in ("date", "float", "boolean"):
            number = query_number(kind, value, ctx)
            return on_values(field, lambda v: doc_number(kind, v, ctx) == number)
    except FieldError:
        if lenient:
            return never
        raise
    return never


def _term(spec: Any, ctx: Context) -> Predicate:
    field, value, options = single_field("term", spec, "value", {"case_insensitive"})
    return equals(field, value, ctx, ci=bool(options.get("case_insensitive")))


def _terms(spec: Any, ctx: Context) -> Predicate:
    if not isinstance(spec, dict):
        raise ParsingError("[terms] query malformed, no start_object after query name", "terms")
    fields = [key for key in spec if key not in _COMMON]
    if len(fields) != 1:
        raise ParsingError("[terms] query requires exactly one field", "terms")
    wanted = spec[fields[0]]
    if isinstance(wanted, dict):
        raise ParsingError("[terms] query lookup is not evaluated by the simulator", fields[0])
    if not isinstance(wanted, list):
        raise ParsingError(f"[terms] query does not support [{fields[0]}]", fields[0])
    predicates = [equals(fields[0], value, ctx) for value in wanted]
    return lambda doc: any(p(doc) for p in predicates)


def _ids(spec: Any, ctx: Context) -> Predicate:
    given = check_options("ids", spec, {"values", "type"})
    wanted = given.get("values", [])
    if not isinstance(wanted, list):
        raise ParsingError("[ids] query does not support [values]", "values")
    ids = {str(v) for v in wanted}
    return lambda doc: doc[0] in ids


def _match(spec: Any, ctx: Context) -> Predicate:
    field, query, options = single_field(
        "match", spec, "query", {"operator", "minimum_should_match", "lenient"}
    )
    lenient = bool(options.get("lenient"))
    if kind_of(field) != "text":
        return equals(field, query, ctx, lenient=lenient)
    wanted = tokens(query)
    if not wanted:
        return never
    if str(options.get("operator", "or")).lower() == "and":
        need = len(wanted)
    elif "minimum_should_match" in options:
        need = max(1, min_should_match(len(wanted), options["minimum_should_match"]))
    else:
        need = 1

    def test(doc: Doc) -> bool:
        found = {t for v in values(doc[0], doc[1], field) for t in tokens(v)}
        return sum(1 for t in wanted if t in found) >= need

    return test


def _match_phrase(spec: Any, ctx: Context) -> Predicate:
    field, query, _ = single_field("match_phrase", spec, "query", set())
    return phrase(field, query, ctx)


def phrase(field: str, query: Any, ctx: Context, *, lenient: bool = False) -> Predicate:
    """``match_phrase``: a text field's tokens in order, side by side; other fields whole."""
    if kind_of(field) != "text":
        return equals(field, query, ctx, lenient=lenient)
    wanted = tokens(query)
    if not wanted:
        return never

    def test(value: Any) -> bool:
        found = tokens(value)
        width = len(wanted)
        return any(found[i : i + width] == wanted for i in range(len(found) - width + 1))

    return on_values(field, test)


def _pattern_query(name: str, spec: Any, ctx: Context) -> Predicate:
    value_key = "value"
    if isinstance(spec, dict) and len(spec) == 1:
        inner = next(iter(spec.values()))
        if name == "wildcard" and isinstance(inner, dict) and "wildcard" in inner:
            value_key = "wildcard"
    field, value, options = single_field(
        name, spec, value_key, {"case_insensitive", "rewrite", "value", "wildcard"}
    )
    regex = re.escape(as_text(value)) + ".*" if name == "prefix" else glob(as_text(value))
    return pattern(name, field, regex, ci=bool(options.get("case_insensitive")))


def glob(text: str) -> str:
    """A ``wildcard`` value as a regular expression: ``*`` any run, ``?`` one character."""
    out = []
    escaped = False
    for char in text:
        if escaped:
            out.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        else:
            out.append(re.escape(char))
    return "".join(out)


def pattern(name: str, field: str, regex: str, *, ci: bool = False) -> Predicate:
    kind = kind_of(field)
    if kind in ("unmapped", "nested"):
        return never
    if kind not in ("keyword", "flat_object", "text"):
        raise FieldError(
            "query_shard_exception",
            f"Can only use {name} queries on keyword, text and wildcard fields - not on "
            f"[{field}] which is of type [{kind}]",
        )
    compiled = re.compile(regex, re.IGNORECASE | re.DOTALL if ci else re.DOTALL)

    def test(value: Any) -> bool:
        found = tokens(value) if kind == "text" else [str(value)]
        return any(compiled.fullmatch(t) for t in found)

    return on_values(field, test)


def _prefix(spec: Any, ctx: Context) -> Predicate:
    return _pattern_query("prefix", spec, ctx)


def _wildcard(spec: Any, ctx: Context) -> Predicate:
    return _pattern_query("wildcard", spec, ctx)


_RANGE_KEYS = {
    *("gt", "gte", "lt", "lte", "from", "to", "include_lower", "include_upper"),
    *("format", "time_zone", "relation"),
}


def _range(spec: Any, ctx: Context) -> Predicate:
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ParsingError("[range] query doesn't support multiple fields", "range")
    ((field, bounds),) = spec.items()
    spec_opts = check_options("range", bounds, _RANGE_KEYS)
    lower, upper = spec_opts.get("gte"), spec_opts.get("lte")
    lower_in, upper_in = True, True
    if "gt" in spec_opts:
        lower, lower_in = spec_opts["gt"], False
    if "lt" in spec_opts:
        upper, upper_in = spec_opts["lt"], False
    if "from" in spec_opts:
        lower, lower_in = spec_opts["from"], bool(spec_opts.get("include_lower", True))
    if "to" in spec_opts:
        upper, upper_in = spec_opts["to"], bool(spec_opts.get("include_upper", True))
    kind = kind_of(field)
    if kind in ("unmapped", "nested"):
        return never
    if kind == "_id":
        raise FieldError("illegal_argument_exception", "Field [_id] does not support range")
    if kind in ("date", "float", "boolean"):
        date: dict[str, Any] = {}
        if kind == "date":
            date = {
                "formats": spec_opts.get("format", DATE_FORMAT),
                "time_zone": zone(spec_opts.get("time_zone")),
            }
        low = None if lower is None else query_number(kind, lower, ctx, not lower_in, **date)
        high = None if upper is None else query_number(kind, upper, ctx, upper_in, **date)

        def within(value: Any) -> bool:
            return _within(doc_number(kind, value, ctx), low, high, lower_in, upper_in)

        return on_values(field, within)
    low_text = None if lower is None else as_text(lower)
    high_text = None if upper is None else as_text(upper)

    def test(value: Any) -> bool:
        found = tokens(value) if kind == "text" else [str(value)]
        return any(_within(t, low_text, high_text, lower_in, upper_in) for t in found)

    return on_values(field, test)


def _within(value: Any, low: Any, high: Any, low_in: bool, high_in: bool) -> bool:
    if value is None:
        return False
    if low is not None and (value < low or (value == low and not low_in)):
        return False
    return not (high is not None and (value > high or (value == high and not high_in)))


def _exists(spec: Any, ctx: Context) -> Predicate:
    given = check_options("exists", spec, {"field"})
    if "field" not in given:
        raise ParsingError("[exists] must be provided with a [field]", "exists")
    field = str(given["field"])
    if kind_of(field) == "_id":
        return always
    return lambda doc: bool(values(doc[0], doc[1], field))


def _match_all(spec: Any, ctx: Context) -> Predicate:
    check_options("match_all", spec, set())
    return always


def _match_none(spec: Any, ctx: Context) -> Predicate:
    check_options("match_none", spec, set())
    return never


def min_should_match(optional: int, spec: Any) -> int:
    """``minimum_should_match`` of ``optional`` clauses (``Queries.calculateMinShouldMatch``):
    ``2``, ``-1``, ``75%``, ``-25%`` and conditional ``3<90%`` forms."""
    text = str(spec).strip()
    try:
        if "<" in text:
            result = optional
            for part in re.sub(r"\s*<\s*", "<", text).split():
                bound, _, rule = part.partition("<")
                if optional <= int(bound):
                    return result
                result = min_should_match(optional, rule)
            return result
        if text.endswith("%"):
            calc = optional * int(text[:-1]) / 100
            result = optional + int(calc) if calc < 0 else int(calc)
        else:
            count = int(text)
            result = optional + count if count < 0 else count
    except ValueError:
        raise ParsingError(f"cannot read minimum_should_match [{spec}]", None) from None
    return max(result, 0)


#: Query name -> builder of its predicate.
LEAF_QUERIES: dict[str, Callable[[Any, Context], Predicate]] = {
    "match_all": _match_all,
    "match_none": _match_none,
    "ids": _ids,
    "term": _term,
    "terms": _terms,
    "match": _match,
    "match_phrase": _match_phrase,
    "prefix": _prefix,
    "wildcard": _wildcard,
    "range": _range,
    "exists": _exists,
}
