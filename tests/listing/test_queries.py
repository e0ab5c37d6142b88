"""The list's queries: search syntax, filters, every sort's keyset paging, counts, and the
indexes that triggers keep in step with every write. Results are checked against the same
filter and order computed in Python over all the tasks."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from werkzeug.datastructures import MultiDict

from webapp.db import store
from webapp.db.models import Task
from webapp.db.models import db
from webapp.db.models import utcnow
from webapp.domain import FetchError
from webapp.domain import FetchErrorKind
from webapp.domain import NormalizedTask
from webapp.domain import TaskState
from webapp.listing import cursors
from webapp.listing import plan as query_plan
from webapp.listing import schema as list_schema
from webapp.listing import search
from webapp.listing.backends import PostgresBackend
from webapp.listing.backends import SqliteBackend
from webapp.listing.backends import backend
from webapp.listing.backends import backend_for
from webapp.listing.columns import FRESH_KEY
from webapp.listing.columns import SORTS
from webapp.listing.columns import TYPE_KEY
from webapp.listing.columns import UPSTREAM_KEY
from webapp.listing.columns import states_in
from webapp.listing.counts import state_counts
from webapp.listing.pages import list_tasks
from webapp.listing.query import QueryError
from webapp.listing.query import TaskQuery
from webapp.listing.query import parse_instant
from webapp.listing.query import parse_range

TERMINAL = {s for s in TaskState if s not in (TaskState.QUEUED, TaskState.RUNNING)}


def add_task(
    source: str,
    task_id: str,
    *,
    state: TaskState = TaskState.SUCCEEDED,
    word: str | None = None,
    task_type: str | None = "DEPLOY_MODEL",
    name: str | None = None,
    created: datetime | None = None,
    finished: datetime | None = None,
    error: str | None = None,
    raw: Any = None,
    labels: tuple[str, ...] = (),
    note: str | None = None,
    fetch_error: str | None = None,
    now: datetime | None = None,
) -> Task:
    """Track a task and write one fetch result (inside an app context; not committed)."""
    now = now or utcnow()
    task, _ = store.track(source, task_id, now=now)
    result = NormalizedTask(
        task_id=task_id,
        state=state,
        upstream_status=word or state.value.upper(),
        terminal=state in TERMINAL,
        raw=raw if raw is not None else {"id": task_id},
        task_type=task_type,
        name=name,
        created_at=created,
        finished_at=finished,
        error=error,
    )
    store.apply_fetch(task, result, now)
    if fetch_error:
        store.apply_fetch(task, FetchError(FetchErrorKind.TIMEOUT, fetch_error), now)
    task.labels = list(labels)
    task.note = note
    return task


def query(qs: str = "", **args: str) -> TaskQuery:
    """A view from a query string (as typed, not encoded) and keyword arguments."""
    params = MultiDict([tuple(part.split("=", 1)) for part in qs.split("&") if part])
    for key, value in args.items():
        params.add(key, value)
    return TaskQuery.from_args(params)


@pytest.fixture
def app(app_factory, make_source):
    return app_factory(
        [
            make_source("opensearch-ml", name="ml-prod"),
            make_source("opensearch-ml", name="ml-dev"),
            make_source("mixpeek", name="mixpeek-prod"),
        ]
    )


# -- the search box ------------------------------------------------------------------------------
def test_search_box_splits_qualifiers_from_phrases():
    text = search.parse('state:failed type:"DEPLOY MODEL" arn:aws:x "out of memory" LABEL:Urgent')
    assert text.qualifiers == {
        "state": ("failed",),
        "type": ("DEPLOY MODEL",),
        "label": ("Urgent",),
    }
    assert text.phrases == ("arn:aws:x", "out of memory")
    assert search.parse('unbalanced "quote').phrases == ("unbalanced", '"quote')


def test_search_words_cannot_break_the_index_syntax():
    assert search.fts5_query(['x" OR rowid:*', "NEAR(a b)"]) == '"x or rowid"* AND "near a b"'
    assert search.fts5_query(["ab", "DEPLOY_MODEL"]) == '"ab" AND "deploy model"*'
    assert search.fts5_query(["!!!"]) is None
    assert (
        search.tsquery(["a1b2-c3", "out of memory"]) == "(a1b2 <-> c3) & (out <-> of <-> memory:*)"
    )


@pytest.mark.parametrize(
    ("text", "end", "expected"),
    [
        ("2024-05-01", False, datetime(2024, 5, 1, tzinfo=UTC)),
        ("2024-05-01", True, datetime(2024, 5, 2, tzinfo=UTC)),
        ("2024-05-01T14:00", True, datetime(2024, 5, 1, 14, tzinfo=UTC)),
        ("2024-05-01T16:00+02:00", False, datetime(2024, 5, 1, 14, tzinfo=UTC)),
        ("90m", False, datetime(2024, 6, 1, 10, 30, tzinfo=UTC)),
        ("2w", False, datetime(2024, 5, 18, 12, tzinfo=UTC)),
    ],
)
def test_times_are_dates_times_or_ages(text, end, expected):
    now = datetime(2024, 6, 1, 12, tzinfo=UTC)
    assert parse_instant(text, now=now, end=end) == expected


def test_qualifier_ranges():
    now = datetime(2024, 6, 1, 12, tzinfo=UTC)
    day = timedelta(days=1)
    may1 = datetime(2024, 5, 1, tzinfo=UTC)
    assert parse_range("2024-05-01", now=now) == (may1, may1 + day)
    assert parse_range("2024-05-01..2024-05-03", now=now) == (may1, may1 + 3 * day)
    assert parse_range(">2024-05-01", now=now) == (may1 + day, None)
    assert parse_range(">=2024-05-01", now=now) == (may1, None)
    assert parse_range("<=2024-05-01", now=now) == (None, may1 + day)
    assert parse_range("24h", now=now) == (now - day, None)


@pytest.mark.parametrize(
    ("qs", "message"),
    [
        ("sort=colour", "sort: unknown column 'colour'"),
        ("state=happy", "state: unknown state 'happy'"),
        ("q=state:happy", "state: unknown state 'happy'"),
        ("created_from=yesterday", "created: 'yesterday' is not a date"),
        ("q=updated:soon", "updated: 'soon' is not a date"),
        ("limit=0", "limit: between 1 and 500"),
    ],
)
def test_values_that_make_no_sense_say_which(qs, message):
    with pytest.raises(QueryError, match=message):
        query(qs)


def test_links_carry_the_view_and_drop_the_page():
    cursor = cursors.encode(["TRAINING", datetime(2024, 5, 1, tzinfo=UTC), 7])
    view = query(f"state=failed&q=oom&sort=type&after={cursor}&limit=20")
    assert view.args() == {"state": "failed", "q": "oom", "sort": "type", "limit": 20}
    assert view.args(after="abc")["after"] == "abc"
    assert query().args() == {"view": "all"}
    assert query("sort=type").sort_args("type")["sort"] == "-type"
    assert query().sort_args("updated")["sort"] == "-updated"
    assert query().sort_args("state")["sort"] == "state"


# -- filters and sorts against Python ------------------------------------------------------------
SOURCES = ["ml-prod", "ml-dev", "mixpeek-prod"]
WORDS = ["alpha", "bravo", "charlie", "delta"]


def seed_random(app, count: int = 60, seed: int = 7) -> datetime:
    """Tasks with many ties (same type, state, time) so that the id must break them."""
    rng = random.Random(seed)
    base = datetime(2024, 5, 1, tzinfo=UTC)
    with app.app_context():
        for i in range(count):
            state = rng.choice(list(TaskState))
            created = None if rng.random() < 0.1 else base + timedelta(hours=rng.randrange(12))
            add_task(
                rng.choice(SOURCES),
                f"t{i:03d}/{rng.choice(WORDS)}",
                state=state,
                task_type=rng.choice(["DEPLOY_MODEL", "TRAINING", None]),
                word=rng.choice([None, "COMPLETED", "RUNNING"]),
                name=rng.choice([None, f"{rng.choice(WORDS)} model"]),
                created=created,
                finished=created + timedelta(minutes=rng.randrange(1, 90)) if created else None,
                error=f"{rng.choice(WORDS)} went wrong" if state is TaskState.FAILED else None,
                raw={"payload": rng.choice(WORDS), "n": i},
                labels=tuple(rng.sample(["urgent", "team-a", "team-a-b"], rng.randrange(3))),
                fetch_error="timed out" if rng.random() < 0.1 else None,
                now=base + timedelta(hours=rng.randrange(12), seconds=i),
            )
        db.session.commit()
    return base


def python_view(tasks: list[Task], view: TaskQuery) -> list[int]:
    """The view's task ids in order, computed without SQL."""

    def keep(t: Task) -> bool:
        for name, group in view._groups():
            if name == "state":
                states = states_in(group)
                problems = any(v == "problems" for v in group)
                if not (t.state in states or (problems and t.fetch_error)):
                    return False
            else:
                value = {"task_type": t.task_type or "", "upstream": t.upstream_status or ""}.get(
                    name, getattr(t, name, None)
                )
                if value not in group:
                    return False
        labels = [v.lower() for g in view._values("label", "label") for v in g]
        if any(label not in (t.labels or []) for label in labels):
            return False
        for name, column in (("created", "sort_at"), ("updated", "changed_at")):
            for start, end in view.ranges.get(name, ()):
                value = getattr(t, column)
                if (start and value < start) or (end and value >= end):
                    return False
        columns = (t.task_id, t.name, t.task_type, t.upstream_status, t.error, t.fetch_error,
                   t.labels, t.note, t.raw)  # fmt: skip
        for phrase in view.search.phrases:
            wanted = search.words(phrase)
            if wanted and not any(phrase_in(search.words(str(c or "")), wanted) for c in columns):
                return False
        return True

    def key_value(t: Task, expression: Any) -> Any:
        computed = {
            id(TYPE_KEY): lambda: t.task_type or "",
            id(UPSTREAM_KEY): lambda: t.upstream_status or "",
            id(FRESH_KEY): lambda: t.last_fetched_at or t.tracked_at,
        }
        return computed.get(id(expression), lambda: getattr(t, expression.key))()

    keys = SORTS[view.sort_name].directions(view.descending)
    ordered = [t for t in tasks if keep(t)]
    for expression, descending in reversed(keys):
        ordered.sort(key=lambda t, e=expression: key_value(t, e), reverse=descending)
    return [t.id for t in ordered]


