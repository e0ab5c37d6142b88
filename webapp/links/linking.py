"""The link pass of the refresher processes: find, resolve and (where the source says so)
track the tasks that tracked tasks lead to.

- A task is looked at when it is first seen and whenever its state changes (its
  ``last_changed_at`` passes its ``links_checked_at``), not on every poll: its payload's ids are
  read (no request) and its provider is asked once for its siblings.
- A payload id becomes a :class:`TaskLink`, settled without a request where the cache already
  knows the answer (a tracked task has the id, or another link resolved it); otherwise each
  configured source of the providers the rule names is asked for the task once. The answer is
  kept (``found``, ``not_found``, ``ambiguous`` when two sources have it), so no id is fetched
  again and again; a lookup that failed (network, throttling) is tried again after
  :data:`RETRY_SECONDS`.
- Whose ``track_related`` counts: the source of the task that names or lists the link. Its
  found links are tracked with ``via="link"``; a link is tracked when it is found, so turning
  the setting on later tracks links found from then on.

Every request goes through the source's shared rate budget, and a pass makes at most
:data:`REQUESTS_PER_PASS`, so links never crowd out polling. Two processes never look at one
task or resolve one link at once: each claims it first with a conditional update.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta

import sqlalchemy as sa
from flask import Flask

from webapp.config import SourceConfig
from webapp.db import store
from webapp.db.models import Task
from webapp.db.models import TaskLink
from webapp.db.models import db
from webapp.domain import FetchError
from webapp.domain import FetchErrorKind
from webapp.domain import Sibling
from webapp.links.discover import ID_SHAPE
from webapp.links.discover import Candidate
from webapp.links.discover import candidates
from webapp.providers.spec import PayloadLink
from webapp.refresher.periodic import PeriodicPass
from webapp.refresher.periodic import Writing
from webapp.sources.registry import registry

log = logging.getLogger(__name__)

#: How often a running refresher runs the pass.
CHECK_EVERY_SECONDS = 2.0
#: Tasks looked at per pass, oldest checks first.
TASKS_PER_PASS = 100
#: Upstream requests one pass may make (sibling lists and id lookups).
REQUESTS_PER_PASS = 20
#: A lookup or sibling list that failed for a reason other than "not found" waits this long.
RETRY_SECONDS = 300.0
#: The full reads (every task whose links are due, every pending link) scan their tables, so a
#: process makes them when it starts and then this often; in between it reads only the tasks
#: changed since its last look (through the ``changed_at`` index) and the links it just found.
FULL_LOOK_EVERY_SECONDS = 60.0
#: How far before its last look a process reads changes again (writes that committed late).
CHANGE_OVERLAP = timedelta(seconds=30)
#: ``TaskLink.found_in`` of a sibling the upstream listed.
LISTED_UPSTREAM = "listed upstream"


@dataclass
class LinkReport:
    checked: int = 0
    discovered: int = 0
    resolved: int = 0
    tracked: int = 0
    requests: int = 0
    failures: int = 0


class LinkPass(PeriodicPass):
    """The refresher's link pass, at most every :data:`CHECK_EVERY_SECONDS`."""

    every_seconds = CHECK_EVERY_SECONDS

    def __init__(self, app: Flask, clock: Callable[[], datetime], writing: Writing) -> None:
        super().__init__(app, clock, writing)
        #: Tasks whose sibling list failed in this process, and when to try again.
        self._sibling_retry: dict[int, datetime] = {}
        #: When the last full read was (monotonic), and since when every change was looked at.
        self._last_full: float | None = None
        self._seen_changes_until: datetime | None = None
        #: Pending links may be waiting (this process found some, or could not resolve all).
        self._pending_found = True

    def run(self) -> LinkReport:
        """One pass now: look at due tasks, then resolve pending links; the ids found in the
        previous pass are resolved first, so sibling lists of many new tasks cannot hold them
        up."""
        started = self.started()
        full = self._last_full is None or started - self._last_full >= FULL_LOOK_EVERY_SECONDS
        if full:
            self._last_full = started
        report = LinkReport()
        with self.app.app_context():
            now = self.clock()
            if full or self._pending_found:
                self._resolve_pending(now, report)
            due = self._due_tasks(now, full)
            for pk in due:
                if report.requests >= REQUESTS_PER_PASS:
                    break
                self._check(pk, now, report)
            if report.checked == len(due) < TASKS_PER_PASS:
                # Every change up to now was looked at; otherwise the next pass reads from the
                # same point again (what was done is no longer due).
                self._seen_changes_until = now
            if report.discovered:
                self._pending_found = True
            if self._pending_found:
                self._resolve_pending(now, report)
            db.session.remove()
        if report.discovered or report.resolved or report.tracked:
            log.info("links: %s", report)
        return report

    # -- looking at tasks ------------------------------------------------------------------
    def _due_tasks(self, now: datetime, full: bool) -> list[int]:
        """Tasks first seen or changed since their links were looked for: read among the
        tasks changed since the last look, or among all of them on a full read."""
        statement = (
            sa.select(Task.id)
            .where(
                Task.first_seen_at.is_not(None),
                sa.or_(
                    Task.links_checked_at.is_(None), Task.last_changed_at > Task.links_checked_at
                ),
            )
            .order_by(Task.links_checked_at.is_not(None), Task.links_checked_at, Task.id)
            .limit(TASKS_PER_PASS)
        )
        since = self._seen_changes_until
        if not full and since is not None:
            statement = statement.where(Task.changed_at >= since - CHANGE_OVERLAP)
        return [
            pk for pk in db.session.scalars(statement) if self._sibling_retry.get(pk, now) <= now
        ]

    def _check(self, pk: int, now: datetime, report: LinkReport) -> None:
        with self.writing():
            task = db.session.get(Task, pk)
            before = task.links_checked_at if task is not None else None
            claimed = task is not None and _claim_task(pk, before, now)
            db.session.commit()
        if not claimed:
            return
        report.checked += 1
        task = db.session.get(Task, pk)
        if task is None:
            return
        siblings = self._siblings(task, before, now, report)
        with self.writing():
            task = db.session.get(Task, pk)
            if task is None:
                db.session.rollback()
                return
            known = {
                link.target_task_id: link
                for link in db.session.scalars(sa.select(TaskLink).where(TaskLink.task_pk == pk))
            }
            added = [
                self._from_payload(task, candidate, now)
                for candidate in candidates(task.provider, task.details)
                if candidate.task_id not in known and candidate.task_id != task.task_id
            ]
            for sibling in siblings:
                link = known.get(sibling.task_id)
                if link is None:
                    added.append(_listed(task, sibling, now))
                elif link.found_in == LISTED_UPSTREAM:
                    link.relation = sibling.relation[:32]
            fresh = [link for link in added if link is not None]
            db.session.add_all(fresh)
            db.session.flush()
            report.discovered += len(fresh)
            for link in fresh:
                report.tracked += track_if_wanted(task, link, now)
            _commit()

    def _siblings(
        self, task: Task, before: datetime | None, now: datetime, report: LinkReport
    ) -> list[Sibling]:
        """The task's siblings from its provider; on a failure, the task is due again after
        :data:`RETRY_SECONDS` (in this process)."""
        if task.source not in registry(self.app):
            return []
        provider = registry(self.app).provider(task.source)
        try:
            listed = provider.siblings(task.task_id, task.links or {})
        except FetchError as exc:
            report.requests += 1
            report.failures += 1
            log.info("links: siblings of %s/%s: %s", task.source, task.task_id, exc.describe())
            self._sibling_retry[task.id] = now + timedelta(seconds=RETRY_SECONDS)
            with self.writing():
                _claim_task(task.id, now, before)  # give the check back
                db.session.commit()
            return []
        self._sibling_retry.pop(task.id, None)
        if listed is None:
            return []  # nothing to list: no request was made
        report.requests += 1
        return [s for s in listed if ID_SHAPE.fullmatch(s.task_id)]

    def _from_payload(self, task: Task, candidate: Candidate, now: datetime) -> TaskLink:
        link = TaskLink(
            task_pk=task.id,
            relation=candidate.rule.relation[:32],
            target_task_id=candidate.task_id,
            found_in=candidate.found_in,
            status="pending",
            discovered_at=now,
        )
        settle_from_cache(link, candidate.rule, now)
        return link

    # -- resolving ids ---------------------------------------------------------------------
    def _resolve_pending(self, now: datetime, report: LinkReport) -> None:
        """Resolve what is pending, within the pass's budget; whatever is left (or could not
        be read in one go) keeps :attr:`_pending_found` set for the next pass."""
        pending = self._pending_links(now)
        for link_id in pending:
            if report.requests >= REQUESTS_PER_PASS:
                return
            self._resolve(link_id, now, report)
        self._pending_found = len(pending) >= TASKS_PER_PASS

    def _pending_links(self, now: datetime) -> list[int]:
        again = now - timedelta(seconds=RETRY_SECONDS)
        statement = (
            sa.select(TaskLink.id)
            .where(
                TaskLink.status == "pending",
                sa.or_(TaskLink.resolved_at.is_(None), TaskLink.resolved_at < again),
            )
            .order_by(TaskLink.id)
            .limit(TASKS_PER_PASS)
        )
        return list(db.session.scalars(statement))

    def _resolve(self, link_id: int, now: datetime, report: LinkReport) -> None:
        """Ask each candidate source for the id once; ``resolved_at`` of a pending link is when
        it was last asked, which is also its claim."""
        with self.writing():
            link = db.session.get(TaskLink, link_id)
            rule = _rule_of(link) if link is not None else None
            if link is None or rule is None or settle_from_cache(link, rule, now):
                if link is not None and rule is None:
                    _settle(link, "not_found", None, now)
                if link is not None and link.status == "found":
                    report.tracked += track_if_wanted(_naming_task(link), link, now)
                _commit()
                return
            claimed = _claim_link(link, now)
            db.session.commit()
        if not claimed:
            return
        link = db.session.get(TaskLink, link_id)
        if link is None:
            return
        found: list[SourceConfig] = []
        complete = True
        for source in candidate_sources(rule):
            if report.requests >= REQUESTS_PER_PASS:
                complete = False
                break
            report.requests += 1
            try:
                registry(self.app).provider(source.name).fetch(link.target_task_id)
            except FetchError as exc:
                if exc.kind is not FetchErrorKind.NOT_FOUND:
                    complete = False
                    report.failures += 1
                continue
            found.append(source)
        with self.writing():
            link = db.session.get(TaskLink, link_id)
            if link is None or link.status != "pending":
                db.session.rollback()
                return
            if len(found) > 1:
                _settle(link, "ambiguous", None, now)
            elif found:
                _settle(link, "found", found[0], now)
                report.tracked += track_if_wanted(_naming_task(link), link, now)
            elif complete:
                _settle(link, "not_found", None, now)
            report.resolved += link.status != "pending"
            _commit()


