"""``POST /_plugins/_ml/tasks/_search``: a search body as OpenSearch reads it, run over the tasks.

What a real cluster does and a client could trip on: ``from + size`` past the index's
``max_result_window`` (10,000) is a 400; ``search_after`` resumes strictly after the given sort
values (it needs a sort of as many keys and ``from`` 0); ``sort`` refuses unmapped and text fields
and, when ``indices.id_field_data.enabled`` is off, ``_id``; ``hits.total`` stops at 10,000
("gte") unless ``track_total_hits`` says otherwise; ``_source`` takes a boolean, a pattern, a
list of patterns or ``includes``/``excludes`` (ML Commons turns ``false`` back into ``true``:
``RestActionUtils.getSourceContext`` always builds a fetching context). Body keys the
simulator does not evaluate (aggregations, highlighting, collapse...) are refused with a
``parsing_exception``, as an unknown key is, rather than ignored.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from webapp.simulators.opensearch_ml_fields import LONG_MAX
from webapp.simulators.opensearch_ml_fields import LONG_MIN
from webapp.simulators.opensearch_ml_fields import FieldError
from webapp.simulators.opensearch_ml_fields import as_bool
from webapp.simulators.opensearch_ml_fields import as_float
from webapp.simulators.opensearch_ml_fields import date_ms
from webapp.simulators.opensearch_ml_fields import kind_of
from webapp.simulators.opensearch_ml_fields import values
from webapp.simulators.opensearch_ml_query import Context
from webapp.simulators.opensearch_ml_query import ParsingError
from webapp.simulators.opensearch_ml_query import Predicate
from webapp.simulators.opensearch_ml_query import compile_query
from webapp.simulators.opensearch_ml_source import filter_source
from webapp.simulators.opensearch_ml_source import parse_source

INDEX = ".plugins-ml-task"
INDEX_UUID = "Zq3sOd5bRkeNvLM3xRP0Wg"
NODE = "KfEEGG7_SsKZVFqI4ko2FA"
#: ``index.max_result_window``'s default.
MAX_RESULT_WINDOW = 10_000
#: Hits counted exactly unless ``track_total_hits`` says otherwise.
TRACK_TOTAL_HITS = 10_000
#: Body keys the simulator evaluates, or that change nothing it answers.
_BODY_KEYS = {
    *("query", "post_filter", "from", "size", "sort", "_source", "search_after"),
    *("track_total_hits", "track_scores", "timeout", "version", "seq_no_primary_term"),
}
_SORTABLE = {"keyword", "date", "float", "boolean", "_id"}
_NUMERIC = {"date", "float", "boolean", "_doc", "_score"}


class SearchError(Exception):
    """An error answer: the HTTP status and the OpenSearch error envelope."""

    def __init__(self, status: int, error: dict[str, Any], root: dict[str, Any] | None = None):
        super().__init__(error.get("reason"))
        self.status = status
        body = {"root_cause": [root or _without(error, "caused_by")], **error}
        self.body = {"error": body, "status": status}


def _without(error: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in error.items() if k != key}


def rest_error(error_type: str, reason: str, status: int = 400) -> SearchError:
    """An error of the REST layer (the body cannot be read)."""
    return SearchError(status, {"type": error_type, "reason": reason})


def parsing_error(exc: ParsingError, raw: str) -> SearchError:
    """``parsing_exception`` with the line and column of the key it is about."""
    line, col = _locate(raw, exc.token)
    where = f"{line}:{col}"
    error: dict[str, Any] = {
        "type": "parsing_exception",
        "reason": exc.reason.replace("{loc}", where),
        "line": line,
        "col": col,
    }
    if exc.caused_by:
        reason = exc.caused_by.replace("{loc}", where)
        error["caused_by"] = {"type": "named_object_not_found_exception", "reason": reason}
    return SearchError(400, error)


def _locate(raw: str, token: str | None) -> tuple[int, int]:
    at = raw.find(json.dumps(token)) if token else -1
    if at < 0:
        return 1, 1
    return raw.count("\n", 0, at) + 1, at - raw.rfind("\n", 0, at)


def shard_failure(error_type: str, reason: str, status: int = 400) -> SearchError:
    """Every shard failed: ``search_phase_execution_exception`` around the shard's error."""
    cause: dict[str, Any] = {"type": error_type, "reason": reason}
    if error_type == "query_shard_exception":
        cause.update(index=INDEX, index_uuid=INDEX_UUID)
    error = {
        "type": "search_phase_execution_exception",
        "reason": "all shards failed",
        "phase": "query",
        "grouped": True,
        "failed_shards": [{"shard": 0, "index": INDEX, "node": NODE, "reason": cause}],
        "caused_by": cause,
    }
    return SearchError(status, error, cause)