def phrase_in(found: list[str], wanted: list[str]) -> bool:
    """FTS5's phrase match within one column: the words in a row, the last one as a prefix."""
    *whole, last = wanted
    for i in range(len(found) - len(wanted) + 1):
        tail = found[i + len(whole)]
        prefix = len(last) >= search.PREFIX_MIN
        if found[i : i + len(whole)] == whole and (
            tail.startswith(last) if prefix else tail == last
        ):
            return True
    return False


def every_page(view: TaskQuery) -> tuple[list[int], list[int]]:
    """Every id, walking to the end with "next", then back to the start with "previous"."""
    pages, cursor = [], None
    while True:
        page = list_tasks(replace(view, after=cursor, before=None))
        pages.append([t.id for t in page.tasks])
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
        assert len(pages) < 100
    back, cursor = [pages[-1]], page.prev_cursor
    while cursor:
        page = list_tasks(replace(view, after=None, before=cursor))
        back.insert(0, [t.id for t in page.tasks])
        cursor = page.prev_cursor
    assert [len(p) for p in back] == [len(p) for p in pages]
    return [i for p in pages for i in p], [i for p in back for i in p]


@pytest.mark.parametrize("sort", [s for name in SORTS for s in (name, "-" + name)])
def test_every_sort_pages_through_every_task_once_and_back(app, sort):
    seed_random(app)
    with app.app_context():
        tasks = list(db.session.scalars(sa.select(Task)))
        view = query(f"sort={sort}&limit=7")
        forward, backward = every_page(view)
        assert forward == python_view(tasks, view)
        assert backward == forward


