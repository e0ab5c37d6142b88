"""The query DSL the simulated ``_search`` evaluates: the leaf queries of
:mod:`webapp.simulators.opensearch_ml_terms`, ``bool`` and ``constant_score`` of them, and
``query_string`` (fields, quoted phrases, ``*``/``?`` wildcards, ``AND``/``OR``/``NOT``/``+``/
``-`` with Lucene's classic precedence and ``default_operator``).

Any other query name gets the ``parsing_exception`` a cluster gives for an unknown query, so a
client never mistakes a query the simulator cannot run for one that matched nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from webapp.simulators.opensearch_ml_fields import MAPPING
from webapp.simulators.opensearch_ml_fields import kind_of
from webapp.simulators.opensearch_ml_fields import values
from webapp.simulators.opensearch_ml_terms import LEAF_QUERIES
from webapp.simulators.opensearch_ml_terms import Context
from webapp.simulators.opensearch_ml_terms import Doc
from webapp.simulators.opensearch_ml_terms import ParsingError
from webapp.simulators.opensearch_ml_terms import Predicate
from webapp.simulators.opensearch_ml_terms import always
from webapp.simulators.opensearch_ml_terms import check_options
from webapp.simulators.opensearch_ml_terms import equals
from webapp.simulators.opensearch_ml_terms import glob
from webapp.simulators.opensearch_ml_terms import min_should_match
from webapp.simulators.opensearch_ml_terms import never
from webapp.simulators.opensearch_ml_terms import pattern
from webapp.simulators.opensearch_ml_terms import phrase

__all__ = ["Context", "Doc", "ParsingError", "Predicate", "compile_query", "ids_in"]


def compile_query(query: Any, ctx: Context) -> Predicate:
    """A predicate over documents for one query clause."""
    if not isinstance(query, dict):
        raise ParsingError("[_na] query malformed, must start with start_object")
    if not query:
        raise ParsingError("query malformed, empty clause found at [{loc}]")
    if len(query) > 1:
        first, second = list(query)[:2]
        raise ParsingError(
            f"[{first}] malformed query, expected [END_OBJECT] but found [FIELD_NAME]", second
        )
    ((name, spec),) = query.items()
    build = _QUERIES.get(name)
    if build is None:
        raise ParsingError(f"unknown query [{name}]", name, f"[{{loc}}] unknown field [{name}]")
    return build(spec, ctx)


def ids_in(query: Any) -> list[str] | None:
    """The ids a top-level ``ids`` query names (so per-task faults hit batched fetches)."""
    if isinstance(query, dict) and isinstance(query.get("ids"), dict):
        wanted = query["ids"].get("values", [])
        return [str(v) for v in wanted] if isinstance(wanted, list) else None
    return None


def _clauses(value: Any, ctx: Context) -> list[Predicate]:
    items = value if isinstance(value, list) else [value]
    return [compile_query(item, ctx) for item in items]


def _bool(spec: Any, ctx: Context) -> Predicate:
    options = check_options(
        "bool",
        spec,
        {"must", "filter", "should", "must_not", "minimum_should_match", "adjust_pure_negative"},
    )
    must = _clauses(options.get("must", []), ctx) + _clauses(options.get("filter", []), ctx)
    must_not = _clauses(options.get("must_not", []), ctx)
    should = _clauses(options.get("should", []), ctx)
    given = options.get("minimum_should_match")
    need = min_should_match(len(should), given) if given is not None else 0
    # Lucene: with no required clause a document must match at least one optional clause (a
    # bool of must_not alone matches everything else: OpenSearch adds a match_all).
    if should and not must:
        need = max(need, 1)
    return _combine(must, must_not, should, need)


def _combine(
    must: list[Predicate], must_not: list[Predicate], should: list[Predicate], need: int
) -> Predicate:
    def test(doc: Doc) -> bool:
        if not all(p(doc) for p in must) or any(p(doc) for p in must_not):
            return False
        return need == 0 or sum(1 for p in should if p(doc)) >= need

    return test


def _constant_score(spec: Any, ctx: Context) -> Predicate:
    options = check_options("constant_score", spec, {"filter"})
    if "filter" not in options:
        raise ParsingError("[constant_score] requires a 'filter' element", "constant_score")
    return compile_query(options["filter"], ctx)


# -- query_string ------------------------------------------------------------------------------

_QS_OPTIONS = {"query", "default_field", "fields", "default_operator", "lenient",
               "analyze_wildcard"}  # fmt: skip
#: Query-string syntax the simulator does not evaluate: groups, ranges, boosts, fuzziness,
#: regular expressions and comparisons.
_QS_UNSUPPORTED = re.compile(r"[()\[\]{}^~/<>]")
_QS_TOKEN = re.compile(r'[+-]?(?:[^\s":]+:)?"(?:[^"\\]|\\.)*"|\S+')


def _query_string(spec: Any, ctx: Context) -> Predicate:
    options = check_options("query_string", spec, _QS_OPTIONS)
    text = options.get("query")
    if not isinstance(text, str):
        raise ParsingError("[query_string] requires 'query' field", "query_string")
    default_and = str(options.get("default_operator", "or")).lower() == "and"
    fields = options.get("fields") or [options.get("default_field", "*")]
    lenient = bool(options.get("lenient"))
    occurs: list[list[Any]] = []
    conj: str | None = None
    negate_next = False
    for token in _QS_TOKEN.findall(text):
        if token in ("AND", "&&", "OR", "||"):
            conj = "AND" if token in ("AND", "&&") else "OR"
            continue
        if token == "NOT":
            negate_next = True
            continue
        modifier = "NOT" if negate_next else None
        negate_next = False
        if token[0] in "+-" and len(token) > 1:
            modifier = "NOT" if token[0] == "-" else "REQ"
            token = token[1:]
        _add_clause(occurs, conj, modifier, _qs_term(token, fields, ctx, lenient), default_and)
        conj = None
    must = [p for occur, p in occurs if occur == "must"]
    must_not = [p for occur, p in occurs if occur == "must_not"]
    should = [p for occur, p in occurs if occur == "should"]
    if not occurs:
        return never
    return _combine(must, must_not, should, 1 if should and not must else 0)


def _add_clause(
    occurs: list[list[Any]], conj: str | None, modifier: str | None, predicate: Predicate,
    default_and: bool,
) -> None:  # fmt: skip
    """Lucene's ``QueryParserBase.addClause``: how ``AND``/``OR`` and ``+``/``-`` set each
    clause's occurrence, including the clause before the operator."""
    if occurs and conj == "AND" and occurs[-1][0] != "must_not":
        occurs[-1][0] = "must"
    if occurs and default_and and conj == "OR" and occurs[-1][0] != "must_not":
        occurs[-1][0] = "should"
    prohibited = modifier == "NOT"
    if default_and:
        required = not prohibited and conj != "OR"
    else:
        required = modifier == "REQ" or (conj == "AND" and not prohibited)
    occurs.append(["must_not" if prohibited else "must" if required else "should", predicate])