def candidate_sources(rule: PayloadLink) -> list[SourceConfig]:
    """The configured sources whose tasks the rule's ids may be."""
    return [source for source in registry() if source.provider in rule.providers]


def settle_from_cache(link: TaskLink, rule: PayloadLink, now: datetime) -> bool:
    """Settle ``link`` from what the cache knows, without a request: a group's tracked members,
    a tracked task with the id, another link's answer for the id. True when settled."""
    sources = candidate_sources(rule)
    names = [source.name for source in sources]
    if rule.group:
        # A group id (a batch) is no task: it is never fetched. Its tracked members say where.
        member = db.session.scalar(
            sa.select(Task.source)
            .where(Task.source.in_(names), Task.related_key == link.target_task_id)
            .limit(1)
        )
        source = next((s for s in sources if s.name == member), None)
        _settle(link, "found" if source else "not_found", source, now)
        return True
    if not sources:
        _settle(link, "not_found", None, now)
        return True
    tracked = db.session.scalars(
        sa.select(Task.source).where(Task.task_id == link.target_task_id, Task.source.in_(names))
    ).all()
    if len(tracked) > 1:
        _settle(link, "ambiguous", None, now)
        return True
    if tracked:
        _settle(link, "found", next(s for s in sources if s.name == tracked[0]), now)
        return True
    answered = db.session.scalar(
        sa.select(TaskLink)
        .where(
            TaskLink.target_task_id == link.target_task_id,
            TaskLink.status != "pending",
            TaskLink.found_in != LISTED_UPSTREAM,
            TaskLink.id != link.id if link.id is not None else sa.true(),
        )
        .order_by(TaskLink.resolved_at.desc())
        .limit(1)
    )
    if answered is None or (answered.target_source or names[0]) not in names:
        return False
    link.status = answered.status
    link.target_source = answered.target_source
    link.target_provider = answered.target_provider
    link.resolved_at = now
    return True