@dataclass(frozen=True)
class SortKey:
    field: str
    kind: str
    descending: bool
    #: ``_first``, ``_last`` or a value for documents without the field.
    missing: Any = "_last"
    unmapped_type: str | None = None


@dataclass(frozen=True)
class Hit:
    """A document the search runs over: ``_id``, ``_source`` and its index bookkeeping."""

    task_id: str
    source: dict[str, Any]
    version: int
    seq_no: int


@dataclass
class Search:
    """One search body, read as the REST layer reads it; :meth:`answer` runs it."""

    raw: str
    query: Predicate
    post_filter: Predicate | None
    start: int
    size: int
    sort: list[SortKey]
    includes: list[str]
    excludes: list[str]
    search_after: list[Any] | None
    track_total_hits: int
    track_scores: bool

    @classmethod
    def parse(cls, body: Any, raw: str, now_ms: int) -> Search:
        """Raises :class:`SearchError` for a body the REST layer refuses."""
        if not isinstance(body, dict):
            raise rest_error("parsing_exception", "Expected [START_OBJECT] but found [VALUE]")
        for key, value in body.items():
            if key not in _BODY_KEYS:
                reason = f"Unknown key for a {_token_name(value)} in [{key}]."
                raise parsing_error(ParsingError(reason, key), raw)
        ctx = Context(now_ms=now_ms)
        try:
            query = compile_query(body.get("query", {"match_all": {}}), ctx)
            post = body.get("post_filter")
            post_filter = None if post is None else compile_query(post, ctx)
            includes, excludes = parse_source(body.get("_source"))
            sort = [_sort_key(item) for item in _as_list(body.get("sort"))]
        except ParsingError as exc:
            raise parsing_error(exc, raw) from None
        except FieldError as exc:
            raise shard_failure(exc.type, exc.reason, exc.status) from None
        after = body.get("search_after")
        if after is not None and not isinstance(after, list):
            refusal = ParsingError("[search_after] must be an array", "search_after")
            raise parsing_error(refusal, raw)
        return cls(
            raw=raw,
            query=query,
            post_filter=post_filter,
            start=_count(body, "from", 0, raw),
            size=_count(body, "size", 10, raw),
            sort=sort,
            includes=includes,
            excludes=excludes,
            # An empty ``search_after`` is no ``search_after`` (``SearchService``).
            search_after=after or None,
            track_total_hits=_track_total_hits(body.get("track_total_hits"), raw),
            track_scores=bool(body.get("track_scores")),
        )

    def answer(
        self, docs: list[Hit], *, max_result_window: int = MAX_RESULT_WINDOW, id_field_data: bool
    ) -> dict[str, Any]:
        """The search response; raises :class:`SearchError` where every shard would fail."""
        window = self.start + self.size
        if window > max_result_window:
            raise shard_failure(
                "illegal_argument_exception",
                "Result window is too large, from + size must be less than or equal to: "
                f"[{max_result_window}] but was [{window}]. See the scroll api for a more "
                "efficient way to request large data sets. This limit can be set by changing "
                "the [index.max_result_window] index level setting.",
            )
        for key in self.sort:
            _check_sortable(key, id_field_data)
        matched = [
            (position, hit)
            for position, hit in enumerate(docs)
            if self.query((hit.task_id, hit.source))
            and (self.post_filter is None or self.post_filter((hit.task_id, hit.source)))
        ]
        keyed = [(self._sort_values(hit, position), hit) for position, hit in matched]
        # One stable pass per key, the last key first: ties keep the index order.
        for index in reversed(range(len(self.sort))):
            keyed.sort(key=_by_key(index, self.sort[index]), reverse=self.sort[index].descending)
        if self.search_after is not None:
            after = self._after_values()
            keyed = [pair for pair in keyed if _compare(pair[0], after, self.sort) > 0]
        page = keyed[self.start : self.start + self.size]
        scored = not self.sort or self.track_scores
        return {
            "took": 1 + len(docs) // 5000,
            "timed_out": False,
            "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
            "hits": {
                **self._total(len(matched)),
                "max_score": 1.0 if scored and page else None,
                "hits": [self._hit(hit, sort_values, scored) for sort_values, hit in page],
            },
        }

    def _total(self, count: int) -> dict[str, Any]:
        if self.track_total_hits < 0:
            return {}
        if count > self.track_total_hits:
            return {"total": {"value": self.track_total_hits, "relation": "gte"}}
        return {"total": {"value": count, "relation": "eq"}}

    def _hit(self, hit: Hit, sort_values: list[Any], scored: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "_index": INDEX,
            "_id": hit.task_id,
            "_version": hit.version,
            "_seq_no": hit.seq_no,
            "_primary_term": 1,
            "_score": 1.0 if scored else None,
            "_source": filter_source(hit.source, self.includes, self.excludes),
        }
        if self.sort:
            pairs = zip(sort_values, self.sort, strict=True)
            out["sort"] = [_shown(value, key) for value, key in pairs]
        return out

    def _sort_values(self, hit: Hit, position: int) -> list[Any]:
        return [_sort_value(key, hit, position) for key in self.sort]

    def _after_values(self) -> list[Any]:
        after = self.search_after or []
        if self.start > 0:
            raise shard_failure(
                "search_exception",
                "`from` parameter must be set to 0 when `search_after` is used.",
                status=500,
            )
        if not self.sort:
            reason = "Sort must contain at least one field."
            raise shard_failure("illegal_argument_exception", reason)
        if len(after) != len(self.sort):
            raise shard_failure(
                "illegal_argument_exception",
                f"search_after has {len(after)} value(s) but sort has {len(self.sort)}.",
            )
        return [_after_value(value, key) for value, key in zip(after, self.sort, strict=True)]


