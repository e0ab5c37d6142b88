"""The task list (``/``), its live-update fragment, its charts, and tracking from the list.

Routes live on the ``tasks`` blueprint (:mod:`webapp.views.tasks`), so endpoint names
stay ``tasks.index``, ``tasks.live``, ``tasks.track``… The queries are in
:mod:`webapp.listing`; views parse the request, call them, and pick page or fragment.
"""

from __future__ import annotations

import zlib
from typing import Any

from flask import current_app
from flask import flash
from flask import make_response
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from jinja2_fragments.flask import render_block
from werkzeug.wrappers import Response

from webapp.access import audit
from webapp.db import store
from webapp.db.models import Task
from webapp.db.models import db
from webapp.listing import charts as chart_data
from webapp.listing import saved_views
from webapp.listing.columns import DEFAULT_SORT
from webapp.listing.columns import SORTS
from webapp.listing.columns import STATE_GROUPS
from webapp.listing.columns import STATE_VALUES
from webapp.listing.counts import Counts
from webapp.listing.counts import count_cap
from webapp.listing.counts import counts_are_cheap
from webapp.listing.counts import filter_choices
from webapp.listing.counts import state_counts
from webapp.listing.pages import TaskRow
from webapp.listing.pages import arrivals
from webapp.listing.pages import count_arrivals
from webapp.listing.pages import list_rows
from webapp.listing.pages import newest_task_id
from webapp.listing.pages import row_versions
from webapp.listing.pages import rows_by_ids
from webapp.listing.pages import tasks_by_ids
from webapp.listing.pages import tracked_since
from webapp.listing.query import MAX_LIMIT
from webapp.listing.query import QueryError
from webapp.listing.query import TaskQuery
from webapp.providers import provider_names
from webapp.sources.references import parse_task_references
from webapp.sources.registry import registry
from webapp.views.tasks import bp
from webapp.web.htmx import STOP_POLLING
from webapp.web.htmx import add_vary
from webapp.web.htmx import is_partial
from webapp.web.urls import local_path

LIST_TEMPLATE = "tasks/list.html"
CHARTS_TEMPLATE = "tasks/_list_charts.html"
#: At most this many rows are untracked at once (a page holds at most ``MAX_LIMIT``).
MAX_BULK = MAX_LIMIT


def parse_query() -> TaskQuery:
    """The view asked for; raises :class:`QueryError`."""
    return TaskQuery.from_args(request.args, default_limit=current_app.config["PAGE_SIZE"])


def view_url(query: TaskQuery, **overrides: Any) -> str:
    return url_for("tasks.index", **query.args(**overrides))


def summary_context(query: TaskQuery) -> dict[str, Any]:
    """What the summary bar (block ``summary``) needs; the live update renders it alone."""
    return {
        "query": query,
        "counts": state_counts(query),
        "states": STATE_VALUES,
        "count_cap": count_cap(query),
    }


def list_context(query: TaskQuery) -> dict[str, Any]:
    page = list_rows(query)
    views = saved_views.all_views()
    summary = summary_context(query)
    return {
        **summary,
        "page": page,
        "choices": filter_choices(),
        "providers": sorted(provider_names()),
        "state_groups": list(STATE_GROUPS),
        "sorts": SORTS,
        "views": views,
        "current_view": saved_views.matching(views, query),
        "view_query": saved_views.query_string(query),
        "live": live_context(
            [(t.id, t.version) for t in page.tasks if not t.terminal],
            # Only a view's first page can gain tasks; a later page stops once its rows settle.
            since=None if query.is_paged else newest_task_id(),
            fill=not page.tasks,
            shown=shown_key(summary["counts"] if counts_are_cheap(query) else None, 0),
        ),
        "canonical_url": view_url(query, after=query.after, before=query.before),
    }


def live_context(
    rows: list[tuple[int, int]],
    *,
    since: int | None = None,
    fill: bool = False,
    added: int = 0,
    shown: str = "",
) -> dict[str, Any]:
    """What the list's one poller needs: each active row's id and the version shown
    (``rows``), and, where the view watches for newly tracked tasks, the newest task id it
    has seen (``since``); ``fill``: the page is empty, so arrivals bring the whole first
    page; ``added``: rows put on top of the page so far; ``shown``: :func:`shown_key` of
    the rest of what the page shows."""
    return {
        "rows": rows,
        "token": ",".join(f"{pk}.{version}" for pk, version in rows),
        "since": since,
        "fill": fill,
        "added": added,
        "shown": shown,
        "polling": bool(rows) or since is not None,
        "interval": current_app.config["UI_POLL_SECONDS"],
    }


