"""What Taskdeck knows about one upstream, declared once, next to the upstream's client.

Config validation, the sources form, the detail page, tracking by URL, related tasks and the
demo read a provider's :class:`ProviderSpec` through the registry (``webapp.providers``) and
never name an upstream themselves. Adding an upstream is one provider module (its spec and
client), one simulator module, and a line in each registry.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from typing import Any
from typing import Literal
from urllib.parse import unquote


@dataclass(frozen=True)
class SourceSetting:
    """A source setting that only this upstream reads (beyond the common ones of every source).

    Its value is text; a ``url`` one must be an http(s) URL and is kept without a trailing slash.
    """

    name: str
    label: str
    #: One line for the sources form.
    hint: str
    kind: Literal["text", "url"] = "text"


@dataclass(frozen=True)
class Credentials:
    """The ``*_env`` fields a source of this upstream may set, and how they combine.

    Each names the environment variable that holds one secret; the secret itself is never in
    the sources file or the database.
    """

    fields: tuple[str, ...] = ()
    #: Fields that go together (a key id and its secret).
    pairs: tuple[tuple[str, str], ...] = ()
    #: Fields every source of this upstream must give.
    required: tuple[str, ...] = ()
    #: Ways to authenticate of which a source gives at most one, each a group of fields
    #: (Conductor: a ready token, or a key id and secret to exchange).
    alternatives: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class TaskUrl:
    """A URL shape of one task, so a pasted upstream URL finds its source and task id.

    ``pattern`` is the path under the URL of the source setting ``root`` (``base_url``, or a
    setting such as ``ui_url``): literal segments, ``{task_id}`` for the id and ``{anything}``
    for one other segment.
    """

    pattern: str
    root: str = "base_url"

    @property
    def prefix(self) -> str:
        """The literal start of the pattern (``/api/tasks/``), up to its first placeholder."""
        return self.pattern.split("{", 1)[0]

    def task_id(self, rest: str) -> str | None:
        """The task id in ``rest``, the raw (percent-encoded) path after :attr:`prefix`."""
        wanted = self.pattern[len(self.prefix) :].strip("/").split("/")
        segments = rest.strip("/").split("/")
        if len(segments) != len(wanted) or not all(segments):
            return None
        found: str | None = None
        for expected, segment in zip(wanted, segments, strict=True):
            if expected == "{task_id}":
                found = unquote(segment)
            elif not expected.startswith("{") and segment != expected:
                return None
        return found


@dataclass(frozen=True)
class DetailField:
    """A detail key that the task page labels or formats in a way of its own."""

    key: str
    #: The label, where splitting the key's words would get it wrong (``AUROC``).
    label: str | None = None
    #: ``metric`` (a number shown with its precision) or ``bytes`` (a size); ``None``: by value.
    kind: Literal["metric", "bytes"] | None = None


ActionName = Literal["cancel", "delete", "retry"]
#: Every action name, the same on every provider (issue 12).
ACTION_NAMES: tuple[ActionName, ...] = ("cancel", "delete", "retry")


@dataclass(frozen=True)
class ActionSpec:
    """One upstream action Taskdeck can take on a task, and when the upstream allows it.

    A task allows the action when every condition given holds: its normalized state is one of
    ``states``, its upstream word one of ``upstream`` and none of ``not_upstream``, its type one
    of ``task_types``, and each ``(key, value)`` of ``details`` is in its details. An empty
    condition holds for any task. A task gone upstream allows none.
    The request itself: ``method`` on the task's own API path plus ``path_suffix``; a provider
    whose action is not a request on the task (Conductor's are on its workflow) overrides
    :meth:`~webapp.providers.base.Provider.act` instead.
    """

    name: ActionName
    label: str
    #: What it does, one sentence, for the confirmation ("The job stops; this cannot be undone.").
    consequence: str
    states: tuple[str, ...] = ()
    upstream: tuple[str, ...] = ()
    not_upstream: tuple[str, ...] = ()
    task_types: tuple[str, ...] = ()
    details: tuple[tuple[str, str], ...] = ()
    method: str = "DELETE"
    path_suffix: tuple[str, ...] = ()

    def allows(
        self,
        state: str,
        upstream_status: str | None,
        task_type: str | None,
        details: Mapping[str, Any] | None = None,
    ) -> bool:
        """Whether the upstream takes this action on a task in this state and of this type."""
        found = details or {}
        if any(found.get(key) != value for key, value in self.details):
            return False
        if self.states and state not in self.states:
            return False
        if self.upstream and upstream_status not in self.upstream:
            return False
        if upstream_status is not None and upstream_status in self.not_upstream:
            return False
        return not self.task_types or task_type in self.task_types


@dataclass(frozen=True)
class SignalFacts:
    """What an overdue signal may look at: one active task as the cache holds it."""

    upstream_status: str | None
    created_at: datetime | None
    updated_at: datetime | None
    details: dict[str, Any]
    raw: Any


@dataclass(frozen=True)
class OverdueSignal:
    """An upstream's own sign that an active task is stuck (:mod:`webapp.overdue.judge`).

    ``check(facts, now)`` says why in a few words ("scheduled 20 min, no worker polling"), or
    ``None``. Only tasks whose upstream word is in ``statuses`` are shown to it, so the periodic
    pass reads few payloads.
    """

    statuses: frozenset[str]
    check: Callable[[SignalFacts, datetime], str | None]


@dataclass(frozen=True)
class PayloadLink:
    """A key of a task's payload that names another task Taskdeck may be able to fetch
    (:mod:`webapp.links`): a Conductor task's output holding an ML task's ``task_id``.

    The key is looked for at any depth under each detail key of ``within`` (anywhere in the
    details when empty). ``providers`` are the upstreams whose task the value may be: each
    configured source of those is asked. With ``group`` the value names a group of tasks, not
    a task (a Mixpeek ``batch_id``): it is never fetched, only matched against the tracked
    tasks of those providers that carry it as their related-link key.
    """

    key: str
    providers: tuple[str, ...]
    relation: str = "launched"
    within: tuple[str, ...] = ()
    group: bool = False


@dataclass(frozen=True)
class ProviderSpec:
    """Everything outside its client that Taskdeck knows about one upstream."""

    #: The name sources use (``provider = "..."``); also the simulator's mount point.
    name: str
    label: str
    #: The module of the upstream's simulator (``webapp.simulators``).
    simulator: str
    #: A short form of ``name`` for generated names (the demo's source is ``{short_name}-demo``).
    short_name: str = ""
    credentials: Credentials = field(default_factory=Credentials)
    settings: tuple[SourceSetting, ...] = ()
    #: Requests per second a source of this upstream makes unless it sets ``rate_limit``.
    default_rate_limit: float | None = None
    #: Seconds between polls of an active task unless the source sets ``poll_interval``.
    default_poll_interval: float = 5.0
    #: Detail keys shown first on the task page, in this order (the rest follow, sorted).
    key_fields: tuple[str, ...] = ()
    field_formats: tuple[DetailField, ...] = ()
    #: Link keys naming the upstream group a task belongs to, most specific first: tasks that
    #: share the first one present are "related".
    related_link_keys: tuple[str, ...] = ()
    #: Payload keys naming other upstreams' tasks, for linked tasks (:mod:`webapp.links`).
    payload_links: tuple[PayloadLink, ...] = ()
    task_urls: tuple[TaskUrl, ...] = ()
    #: How ``--query`` and the import page's search read, with `code` in backticks.
    search_help: str | None = None
    #: How the upstream speaks of a task's times, shown on the task page.
    times_note: str | None = None
    #: The upstream sends times without a zone: the source's ``timezone`` says which they are.
    zoneless_times: bool = False
    #: Shown on the page of a task that is still active (what is only read once it finishes).
    active_note: str | None = None
    #: The upstream actions (cancel, delete, retry) Taskdeck can take on a task, and when.
    actions: tuple[ActionSpec, ...] = ()
    #: The upstream's own signs of a stuck task (overdue whatever the bounds say).
    overdue_signals: tuple[OverdueSignal, ...] = ()

    def __post_init__(self) -> None:
        if not self.short_name:
            object.__setattr__(self, "short_name", self.name)

    def field_format(self, key: str) -> DetailField | None:
        return next((f for f in self.field_formats if f.key == key), None)

    def action(self, name: str) -> ActionSpec | None:
        """The declared action ``name``, or ``None`` where this upstream has no such action."""
        return next((a for a in self.actions if a.name == name), None)