def _token_name(value: Any) -> str:
    if isinstance(value, dict):
        return "START_OBJECT"
    if isinstance(value, list):
        return "START_ARRAY"
    if isinstance(value, bool):
        return "VALUE_BOOLEAN"
    if isinstance(value, int | float):
        return "VALUE_NUMBER"
    return "VALUE_NULL" if value is None else "VALUE_STRING"


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _count(body: dict[str, Any], name: str, default: int, raw: str) -> int:
    value = body.get(name, default)
    if isinstance(value, str) and value.lstrip("-").isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise parsing_error(ParsingError(f"[{name}] must be a number", name), raw)
    if value < 0:
        raise rest_error(
            "illegal_argument_exception", f"[{name}] parameter cannot be negative, found [{value}]"
        )
    return value


def _track_total_hits(value: Any, raw: str) -> int:
    """The count up to which ``hits.total`` is exact; -1: no total at all."""
    if value is None:
        return TRACK_TOTAL_HITS
    if isinstance(value, bool):
        return LONG_MAX if value else -1
    if isinstance(value, int) and value >= -1:
        return value
    raise parsing_error(ParsingError("[track_total_hits] must be a boolean or a number"), raw)


def _sort_key(item: Any) -> SortKey:
    if isinstance(item, str):
        return SortKey(item, kind_of(item), item == "_score")
    if not isinstance(item, dict) or len(item) != 1:
        raise ParsingError("[sort] malformed: expected a field name or {field: order}", "sort")
    ((field, spec),) = item.items()
    order = spec
    options: dict[str, Any] = {}
    if isinstance(spec, dict):
        options = spec
        unknown = set(spec) - {"order", "missing", "unmapped_type", "mode", "format"}
        if unknown:
            raise ParsingError(f"[field_sort] unknown field [{sorted(unknown)[0]}]", field)
        order = spec.get("order", "desc" if field == "_score" else "asc")
    if order not in ("asc", "desc"):
        raise ParsingError(f"Unknown SortOrder [{order}]", field)
    kind = "_score" if field == "_score" else "_doc" if field == "_doc" else kind_of(field)
    return SortKey(
        field, kind, order == "desc", options.get("missing", "_last"), options.get("unmapped_type")
    )