def shown_key(counts: Counts | None, waiting: int) -> str:
    """A short fingerprint of what a list page shows besides its rows: the summary's counts
    (where a poll recounts them) and the "N new tasks" note. A poll that finds it, and every
    row, as the page has them answers 204: nothing is drawn, and the next poll asks the same."""
    seen = (sorted(counts.by_state.items()), counts.exact, counts.overdue) if counts else None
    return format(zlib.crc32(repr((seen, waiting)).encode()), "x")


def _parse_rows(token: str) -> dict[int, int]:
    seen: dict[int, int] = {}
    for part in token.split(",")[:MAX_LIMIT]:
        pk, _, version = part.partition(".")
        if pk.isdigit() and version.isdigit():
            seen[int(pk)] = int(version)
    return seen


@bp.get("/")
def index() -> Response:
    """The task list; every filter, the search, the sort and the page are in the query string.

    ``/`` alone opens the team's default view when there is one (``/?view=all``: every task).
    """
    if not request.query_string:
        default = saved_views.default_view()
        if default is not None:
            return add_vary(redirect(saved_views.view_url(default), 302))
    try:
        query = parse_query()
    except QueryError as exc:
        context = list_context(TaskQuery())
        context["query_error"] = str(exc)
        return _list_response(context, status=400)
    if not is_partial() and any(value == "" for value in request.args.values()):
        # A form sent without JavaScript carries every field, empty ones too: show the short
        # URL that shares the same view.
        return add_vary(redirect(view_url(query, after=query.after, before=query.before), 302))
    return _list_response(list_context(query))


def _list_response(context: dict[str, Any], status: int = 200) -> Response:
    if is_partial():
        response = make_response(render_block(LIST_TEMPLATE, "results", **context), status)
        # The filter form pushes its URL; this is the same view without the empty fields.
        response.headers["HX-Push-Url"] = context["canonical_url"] if status == 200 else "false"
    else:
        response = make_response(render_template(LIST_TEMPLATE, **context), status)
    return add_vary(response)


@bp.get("/tasks/live")
def live() -> Response:
    """One request per page per interval: the rows that changed, out of band, the counts, and
    the tasks tracked since the page was drawn that match its view.

    ``rows`` lists the page's active rows as ``id.version``; a row comes back when its version
    moved (every fetch moves it, so freshness stays true) or it finished. ``since`` (a view's
    first page only) is the newest task id the page has seen: in the default newest-first
    order, newer matching tasks are put at the top of the table (the whole first page comes
    when the page was empty: ``fill``); in other orders the page says how many there are.
    Answers 286 (stop polling) once none of the page's rows is active and the page does not
    watch for new tasks, and 204 (draw nothing, ask the same next time) when nothing the page
    shows has changed: the usual answer, so it is the one that costs least.
    """
    seen = _parse_rows(request.args.get("rows", ""))
    current = row_versions(list(seen))
    changed_ids = [
        pk for pk, (version, terminal) in current.items() if terminal or version != seen[pk]
    ]
    changed = rows_by_ids(changed_ids)
    finished = [t for t in changed if t.terminal]
    still_active = [(pk, version) for pk, (version, terminal) in current.items() if not terminal]
    gone = [pk for pk in seen if pk not in current]
    try:
        query: TaskQuery | None = parse_query()
    except QueryError:
        query = None
    since = watched = _parse_since(request.args.get("since")) if query is not None else None
    added = _parse_since(request.args.get("added")) or 0
    arrived: list[TaskRow] = []
    waiting = 0
    if query is not None and since is not None:
        recent = tracked_since(since)
        if recent and query.sort == DEFAULT_SORT:
            arrived = arrivals(query, since, query.limit + 1)
            if arrived and request.args.get("fill"):
                return _whole_first_page(query)
            if added + len(arrived) > query.limit:
                # More than a page came at once (an import), or has piled up on top of this
                # page while it stayed open: offer them rather than grow the page without end.
                waiting, arrived = count_arrivals(query, since), []
            else:
                added += len(arrived)
                since = _seen_up_to(since, recent, {t.id for t in arrived})
                still_active += [(t.id, t.version) for t in arrived if not t.terminal]
        elif recent:
            waiting = count_arrivals(query, since)
    recount = query is not None and counts_are_cheap(query)
    summary = (
        summary_context(query)
        if query is not None and (changed or gone or arrived or recount)
        else None
    )
    shown = shown_key(summary["counts"] if summary and recount else None, waiting)
    live = live_context(
        still_active,
        since=since,
        fill=bool(request.args.get("fill")),
        added=added,
        shown=shown,
    )
    unchanged = not (changed or gone or arrived) and since == watched
    if unchanged and live["polling"] and shown == request.args.get("shown"):
        return make_response("", 204)
    summary_html = (
        render_block(LIST_TEMPLATE, "summary", oob=True, **summary) if summary is not None else ""
    )
    body = render_template(
        "tasks/_live.html",
        changed=changed,
        gone=gone,
        finished=finished,
        arrived=arrived,
        waiting=waiting,
        live=live,
        query=query,
        view_link=view_url(query) if query is not None else None,
    )
    return make_response(summary_html + body, 200 if live["polling"] else STOP_POLLING)