FILTERS = [
    "state=failed",
    "state=active",
    "state=finished",
    "state=problems",
    "source=ml-dev",
    "provider=mixpeek",
    "type=TRAINING",
    "upstream=COMPLETED",
    "label=team-a",
    "q=label:urgent label:team-a",
    "q=state:failed state:queued",
    "q=type:TRAINING source:ml-prod",
    "q=bravo",
    "q=bra",
    "q=went wrong",
    'q="charlie model"',
    "q=t01",
    "q=upstream:RUNNING alpha",
    "created_from=2024-05-01T06:00&created_to=2024-05-01T09:00",
    "q=created:2024-05-01T03:00..2024-05-01T08:00",
    "updated_from=2024-05-01T10:00",
    "source=ml-prod&state=problems&q=alpha",
]


@pytest.mark.parametrize("filters", FILTERS)
@pytest.mark.parametrize("sparse_rows", [0, 10**6], ids=["walk", "drive"])
def test_filters_match_the_same_filter_in_python(app, filters, sparse_rows, monkeypatch):
    monkeypatch.setattr(query_plan, "SPARSE_ROWS", sparse_rows)
    seed_random(app)
    with app.app_context():
        tasks = list(db.session.scalars(sa.select(Task)))
        for sort in ("-created", "type", "-state", "fresh"):
            view = query(f"{filters}&sort={sort}&limit=5")
            expected = python_view(tasks, view)
            assert expected, "the seed has tasks for every filter"
            assert every_page(view)[0] == expected, sort
            counts = state_counts(view)
            assert counts.total == len(expected)
            assert counts.exact