def track_if_wanted(task: Task | None, link: TaskLink, now: datetime) -> int:
    """Track a found link's task when the naming task's source says ``track_related``; 1 when
    that started tracking it."""
    if task is None or link.status != "found" or link.target_source is None:
        return 0
    source = registry().get(task.source)
    if source is None or not source.track_related or link.target_source not in registry():
        return 0
    if link.found_in != LISTED_UPSTREAM and group_rule(link, task):
        return 0  # a batch id names no task of its own
    try:
        _, created = store.track(link.target_source, link.target_task_id, now=now, via="link")
    except (store.UnknownSource, ValueError):
        return 0
    return int(created)


def group_rule(link: TaskLink, task: Task | None = None) -> bool:
    """Whether the link's id names a group (a batch) rather than a task."""
    rule = _rule_of(link, task)
    return rule is not None and rule.group


def _rule_of(link: TaskLink, task: Task | None = None) -> PayloadLink | None:
    """The rule that named the link's id in the naming task's payload (read again: the rule
    is not stored); ``None`` when the payload no longer names it."""
    task = task or _naming_task(link)
    if task is None:
        return None
    return next(
        (
            c.rule
            for c in candidates(task.provider, task.details)
            if c.task_id == link.target_task_id
        ),
        None,
    )


def _naming_task(link: TaskLink) -> Task | None:
    return db.session.get(Task, link.task_pk)