def _qs_term(token: str, fields: list[Any], ctx: Context, lenient: bool) -> Predicate:
    field, value = None, token
    if not token.startswith('"'):
        head, sep, rest = token.partition(":")
        if sep and head and rest:
            field, value = head.replace("\\", ""), rest
    quoted = value.startswith('"') and value.endswith('"') and len(value) >= 2
    if not quoted and _QS_UNSUPPORTED.search(value):
        raise ParsingError(
            f"[query_string] syntax in [{token}] is not evaluated by the simulator", "query"
        )
    targets = [field] if field is not None else _expand(fields)
    loose = lenient or field is None
    if value == "*":
        return always if field is None else (lambda doc: bool(_has(doc, field)))
    predicates = [_qs_field(name, value, quoted, ctx, loose) for name in targets]
    return lambda doc: any(p(doc) for p in predicates)


def _has(doc: Doc, field: str) -> bool:
    return bool(values(doc[0], doc[1], field))


def _qs_field(field: str, value: str, quoted: bool, ctx: Context, lenient: bool) -> Predicate:
    if quoted:
        return phrase(field, value[1:-1].replace('\\"', '"'), ctx, lenient=lenient)
    if re.search(r"(?<!\\)[*?]", value):
        if kind_of(field) not in ("keyword", "flat_object", "text"):
            return never
        return pattern("wildcard", field, glob(value))
    text = value.replace("\\", "")
    if kind_of(field) == "text":
        return LEAF_QUERIES["match"]({field: {"query": text, "lenient": lenient}}, ctx)
    return equals(field, text, ctx, lenient=lenient)


def _expand(fields: list[Any]) -> list[str]:
    """``fields``/``default_field``, with ``*`` patterns over the mapping's fields."""
    out: list[str] = []
    for name in fields:
        name = str(name)
        if "*" in name:
            regex = re.compile(glob(name))
            out += [f for f, kind in MAPPING.items() if kind != "nested" and regex.fullmatch(f)]
        else:
            out.append(name)
    return out


_QUERIES: dict[str, Callable[[Any, Context], Predicate]] = {
    **LEAF_QUERIES,
    "bool": _bool,
    "constant_score": _constant_score,
    "query_string": _query_string,
}