def test_a_search_of_nothing_but_punctuation_narrows_nothing(app):
    seed_random(app, count=12)
    with app.app_context():
        view = query("q=!!! --&sort=type&limit=5")
        assert every_page(view)[0] == every_page(query("sort=type&limit=5"))[0]
        assert state_counts(view).total == 12


def test_each_database_has_its_list_backend(app):
    with app.app_context():
        assert backend_for(db.engine) is backend()
        expected = SqliteBackend if db.engine.dialect.name == "sqlite" else PostgresBackend
        assert isinstance(backend(), expected)
    assert isinstance(backend_for(sa.create_engine("postgresql+psycopg://")), PostgresBackend)
    with pytest.raises(RuntimeError, match="does not support 'mysql'"):
        backend_for(SimpleNamespace(dialect=SimpleNamespace(name="mysql")))


def test_counts_stop_at_the_cap_and_say_so(app, monkeypatch):
    seed_random(app, count=30)
    with app.app_context():
        view = query("q=model")  # a search: counted row by row
        full = state_counts(view)
        capped = state_counts(view, cap=3)
        assert full.exact and not capped.exact
        assert 3 <= capped.total < full.total
        assert all(capped.by_state[s] <= full.by_state[s] for s in capped.by_state)


# -- the indexes that triggers keep -----------------------------------------------
def counts_table(app) -> dict[tuple, int]:
    with app.app_context():
        rows = db.session.execute(sa.text("SELECT * FROM task_counts")).all()
        return {tuple(row[:-1]): row[-1] for row in rows if row[-1]}


def counted_from_tasks(app) -> dict[tuple, int]:
    with app.app_context():
        rows = db.session.execute(
            sa.text(
                "SELECT source, provider, coalesce(task_type, ''), coalesce(upstream_status, ''),"
                " state, fetch_error IS NOT NULL, count(*) FROM tasks GROUP BY 1, 2, 3, 4, 5, 6"
            )
        ).all()
        return {tuple(row[:-1]): row[-1] for row in rows}


@pytest.mark.sqlite_only
def test_counts_table_follows_every_write(app):
    seed_random(app, count=40)
    assert counts_table(app) == counted_from_tasks(app)
    rng = random.Random(3)
    with app.app_context():
        tasks = list(db.session.scalars(sa.select(Task)))
        for task in rng.sample(tasks, 15):  # new states, new words, fetch errors come and go
            add_task(task.source, task.task_id, state=rng.choice(list(TaskState)), word="NEW")
            if rng.random() < 0.5:
                store.apply_fetch(task, FetchError(FetchErrorKind.NETWORK, "down"), utcnow())
        for task in rng.sample(tasks, 10):
            store.untrack(task)
        db.session.commit()
        db.session.execute(sa.update(Task).where(Task.state == "queued").values(state="running"))
        db.session.execute(sa.delete(Task).where(Task.source == "ml-dev"))
        db.session.commit()
    assert counts_table(app) == counted_from_tasks(app)


def label_rows(app) -> tuple[set[tuple[str, int]], set[tuple[str, int]]]:
    """(what task_labels holds, what the tasks' labels say)."""
    with app.app_context():
        held = set(db.session.execute(sa.text("SELECT label, task_pk FROM task_labels")).all())
        said = {(label, t.id) for t in db.session.scalars(sa.select(Task)) for label in t.labels}
        return {tuple(r) for r in held}, said


