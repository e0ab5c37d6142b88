"""Full-text search over tasks: the search box's syntax, and the index behind it.

The box takes free text plus ``name:value`` qualifiers (``state:failed type:DEPLOY_MODEL
source:ml-prod "some text"``). :func:`parse` splits the two; :mod:`webapp.listing.query` turns
qualifiers into filters, and each database's backend (:mod:`webapp.listing.backends`) turns the
free text into one indexed condition:

- SQLite: an FTS5 table (``tasks_fts``) over the task's id, name, type, upstream word, errors,
  labels, note and raw payload, kept in sync by triggers on ``tasks``. Triggers, not Python
  hooks, because the refresher writes rows from several threads and processes, and a trigger
  runs inside whatever transaction changed the row.
- PostgreSQL: a GIN index over a ``tsvector`` expression of the same columns, so there is
  nothing to keep in sync.

Both backends see the same words: letters and digits, everything else separates (so
``DEPLOY_MODEL`` is ``deploy model`` and ``a1b2-c3`` is ``a1b2 c3``), case-insensitive, and a
word matches as a prefix once it is long enough, so search-as-you-type works.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from webapp.db.models import Task
from webapp.db.models import db
from webapp.listing.plan import plus

#: The task columns that search looks in (SQLite indexes them by these names).
SEARCHED_COLUMNS = (
    "task_id",
    "name",
    "task_type",
    "upstream_status",
    "error",
    "fetch_error",
    "labels",
    "note",
    "raw",
)
#: The qualifiers the search box understands (see :func:`parse`).
QUALIFIERS = ("state", "type", "source", "provider", "upstream", "label", "created", "updated")
#: The ``is:`` flags the search box understands; ``-is:overdue`` asks for the opposite.
FLAGS = ("overdue",)
#: Words shorter than this match whole only: a one- or two-letter prefix matches half the index.
PREFIX_MIN = 3

#: What one word is, the same on both backends (FTS5's unicode61 tokenizer; PostgreSQL after
#: the ``regexp_replace`` in :func:`pg_document`).
_WORD = re.compile(r"[^\W_]+")


@dataclass(frozen=True)
class SearchText:
    """The search box, split: qualifier values by name, and the free-text phrases."""

    qualifiers: dict[str, tuple[str, ...]] = field(default_factory=dict)
    phrases: tuple[str, ...] = ()
    #: ``is:`` flags: ``{"overdue": True}`` for ``is:overdue``, ``False`` for ``-is:overdue``.
    flags: dict[str, bool] = field(default_factory=dict)


def parse(text: str) -> SearchText:
    """Split ``text`` into qualifiers and phrases; quotes group words (``"a b"``, ``type:"a b"``).

    A ``name:value`` whose name is not a qualifier stays free text, so ids such as
    ``arn:aws:…`` are searched as they are.
    """
    try:
        words = shlex.split(text)
    except ValueError:  # an unbalanced quote: read the words as they are
        words = text.split()
    qualifiers: dict[str, list[str]] = {}
    phrases: list[str] = []
    flags: dict[str, bool] = {}
    for word in words:
        name, sep, value = word.partition(":")
        if sep and name.lower() in ("is", "-is") and value:
            flags[value.lower()] = name.lower() == "is"
        elif sep and name.lower() in QUALIFIERS and value:
            qualifiers.setdefault(name.lower(), []).append(value)
        elif word.strip():
            phrases.append(word)
    return SearchText({k: tuple(v) for k, v in qualifiers.items()}, tuple(phrases), flags)


def words(phrase: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(phrase)]


def fts5_query(phrases: Sequence[str]) -> str | None:
    """An FTS5 query that matches every phrase (its words adjacent, the last one as a prefix).

    Only letters and digits reach the query, so nothing a person types can break its syntax.
    ``None`` when no phrase has a word.
    """
    parts = []
    for phrase in phrases:
        found = words(phrase)
        if found:
            star = "*" if len(found[-1]) >= PREFIX_MIN else ""
            parts.append('"' + " ".join(found) + '"' + star)
    return " AND ".join(parts) or None


def tsquery(phrases: Sequence[str]) -> str | None:
    """The PostgreSQL ``to_tsquery`` text with the same meaning as :func:`fts5_query`."""
    parts = []
    for phrase in phrases:
        found = words(phrase)
        if found:
            if len(found[-1]) >= PREFIX_MIN:
                found[-1] += ":*"
            parts.append("(" + " <-> ".join(found) + ")")
    return " & ".join(parts) or None


# -- the SQLite side ---------------------------------------------------------------------------
FTS_TABLE = "tasks_fts"
ON_INSERT = "AFTER INSERT ON tasks BEGIN"
ON_DELETE = "AFTER DELETE ON tasks BEGIN"
_fts = sa.table(FTS_TABLE, sa.column("rowid"))


def fts5_ids(fts_query: str) -> sa.Select[tuple[int]]:
    """The ids of tasks matching an FTS5 query."""
    return sa.select(_fts.c.rowid).where(_match(fts_query))


def newest_matches(fts_query: str, limit: int) -> list[int]:
    """The ids of the newest ``limit`` tasks matching an FTS5 query, newest first (the index
    reads its rowids backwards and stops there)."""
    statement = (
        sa.select(_fts.c.rowid).where(_match(fts_query)).order_by(_fts.c.rowid.desc()).limit(limit)
    )
    # Fetched at once: thousands of ids one cursor step at a time cost more than the search.
    return list(db.session.execute(statement).scalars().all())


def listed_ids(ids: list[int]) -> sa.Select[tuple[int]]:
    """``ids`` as a subquery: one JSON parameter, however many (SQLite)."""
    listed = sa.func.json_each(_as_json(ids)).table_valued("value")
    return sa.select(listed.c.value)


def listed_join(ids: list[int]) -> list[sa.ColumnElement[bool]]:
    """The tasks whose id is in ``ids`` (no duplicates), as a join from the list to ``tasks``
    by primary key: read in the list's order, and stopped by a ``LIMIT``, where ``id IN``
    first sorts the whole list."""
    listed = sa.func.json_each(_as_json(ids)).table_valued("value")
    return [Task.id == listed.c.value]


def _as_json(ids: Sequence[int]) -> str:
    return _json_array(tuple(ids))


@functools.lru_cache(maxsize=8)
def _json_array(ids: tuple[int, ...]) -> str:
    """``ids`` as a JSON array, written once: a page's read and counts pass the same thousands
    of ids several times."""
    return json.dumps(ids)


def fts5_join(fts_query: str) -> list[sa.ColumnElement[bool]]:
    """The tasks matching an FTS5 query, as a join of ``tasks_fts`` (the index drives, one
    match at a time, so a ``LIMIT`` stops it) to ``tasks`` by primary key.

    The index's side of the join is written ``+rowid`` so that SQLite never takes the other
    way round: walking ``tasks`` and asking the index about each row runs the whole query
    again per row (a prefix word is expanded each time), which is hopeless at any size.
    """
    return [plus(_fts.c.rowid) == Task.id, _match(fts_query)]


def _match(fts_query: str) -> sa.ColumnElement[bool]:
    """``tasks_fts MATCH :query`` (the table's name stands for all its columns)."""
    return sa.literal_column(FTS_TABLE).op("MATCH", is_comparison=True)(sa.literal(fts_query))


def _fts_columns(prefix: str) -> str:
    return ", ".join(f"{prefix}{name}" for name in SEARCHED_COLUMNS)


def sqlite_schema() -> dict[str, str]:
    """The FTS5 table and its triggers, by name (compared with ``sqlite_master`` at start-up)."""
    columns = ", ".join(SEARCHED_COLUMNS)
    insert = f"INSERT INTO {FTS_TABLE}(rowid, {columns}) VALUES (new.id, {_fts_columns('new.')});"
    delete = (
        f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, {columns}) "
        f"VALUES ('delete', old.id, {_fts_columns('old.')});"
    )
    return {
        # External content: the text lives once, in ``tasks``; the index holds only the words.
        FTS_TABLE: (
            f"CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5({columns}, content='tasks', "
            "content_rowid='id', tokenize='unicode61 remove_diacritics 2')"
        ),
        "tasks_fts_insert": f"CREATE TRIGGER tasks_fts_insert {ON_INSERT} {insert} END",
        "tasks_fts_delete": f"CREATE TRIGGER tasks_fts_delete {ON_DELETE} {delete} END",
        # Only writes that touch a searched column re-index the row: the refresher's
        # bookkeeping writes (lease, next poll, fetch time) leave the index alone.
        "tasks_fts_update": (
            f"CREATE TRIGGER tasks_fts_update AFTER UPDATE OF {columns} ON tasks "
            f"BEGIN {delete} {insert} END"
        ),
    }