def _seen_up_to(since: int, recent: list[tuple[int, bool]], shown: set[int]) -> int:
    """The page's new watermark once ``shown`` are on it: past every new task that is shown
    or finished without matching, but not past one still active that may match later (a
    running task in a view of failures), unless a newer one is on the page already."""
    unsettled = [pk for pk, terminal in recent if not terminal and pk not in shown]
    watermark = min(unsettled) - 1 if unsettled else max(pk for pk, _ in recent)
    return max(since, watermark, *shown)


def _parse_since(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() and len(text) < 19 else None


def _whole_first_page(query: TaskQuery) -> Response:
    """The first tasks of a view whose page was empty: the results block replaces itself (with
    a poller of its own), since there is no table to put rows in."""
    response = make_response(render_block(LIST_TEMPLATE, "results", **list_context(query)))
    response.headers["HX-Retarget"] = "#results"
    response.headers["HX-Reswap"] = "outerHTML"
    return response


@bp.get("/tasks/charts")
def charts() -> Response:
    """The view's charts (tasks by state over time, durations per type), as server-side SVG.

    Loaded after the list (a fragment for htmx; a page of its own without JavaScript), since
    they read more rows than a page does.
    """
    try:
        query = parse_query()
    except QueryError as exc:
        return make_response(render_template(CHARTS_TEMPLATE, query_error=str(exc)), 400)
    context = {"query": query, "charts": chart_data.for_view(query)}
    if is_partial():
        return add_vary(make_response(render_block(CHARTS_TEMPLATE, "charts", **context)))
    return add_vary(make_response(render_template(CHARTS_TEMPLATE, **context)))


@bp.post("/tasks/track")
def track() -> Response:
    """Start tracking one or many task ids (or upstream URLs) pasted into the form."""
    known = registry()
    source_name = request.form.get("source", "").strip()
    text = request.form.get("task_ids", "")
    references, problems = parse_task_references(text, source_name or None, known)
    tracked: list[Task] = []
    for source, task_id in references:
        try:
            task, created = store.track(source, task_id)
        except (store.UnknownSource, ValueError) as exc:
            problems.append(f"{task_id}: {exc}")
            continue
        if created:
            audit.record("task.track", audit.task_target(source, task.task_id))
        tracked.append(task)
    db.session.commit()
    for problem in problems:
        flash(problem, "error")
    if len(tracked) == 1 and not problems:
        task = tracked[0]
        flash(f"Tracking {task.task_id}; the first fetch is on its way.", "info")
        return redirect(url_for("tasks.detail", source=task.source, task_id=task.task_id), 303)
    if tracked:
        flash(f"Tracking {len(tracked)} tasks.", "info")
    return redirect(local_path(request.form.get("next")), 303)


@bp.post("/tasks/untrack")
def untrack_selected() -> Response:
    """Stop tracking the rows ticked on the list, and forget their history."""
    ids = [int(v) for v in request.form.getlist("task") if v.isdigit()][:MAX_BULK]
    tasks = tasks_by_ids(ids)
    for task in tasks:
        audit.record("task.untrack", audit.task_target(task.source, task.task_id))
        store.untrack(task)
    db.session.commit()
    if tasks:
        flash(f"Stopped tracking {len(tasks)} task{'s' if len(tasks) != 1 else ''}.", "info")
    else:
        flash("Tick the tasks to untrack first.", "error")
    return redirect(local_path(request.form.get("next")), 303)