@pytest.mark.sqlite_only
def test_label_rows_follow_every_write(app):
    seed_random(app, count=30)
    held, said = label_rows(app)
    assert held == said and said
    with app.app_context():
        tasks = list(db.session.scalars(sa.select(Task).order_by(Task.id)))
        pks = [t.id for t in tasks]
        tasks[0].labels = ["new", "new", "team-a"]  # a duplicate is one row
        tasks[1].labels = []
        store.set_annotations(tasks[2], "Mixed-Case, other", "")
        store.untrack(tasks[3])
        db.session.commit()
        db.session.execute(
            sa.text("UPDATE tasks SET labels = '[\"by-sql\"]' WHERE id = :pk"), {"pk": pks[4]}
        )
        db.session.commit()
    held, said = label_rows(app)
    assert held == said
    assert {("mixed-case", pks[2]), ("by-sql", pks[4])} <= held


def fts_ids(app, text: str) -> set[str]:
    with app.app_context():
        view = query(q=text)
        return {t.task_id for t in list_tasks(replace(view, limit=500)).tasks}


@pytest.mark.sqlite_only
def test_search_index_follows_every_write(app):
    with app.app_context():
        add_task("ml-prod", "abc-123", raw={"model_id": "zebra-embedder"}, name="first")
        add_task("ml-prod", "other", raw={"x": 1})
        db.session.commit()
    assert fts_ids(app, "zebra") == {"abc-123"}
    assert fts_ids(app, "first") == {"abc-123"}
    with app.app_context():
        task = store.get_task("ml-prod", "abc-123")
        task.raw = {"model_id": "yak-ranker"}
        task.name = "second"
        task.note = "ask the platform team"
        task.labels = ["on-call"]
        db.session.commit()
    assert fts_ids(app, "zebra") == set() and fts_ids(app, "first") == set()
    assert fts_ids(app, "yak") == fts_ids(app, "platform team") == {"abc-123"}
    assert fts_ids(app, "label:on-call") == {"abc-123"}
    with app.app_context():
        store.untrack(store.get_task("ml-prod", "abc-123"))
        db.session.commit()
        # FTS5's own check that the index matches the rows it indexes.
        db.session.execute(
            sa.text("INSERT INTO tasks_fts(tasks_fts, rank) VALUES ('integrity-check', 1)")
        )
    assert fts_ids(app, "yak") == set()


@pytest.mark.sqlite_only
def test_schema_is_rebuilt_when_missing_or_changed(app):
    with app.app_context():
        add_task("ml-prod", "before-the-index", raw={"word": "quokka"}, labels=("x",))
        db.session.commit()
        db.session.execute(sa.text("DROP TRIGGER tasks_fts_insert"))
        db.session.execute(sa.text("DROP TABLE task_counts"))
        db.session.execute(sa.text("DROP TABLE task_labels"))
        db.session.execute(sa.text("DROP INDEX ix_tasks_type_sort"))
        db.session.execute(sa.text("CREATE INDEX ix_tasks_type_sort ON tasks (task_type)"))
        db.session.commit()
        list_schema.install(db.engine)
        sql = db.session.scalar(
            sa.text("SELECT sql FROM sqlite_master WHERE name = 'ix_tasks_type_sort'")
        )
        assert "coalesce" in sql
    assert fts_ids(app, "quokka") == {"before-the-index"}
    assert counts_table(app) == counted_from_tasks(app)
    held, said = label_rows(app)
    assert held == said


@pytest.mark.sqlite_only
def test_sorts_and_common_filters_read_an_index(app):
    """EXPLAIN QUERY PLAN: no page query sorts the whole table or scans it without an index."""
    seed_random(app, count=10)
    with app.app_context():
        statements: list[str] = []
        sa.event.listen(
            db.engine, "before_cursor_execute", lambda *a: statements.append((a[2], a[3]))
        )
        for sort in SORTS:
            for filters in ("", "state=failed", "source=ml-prod", "type=TRAINING"):
                statements.clear()
                list_tasks(query(f"{filters}&sort={sort}"))
                sql, params = next(s for s in statements if "ORDER BY" in s[0])
                raw = db.session.connection().connection.driver_connection
                plan = " | ".join(r[3] for r in raw.execute("EXPLAIN QUERY PLAN " + sql, params))
                assert "USING" in plan, (sort, filters, plan)
                assert not plan.startswith("SCAN tasks |"), (sort, filters, plan)