def _listed(task: Task, sibling: Sibling, now: datetime) -> TaskLink:
    return TaskLink(
        task_pk=task.id,
        relation=sibling.relation[:32],
        target_task_id=sibling.task_id,
        target_provider=task.provider,
        target_source=task.source,
        status="found",
        found_in=LISTED_UPSTREAM,
        discovered_at=now,
        resolved_at=now,
    )


def _settle(link: TaskLink, status: str, source: SourceConfig | None, now: datetime) -> None:
    link.status = status
    link.target_source = source.name if source is not None else None
    link.target_provider = source.provider if source is not None else None
    link.resolved_at = now


def _claim_task(pk: int, before: datetime | None, now: datetime | None) -> bool:
    """Move ``links_checked_at`` from ``before`` to ``now`` unless another process did."""
    unchanged = (
        Task.links_checked_at.is_(None) if before is None else Task.links_checked_at == before
    )
    result = db.session.execute(
        sa.update(Task)
        .where(Task.id == pk, unchanged)
        .values(links_checked_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _claim_link(link: TaskLink, now: datetime) -> bool:
    before = link.resolved_at
    unchanged = TaskLink.resolved_at.is_(None) if before is None else TaskLink.resolved_at == before
    result = db.session.execute(
        sa.update(TaskLink)
        .where(TaskLink.id == link.id, TaskLink.status == "pending", unchanged)
        .values(resolved_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _commit() -> None:
    """Commit; a link another process added meanwhile (the unique constraint) is theirs."""
    try:
        db.session.commit()
    except sa.exc.IntegrityError:
        db.session.rollback()
