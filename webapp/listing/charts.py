"""The list's two small charts, drawn on the server as SVG (no JavaScript library, no CDN).

- Tasks by state over time: how many of the view's tasks were created in each time bucket,
  stacked by state. It covers the view's latest :data:`TIMELINE_CAP` tasks at most, so its
  cost does not grow with the cache.
- Durations per task type: the median and 90th percentile of creation-to-finish time over the
  view's latest :data:`DURATION_SAMPLE` finished tasks, on a log scale (seconds to days).

Colours come from the page's CSS through class names (``state-failed``…); every bar has a
``<title>`` and the figures are also given as a table, so nothing depends on colour or sight.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
from datetime import UTC
from datetime import datetime
from datetime import timedelta

import sqlalchemy as sa
from markupsafe import Markup
from markupsafe import escape

from webapp.db.models import Task
from webapp.db.models import db
from webapp.db.models import utcnow
from webapp.listing.backends import backend
from webapp.listing.columns import STATE_VALUES
from webapp.listing.pages import ordered_read
from webapp.listing.query import TaskQuery
from webapp.overdue.words import span as humanize_seconds

TIMELINE_CAP = 5_000
DURATION_SAMPLE = 1_000
MAX_BUCKETS = 36
MAX_TYPES = 8
#: Bucket sizes a person reads easily, in seconds.
BUCKET_SIZES = [60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400]
BUCKET_SIZES += [7 * 86400, 14 * 86400, 30 * 86400]


@dataclass
class Timeline:
    start: datetime
    size: int
    #: One ``{state: count}`` per bucket, oldest first.
    buckets: list[dict[str, int]]
    #: True when the view has more tasks than the chart covers.
    capped: bool

    @property
    def states(self) -> list[str]:
        present = {state for bucket in self.buckets for state in bucket}
        return [s for s in STATE_VALUES if s in present]

    def bucket_start(self, index: int) -> datetime:
        return self.start + timedelta(seconds=index * self.size)

    @property
    def total(self) -> int:
        return sum(sum(b.values()) for b in self.buckets)


@dataclass
class TypeDurations:
    task_type: str
    count: int
    median: float
    p90: float
    longest: float


@dataclass
class ViewCharts:
    timeline: Timeline | None
    durations: list[TypeDurations] = field(default_factory=list)
    #: How many finished tasks the durations are drawn from.
    sampled: int = 0

    @property
    def timeline_svg(self) -> Markup:
        return timeline_svg(self.timeline) if self.timeline else Markup("")

    @property
    def durations_svg(self) -> Markup:
        return durations_svg(self.durations) if self.durations else Markup("")


def for_view(query: TaskQuery, now: datetime | None = None) -> ViewCharts:
    durations, sampled = duration_stats(query)
    return ViewCharts(state_timeline(query, now or utcnow()), durations, sampled)


# -- data --------------------------------------------------------------------------------------
def state_timeline(query: TaskQuery, now: datetime) -> Timeline | None:
    """Tasks created per bucket and state, over the view's latest :data:`TIMELINE_CAP` tasks."""

    def edge(descending: bool, offset: int = 0) -> datetime | None:
        read = ordered_read(query, [Task.sort_at], sort="created", descending=descending)
        return db.session.scalar(read.offset(offset).limit(1))

    newest = edge(descending=True)
    if newest is None:
        return None
    # The cap-th newest task, found the way a deep page would be, without counting the rest.
    oldest = edge(descending=True, offset=TIMELINE_CAP)
    capped = oldest is not None
    oldest = oldest if capped else edge(descending=False)
    assert oldest is not None
    end = max(newest, min(now, newest + timedelta(days=1)))
    span = max((end - oldest).total_seconds(), 1.0)
    size = next((s for s in BUCKET_SIZES if span / s <= MAX_BUCKETS), BUCKET_SIZES[-1])
    start = datetime.fromtimestamp(oldest.timestamp() // size * size, UTC)
    count = math.floor((end - start).total_seconds() / size) + 1
    bucket = sa.cast(
        sa.func.floor((backend().epoch_seconds(Task.sort_at) - start.timestamp()) / size),
        sa.Integer,
    ).label("bucket")
    # The span covered is one more "created" range of the view: the plan may read through it.
    since = [*query.ranges.get("created", []), (oldest, None)]
    covered = replace(query, ranges={**query.ranges, "created": since})
    statement = (
        sa.select(bucket, Task.state, sa.func.count())
        .where(*covered.plan().driven())
        .group_by(bucket, Task.state)
    )
    buckets: list[dict[str, int]] = [{} for _ in range(count)]
    for index, state, n in db.session.execute(statement):
        if index is not None and 0 <= index < count:
            buckets[index][state] = n
    return Timeline(start, size, buckets, capped)


def duration_stats(query: TaskQuery) -> tuple[list[TypeDurations], int]:
    """Median and p90 duration per task type over the view's latest finished tasks."""
    columns = [Task.task_type, Task.created_at, Task.finished_at]
    unindexed = backend().unindexed
    statement = (
        ordered_read(query, columns, sort="created", descending=True)
        .where(
            unindexed(Task.terminal).is_(True),
            unindexed(Task.created_at).is_not(None),
            unindexed(Task.finished_at).is_not(None),
        )
        .limit(DURATION_SAMPLE)
    )
    by_type: dict[str, list[float]] = {}
    sampled = 0
    for task_type, created, finished, *_ in db.session.execute(statement):
        seconds = (finished - created).total_seconds()
        if seconds >= 0:
            by_type.setdefault(task_type or "(no type)", []).append(seconds)
            sampled += 1
    rows = []
    for task_type, values in by_type.items():
        values.sort()
        p90 = values[min(len(values) - 1, math.ceil(0.9 * len(values)) - 1)]
        median = statistics.median(values)
        rows.append(TypeDurations(task_type, len(values), median, p90, values[-1]))
    rows.sort(key=lambda r: (-r.count, r.task_type))
    return rows[:MAX_TYPES], sampled


# -- drawing -----------------------------------------------------------------------------------
def bucket_label(moment: datetime, size: int) -> str:
    if size >= 86400:
        return moment.strftime("%b %d")
    return moment.strftime("%b %d %H:%M")


def _svg(width: int, height: int, title: str, desc: str, body: list[str], css_class: str) -> Markup:
    return Markup(
        f'<svg class="chart {css_class}" viewBox="0 0 {width} {height}" role="img" '
        f'preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(title)}</title><desc>{escape(desc)}</desc>{''.join(body)}</svg>"
    )


def timeline_svg(timeline: Timeline, width: int = 640, height: int = 170) -> Markup:
    """Stacked bars, one per bucket, one segment per state."""
    left, bottom, top = 36, 22, 8
    plot_w, plot_h = width - left - 4, height - bottom - top
    peak = max((sum(b.values()) for b in timeline.buckets), default=0) or 1
    slot = plot_w / max(len(timeline.buckets), 1)
    bar = max(slot * 0.8, 1.0)
    body = [
        f'<line class="axis" x1="{left}" y1="{top + plot_h}" x2="{width - 4}" '
        f'y2="{top + plot_h}"/>',
        f'<text class="tick" x="{left - 4}" y="{top + 8}" text-anchor="end">{peak}</text>',
        f'<text class="tick" x="{left - 4}" y="{top + plot_h}" text-anchor="end">0</text>',
    ]
    for index, counts in enumerate(timeline.buckets):
        x = left + index * slot + (slot - bar) / 2
        y: float = top + plot_h
        when = bucket_label(timeline.bucket_start(index), timeline.size)
        for state in STATE_VALUES:
            n = counts.get(state)
            if not n:
                continue
            h = n / peak * plot_h
            y -= h
            body.append(
                f'<rect class="seg state-{state}" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" '
                f'height="{max(h, 0.5):.1f}"><title>{escape(when)}: {n} {state}</title></rect>'
            )
    last = len(timeline.buckets) - 1
    for index, anchor in ((0, "start"), (last // 2, "middle"), (last, "end")):
        if index < 0 or (index == last // 2 and last < 4):
            continue
        x = (
            left
            + index * slot
            + (slot / 2 if anchor == "middle" else 0 if anchor == "start" else slot)
        )
        label = bucket_label(timeline.bucket_start(index), timeline.size)
        label += " UTC" if anchor == "end" else ""
        body.append(
            f'<text class="tick" x="{x:.1f}" y="{height - 6}" text-anchor="{anchor}">'
            f"{escape(label)}</text>"
        )
    per = humanize_seconds(timeline.size)
    desc = f"{timeline.total} tasks created, in buckets of {per}; at most {peak} in one bucket."
    return _svg(width, height, "Tasks by state over time", desc, body, "chart-timeline")


def _log_x(seconds: float, low: float, high: float, width: float) -> float:
    return (
        (math.log10(max(seconds, low)) - math.log10(low))
        / (math.log10(high) - math.log10(low))
        * width
    )


def durations_svg(rows: list[TypeDurations], width: int = 640) -> Markup:
    """One bar per task type to its median, a whisker to its p90; log scale."""
    label_w, row_h, top = 150, 22, 4
    height = top + row_h * len(rows) + 20
    plot_w = width - label_w - 120
    low = max(1.0, min(r.median for r in rows) / 2)
    high = max(max(r.p90 for r in rows) * 1.2, low * 10)
    body = []
    for index, row in enumerate(rows):
        y = top + index * row_h
        median_x = _log_x(row.median, low, high, plot_w)
        p90_x = _log_x(row.p90, low, high, plot_w)
        name = row.task_type if len(row.task_type) <= 22 else row.task_type[:21] + "…"
        summary = f"median {humanize_seconds(row.median)}, p90 {humanize_seconds(row.p90)}"
        body.append(
            f"<g><title>{escape(row.task_type)}: {summary} ({row.count} tasks)</title>"
            f'<text class="label" x="{label_w - 6}" y="{y + 15}" text-anchor="end">'
            f"{escape(name)}</text>"
            f'<rect class="bar" x="{label_w}" y="{y + 5}" width="{max(median_x, 1):.1f}" '
            'height="12"/>'
            f'<line class="whisker" x1="{label_w + median_x:.1f}" y1="{y + 11}" '
            f'x2="{label_w + p90_x:.1f}" y2="{y + 11}"/>'
            f'<line class="whisker" x1="{label_w + p90_x:.1f}" y1="{y + 6}" '
            f'x2="{label_w + p90_x:.1f}" y2="{y + 16}"/>'
            f'<text class="value" x="{label_w + p90_x + 6:.1f}" y="{y + 15}">'
            f"{humanize_seconds(row.median)} · {humanize_seconds(row.p90)}</text></g>"
        )
    axis_y = top + row_h * len(rows) + 14
    for seconds in (1, 60, 3600, 86400):
        if low <= seconds <= high:
            x = label_w + _log_x(seconds, low, high, plot_w)
            body.append(
                f'<text class="tick" x="{x:.1f}" y="{axis_y}" text-anchor="middle">'
                f"{humanize_seconds(seconds)}</text>"
            )
    desc = "; ".join(
        f"{r.task_type}: median {humanize_seconds(r.median)}, p90 {humanize_seconds(r.p90)}"
        for r in rows
    )
    return _svg(
        width, height, "Durations per task type (median, p90)", desc, body, "chart-durations"
    )