# -- the PostgreSQL side -----------------------------------------------------------------------
def pg_document() -> sa.ColumnElement[object]:
    """The ``tsvector`` of a task's searched columns.

    Every constant is inline SQL (never a bound parameter) so the expression is the same text
    in the GIN index and in queries, which PostgreSQL needs to use the index, prepared
    statements included. ``||`` and ``coalesce`` rather than ``concat_ws``, which is not
    immutable and so cannot be indexed.
    """
    space: sa.ColumnElement[str] = sa.literal_column("' '")
    empty: sa.ColumnElement[str] = sa.literal_column("''")
    text: sa.ColumnElement[str] | None = None
    for name in SEARCHED_COLUMNS:
        column = getattr(Task, name)
        if name in ("labels", "raw"):
            column = sa.cast(column, sa.Text)
        part = sa.func.coalesce(column, empty)
        text = part if text is None else text.op("||")(space).op("||")(part)
    assert text is not None
    cleaned = sa.func.regexp_replace(
        text, sa.literal_column("'[^[:alnum:]]+'"), space, sa.literal_column("'g'")
    )
    return sa.func.to_tsvector(sa.literal_column("'simple'::regconfig"), cleaned)


PG_SEARCH_INDEX = "ix_tasks_search"
PG_LABELS_INDEX = "ix_tasks_labels"


def pg_schema(connection: Connection) -> list[str]:
    """``CREATE INDEX`` statements for search and the label filter on PostgreSQL."""
    document = pg_document().compile(
        dialect=connection.dialect, compile_kwargs={"literal_binds": True}
    )
    return [
        f"CREATE INDEX IF NOT EXISTS {PG_SEARCH_INDEX} ON tasks USING gin (({document}))",
        f"CREATE INDEX IF NOT EXISTS {PG_LABELS_INDEX} ON tasks USING gin ((labels::jsonb))",
    ]
