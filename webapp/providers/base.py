"""The provider interface: what every upstream module implements, and the normalized task.

A provider turns one upstream's "get task" (and, where it has one, "search/list tasks") API
into :class:`NormalizedTask` objects. Providers never touch the database and never raise
anything but :class:`FetchError` for upstream trouble: the refresher stores that as data.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from typing import ClassVar
from typing import Literal
from urllib.parse import quote

import httpx

from webapp.domain import FINISHED_STATES
from webapp.domain import FetchError
from webapp.domain import FetchErrorKind
from webapp.domain import NormalizedTask
from webapp.domain import SearchPage
from webapp.domain import Sibling
from webapp.domain import TaskState
from webapp.metrics import observe_upstream
from webapp.providers.http import build_client
from webapp.providers.http import refusal
from webapp.providers.ratelimit import Limiter
from webapp.providers.ratelimit import WaitTooLong
from webapp.providers.ratelimit import limiter_for
from webapp.providers.source import SourceSettings
from webapp.providers.spec import ActionSpec
from webapp.providers.spec import ProviderSpec

log = logging.getLogger(__name__)

#: Most siblings :meth:`Provider.siblings` asks an upstream for (one page of its search).
MAX_SIBLINGS = 50


@dataclass(frozen=True)
class StatusMapping:
    """How one upstream status word maps onto a normalized state."""

    state: TaskState
    terminal: bool


def status_table(
    table: Mapping[str, TaskState], *, terminal_unknown: Iterable[str] = ()
) -> dict[str, StatusMapping]:
    """Build a provider's word -> (state, terminal) table.

    Every known state's terminality follows from the state itself, except ``unknown``, whose
    words are terminal only when listed in ``terminal_unknown`` (e.g. OpenSearch UNREACHABLE).
    """
    terminal_words = set(terminal_unknown)
    result: dict[str, StatusMapping] = {}
    for word, state in table.items():
        if state is TaskState.UNKNOWN:
            terminal = word in terminal_words
        else:
            terminal = state in FINISHED_STATES
        result[word] = StatusMapping(state, terminal)
    return result


_UNKNOWN_WORDS_SEEN: set[tuple[str, str]] = set()


def map_status(
    table: Mapping[str, StatusMapping], word: Any, *, source: str = "", provider: str = ""
) -> StatusMapping:
    """Map an upstream word; a word we do not know is ``unknown`` and not terminal.

    New words are logged once per (source, word) so an upstream that grows a state shows up in
    the log without flooding it.
    """
    if isinstance(word, str) and word in table:
        return table[word]
    key = (source or provider, repr(word))
    if key not in _UNKNOWN_WORDS_SEEN:
        _UNKNOWN_WORDS_SEEN.add(key)
        log.warning("source %s (%s): unknown status word %r", source or "?", provider, word)
    return StatusMapping(TaskState.UNKNOWN, False)


class Provider:
    """Base class of every provider module.

    Subclasses set ``spec`` (their :class:`ProviderSpec`) and ``api_prefix`` and implement
    :meth:`fetch`; those that can search override :meth:`search_page` and set ``can_search``.
    :meth:`fetch_many` defaults to one fetch per id; providers whose upstream returns many tasks
    in one call override it.
    """

    spec: ClassVar[ProviderSpec]
    #: ``spec.name``, ``spec.label`` and ``spec.times_note``, for messages and callers.
    name: ClassVar[str]
    label: ClassVar[str]
    times_note: ClassVar[str | None] = None
    #: The API path the provider appends to the source's base URL (DESIGN.md, Configuration).
    api_prefix: ClassVar[str]
    can_search: ClassVar[bool] = False
    #: Largest page :meth:`search_page` asks for.
    max_page_size: ClassVar[int] = 100
    #: Most ids the refresher hands :meth:`fetch_many` at once; 1 where it would only loop
    #: over :meth:`fetch` (the refresher then fetches those ids in parallel instead).
    batch_size: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        spec = cls.__dict__.get("spec")
        if isinstance(spec, ProviderSpec):
            cls.name, cls.label, cls.times_note = spec.name, spec.label, spec.times_note

    def __init__(
        self, source: SourceSettings, client: httpx.Client, *, limiter: Limiter | None = None
    ) -> None:
        self.source = source
        self.client = client
        #: The source's request budget (webapp/ratelimit.py), taken by every :meth:`request`.
        self.limiter = limiter if limiter is not None else limiter_for(source)

    @classmethod
    def create(
        cls,
        source: SourceSettings,
        *,
        transport: httpx.BaseTransport | None = None,
        limiter: Limiter | None = None,
    ) -> Provider:
        """The provider for ``source`` with its own configured client (and request budget,
        this process's own unless ``limiter`` is given)."""
        client = build_client(
            source,
            auth=cls.client_auth(source),
            headers=cls.client_headers(source),
            transport=transport,
        )
        return cls(source, client, limiter=limiter)

    @classmethod
    def client_auth(cls, source: SourceSettings) -> httpx.Auth | None:
        """The ``httpx.Auth`` that signs or authenticates every request to the source."""
        return None

    @classmethod
    def client_headers(cls, source: SourceSettings) -> dict[str, str]:
        """Headers sent on every request to the source (never secrets that could be logged)."""
        return {}

    def close(self) -> None:
        self.client.close()

    # -- what subclasses implement -----------------------------------------------------
    def fetch(self, task_id: str) -> NormalizedTask:
        """Fetch one task by the id it was tracked under. Raises :class:`FetchError`."""
        raise NotImplementedError

    @staticmethod
    def parse_query(query: str | None) -> Any:
        """``--query`` (and a source's ``follow``) in the upstream's terms; ``ValueError`` for
        a query it cannot read. Providers that search override it."""
        return query

    def search_page(self, query: str | None, offset: int, limit: int) -> SearchPage:
        """One page of the upstream's own task search. Raises :class:`FetchError`."""
        raise FetchError(
            FetchErrorKind.BAD_PAYLOAD, f"{self.label} has no task search", status_code=None
        )

    def siblings(self, task_id: str, links: Mapping[str, str]) -> list[Sibling] | None:
        """The tasks the upstream lists beside this one (its model's, its workflow's), at most
        :data:`MAX_SIBLINGS`, found from the task's ``links``; ``None`` where the upstream has
        no such list or the task names no group. Raises :class:`FetchError`."""
        return None

    def add_extras(self, results: dict[str, NormalizedTask | FetchError]) -> None:
        """Add what a separate call fetches (Conductor's task logs) to fetched tasks' details.

        The refresher calls it after every fetch; providers make it cheap by calling upstream
        only when a task changed. The default adds nothing.
        """

    def act(
        self, action: ActionSpec, task_id: str, *, links: Mapping[str, str], actor: str
    ) -> ActionResult:
        """Take ``action`` on the task upstream, for ``actor``: the action's request on the
        task's own path. Raises :class:`FetchError` when the upstream cannot be reached, fails
        (5xx) or refuses the credentials; a "no" to the action itself is a ``refused`` result.
        """
        response = self.request(action.method, self.api_path(task_id, *action.path_suffix))
        return self.action_answer(action, response)

    def action_answer(self, action: ActionSpec, response: httpx.Response) -> ActionResult:
        """Read the answer to an action's request (see :meth:`act`)."""
        if response.is_success:
            said = answer_message(response)
            accepted = f"{self.label} accepted the {action.name}"
            return ActionResult("done", f"{accepted}: {said}" if said else accepted)
        refused = self.action_refusal(response)
        if refused is not None:
            return ActionResult("refused", refused)
        raise self.status_error(response, message=answer_message(response) or None)

    def action_refusal(self, response: httpx.Response) -> str | None:
        """The upstream's reason when an error answer is a "no" to the action in the task's
        state (rather than a failure): by default, 400, 404, 409 and 422."""
        if response.status_code in (400, 404, 409, 422):
            return answer_message(response) or f"HTTP {response.status_code}"
        return None

    # -- shared behaviour ----------------------------------------------------------------
    def fetch_many(self, task_ids: list[str]) -> dict[str, NormalizedTask | FetchError]:
        """Fetch several tasks; the default is one :meth:`fetch` per id."""
        results: dict[str, NormalizedTask | FetchError] = {}
        for task_id in task_ids:
            try:
                results[task_id] = self.fetch(task_id)
            except FetchError as exc:
                results[task_id] = exc
        return results

    def search(
        self, query: str | None = None, limit: int | None = None
    ) -> Iterator[NormalizedTask]:
        """Every task the upstream search returns for ``query``, page by page, up to ``limit``."""
        offset = 0
        while limit is None or offset < limit:
            size = self.max_page_size if limit is None else min(self.max_page_size, limit - offset)
            page = self.search_page(query, offset, size)
            yield from page.tasks
            offset += len(page.tasks)
            if len(page.tasks) < size or (page.total is not None and offset >= page.total):
                return

    def search_newest(
        self, query: str | None, page_size: int | None = None
    ) -> Iterator[SearchPage]:
        """The query's matches newest first, one request per page, for a follow that stops
        as soon as it reaches what its last run saw (:mod:`webapp.follows.runner`); the first
        page carries the total where the upstream gives one. Raises :class:`FetchError`.

        The default pages :meth:`search_page` by offset: right for a provider whose search
        sorts newest first (each says so). A task created during the walk shifts later pages
        by one, which shows a task twice, never skips one.
        """
        size = max(1, min(page_size or self.max_page_size, self.max_page_size))
        offset = 0
        while True:
            page = self.search_page(query, offset, size)
            yield page
            offset += len(page.tasks)
            if len(page.tasks) < size or (page.total is not None and offset >= page.total):
                return

    def search_total(self, query: str | None = None) -> int | None:
        """How many tasks a search would return, where the upstream says (for progress bars)."""
        return self.search_page(query, 0, 1).total

    def api_path(self, *parts: str) -> str:
        """The API path for ``parts`` under the source's base URL, each part URL-encoded."""
        return self.api_prefix + "".join("/" + quote_segment(part) for part in parts)

    def api_url(self, task_id: str) -> str:
        """The absolute upstream API URL for one task (shown as a link)."""
        return str(self.client.base_url).rstrip("/") + self.api_path(task_id)

    # -- helpers for subclasses ------------------------------------------------------------
    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send one request within the source's rate limit; transport failures become
        :class:`FetchError`. A free slot further away than the timeout is a ``rate_limited``
        error rather than a long silent wait."""
        try:
            self.limiter.acquire(max_wait=self.source.timeout)
        except WaitTooLong as exc:
            raise FetchError(
                FetchErrorKind.RATE_LIMITED,
                f"client-side limit of {self.source.effective_rate_limit:g} request/s for this "
                f"source: the next slot is {exc.wait:.1f} s away, more than the "
                f"{self.source.timeout:g} s timeout",
                retry_after=exc.wait,
            ) from None
        started = time.perf_counter()
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            observe_upstream(self.source.name, FetchErrorKind.TIMEOUT.value, None)
            raise FetchError(
                FetchErrorKind.TIMEOUT, f"{self.label} did not answer in time"
            ) from exc
        except httpx.TransportError as exc:
            observe_upstream(self.source.name, FetchErrorKind.NETWORK.value, None)
            reason = refusal(exc) or type(exc).__name__
            raise FetchError(
                FetchErrorKind.NETWORK, f"cannot reach {self.label}: {reason}"
            ) from exc
        observe_upstream(
            self.source.name,
            f"{response.status_code // 100}xx",
            time.perf_counter() - started,
        )
        return response

    def status_error(self, response: httpx.Response, *, message: str | None = None) -> FetchError:
        """A :class:`FetchError` for a non-success answer, classified by HTTP status."""
        code = response.status_code
        detail = message or short_body(response)
        if code == 401:
            kind = FetchErrorKind.UNAUTHORIZED
        elif code == 403:
            kind = FetchErrorKind.FORBIDDEN
        elif code == 404:
            kind = FetchErrorKind.NOT_FOUND
        elif code == 429:
            kind = FetchErrorKind.RATE_LIMITED
        elif code == 408 or code == 504:
            kind = FetchErrorKind.TIMEOUT
        elif code >= 500:
            kind = FetchErrorKind.UPSTREAM_ERROR
        else:
            kind = FetchErrorKind.UPSTREAM_ERROR
        return FetchError(
            kind,
            detail or f"HTTP {code}",
            status_code=code,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )

    def json_body(self, response: httpx.Response) -> Any:
        """The decoded JSON body, or a ``bad_payload`` error that keeps the text."""
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise FetchError(
                FetchErrorKind.BAD_PAYLOAD,
                f"{self.label} answered with something that is not JSON",
                status_code=response.status_code,
                raw=response.text[:4000],
            ) from exc


@dataclass(frozen=True)
class ActionResult:
    """What the upstream answered to an action: ``done``, or ``refused`` (it said no, in its
    own words). Failing to get an answer at all raises :class:`FetchError` instead."""

    outcome: Literal["done", "refused"]
    message: str


# -- helpers for requests and answers, shared by the providers ---------------------------

_SAFE_SEGMENT_CHARS = "-._~"


def quote_segment(value: str) -> str:
    """Percent-encode one path segment: ``/``, ``?``, ``%`` and spaces included."""
    return quote(value, safe=_SAFE_SEGMENT_CHARS)


def short_body(response: httpx.Response, limit: int = 300) -> str:
    """A one-line excerpt of an error body, for messages."""
    text = " ".join(response.text.split())
    return text[:limit]


def answer_message(response: httpx.Response) -> str:
    """The human part of an upstream answer: the ``message``, ``reason`` or ``detail`` of a JSON
    body (also inside its ``error`` object), else a one-line excerpt of the text."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return short_body(response)
    for holder in (body, body.get("error") if isinstance(body, dict) else None):
        if isinstance(holder, dict):
            for key in ("message", "reason", "detail"):
                if isinstance(holder.get(key), str) and holder[key]:
                    return str(holder[key])
    return short_body(response)


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (the delta form; an HTTP date is read too)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)