def _check_sortable(key: SortKey, id_field_data: bool) -> None:
    if key.kind in ("_score", "_doc") or key.kind in _SORTABLE - {"_id"}:
        return
    if key.kind == "_id":
        if not id_field_data:
            raise shard_failure(
                "illegal_argument_exception",
                "Fielddata access on the _id field is disallowed, you can re-enable it by "
                "updating the dynamic cluster setting: indices.id_field_data.enabled",
            )
        return
    if key.kind == "unmapped":
        if key.unmapped_type is None:
            raise shard_failure(
                "query_shard_exception", f"No mapping found for [{key.field}] in order to sort on"
            )
        return
    if key.kind == "text":
        raise shard_failure(
            "illegal_argument_exception",
            "Text fields are not optimised for operations that require per-document field data "
            "like aggregations and sorting, so these operations are disabled by default. Please "
            f"use a keyword field instead. Alternatively, set fielddata=true on [{key.field}] in "
            "order to load field data by uninverting the inverted index. Note that this can use "
            "significant memory.",
        )
    raise shard_failure(
        "illegal_argument_exception",
        f"sorting on [{key.field}] ({key.kind}) is not evaluated by the simulator",
    )


def _sort_value(key: SortKey, hit: Hit, position: int) -> Any:
    """One hit's value for one sort key: ``min``/``max`` of a multi-valued field, and the
    sentinel Lucene substitutes for a missing one (so ``search_after`` can name it)."""
    if key.kind == "_score":
        return 1.0
    if key.kind == "_doc":
        return position
    found = [_converted(key.kind, v) for v in values(hit.task_id, hit.source, key.field)]
    found = [v for v in found if v is not None]
    if found:
        return max(found) if key.descending else min(found)
    if key.missing not in ("_first", "_last"):
        return _after_value(key.missing, key)
    if key.kind not in _NUMERIC:
        return None
    low_first = (key.missing == "_first") != key.descending
    if key.kind == "float":
        return -math.inf if low_first else math.inf
    return LONG_MIN if low_first else LONG_MAX


def _converted(kind: str, value: Any) -> Any:
    try:
        if kind == "date":
            return date_ms(value, now_ms=0)
        if kind == "float":
            return as_float(value)
        if kind == "boolean":
            return int(as_bool(value))
    except FieldError:
        return None
    return str(value)


def _after_value(value: Any, key: SortKey) -> Any:
    """A ``search_after`` (or ``missing``) value in the sort key's own type."""
    try:
        if key.kind in ("date", "_doc", "boolean"):
            return int(value)
        if key.kind in ("float", "_score"):
            return float(value)
    except (TypeError, ValueError):
        raise shard_failure(
            "illegal_argument_exception",
            f"Failed to parse search_after value for field [{key.field}].",
        ) from None
    return None if value is None else str(value)


def _shown(value: Any, key: SortKey) -> Any:
    if isinstance(value, float) and math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if key.kind == "boolean":
        return value != 0
    return value


def _by_key(index: int, key: SortKey) -> Callable[[tuple[list[Any], Hit]], tuple[int, Any]]:
    return lambda pair: _order(pair[0][index], key)


def _order(value: Any, key: SortKey) -> tuple[int, Any]:
    """A sort key that puts a missing string value first or last whatever the order."""
    if value is not None:
        return (1, value)
    last = key.missing != "_first"
    return (0, "") if last == key.descending else (2, "")


def _compare(values_: list[Any], after: list[Any], keys: list[SortKey]) -> int:
    for mine, theirs, key in zip(values_, after, keys, strict=True):
        if mine == theirs:
            continue
        if mine is None or theirs is None:
            missing_last = key.missing != "_first"
            return (1 if missing_last else -1) * (1 if mine is None else -1)
        result = 1 if mine > theirs else -1
        return -result if key.descending else result
    return 0
