"""NAVER Cloud NCLUE task models (PROVIDERS.md section 4).

GET ``/api/v1/tasks/{task_id}`` and GET ``/api/v1/tasks?index=&limit=`` (at most 100 a page)
behind the NCP API Gateway. Traps handled here (PROVIDERS.md 16-19):

* Every request is signed with API Gateway signature v2 (:class:`NcpSignatureV2`): the string
  to sign holds the request URI *as sent*, base-URL prefix and percent-encoding included, and a
  millisecond timestamp the gateway accepts only within 5 minutes of its own clock. A rejected
  timestamp is reported as clock skew, not as a bad key.
* Errors come from two layers: the gateway's ``{"error": {"errorCode": "200", ...}}`` envelope
  and NCLUE's own (code, message) errors, whose JSON shape is unverified and read tolerantly.
* NCLUE asks for at most 1 request/s: every request waits for the source's budget (the
  shared token bucket of webapp/ratelimit.py, taken in :meth:`Provider.request`; NCLUE's rate
  defaults to 1/s), and :meth:`NclueProvider.fetch_many` pages the list (100 tasks a call)
  instead of one GET per task when that is cheaper.
* ``status`` is lower case and both ``completed`` and ``complete`` occur; times are ISO 8601
  without a zone (read in the source's ``timezone``); ``AUROC`` may be a numeric string.

NCLUE has no server-side search: ``--query`` filters the listed tasks on the client.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import math
import shlex
import time
from collections.abc import Callable
from collections.abc import Generator
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
from pydantic import ValidationError

from webapp.config import SourceConfig
from webapp.domain import FetchError
from webapp.domain import FetchErrorKind
from webapp.domain import NormalizedTask
from webapp.domain import SearchPage
from webapp.domain import TaskState
from webapp.providers.base import Provider
from webapp.providers.base import as_text
from webapp.providers.base import map_status
from webapp.providers.base import parse_iso
from webapp.providers.base import parse_retry_after
from webapp.providers.base import short_body
from webapp.providers.base import status_table
from webapp.providers.base import tolerant_float
from webapp.providers.http import build_client
from webapp.providers.ratelimit import TokenBucket as RateLimiter
from webapp.providers.ratelimit import WaitTooLong as RateLimitWaitTooLong  # noqa: F401 - the old name
from webapp.providers.ratelimit import limiter_for as limiter_for

log = logging.getLogger(__name__)

STATUSES = status_table(
    {
        "registered": TaskState.QUEUED,
        "pending": TaskState.QUEUED,
        "in_progress": TaskState.RUNNING,
        # gettask says "completed", the posttask step table "complete" (trap 5): accept both.
        "completed": TaskState.SUCCEEDED,
        "complete": TaskState.SUCCEEDED,
        "failed": TaskState.FAILED,
    }
)

TIMESTAMP_HEADER = "x-ncp-apigw-timestamp"
ACCESS_KEY_HEADER = "x-ncp-iam-access-key"
SIGNATURE_HEADER = "x-ncp-apigw-signature-v2"
#: The gateway rejects a timestamp more than 5 minutes away from its own clock.
MAX_CLOCK_SKEW_SECONDS = 300.0


# -- signature v2 ---------------------------------------------------------------------------


def sign(method: str, uri: str, timestamp_ms: int | str, access_key: str, secret_key: str) -> str:
    """The ``x-ncp-apigw-signature-v2`` value for one request.

    ``uri`` is the request URI from the host onward, exactly as sent: the full path (any
    base-URL prefix included) plus ``?`` and the raw query string when there is one.
    """
    message = f"{method.upper()} {uri}\n{timestamp_ms}\n{access_key}"
    digest = hmac.new(secret_key.encode("utf-8"), message.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def wall_clock_ms() -> int:
    """Milliseconds since the Unix epoch, by this machine's clock."""
    return time.time_ns() // 1_000_000


class NcpSignatureV2(httpx.Auth):
    """Signs every request as the NCP API Gateway expects (PROVIDERS.md 4.4, trap 16).

    ``now_ms`` is the time source (injectable for tests and for a shared simulated clock).
    The URI signed is ``request.url.raw_path``: the bytes that go on the wire, so a path
    prefix, the query's order and its percent-encoding all match what the gateway recomputes.
    """

    def __init__(
        self,
        access_key: str,
        secret_key: str,
        *,
        now_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self._access_key = access_key
        self._secret_key = secret_key
        self._now_ms = now_ms

    def __repr__(self) -> str:
        return "NcpSignatureV2(access_key=..., secret_key=...)"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        timestamp = str(int(self._now_ms()))
        uri = request.url.raw_path.decode("ascii")
        request.headers[TIMESTAMP_HEADER] = timestamp
        request.headers[ACCESS_KEY_HEADER] = self._access_key
        request.headers[SIGNATURE_HEADER] = sign(
            request.method, uri, timestamp, self._access_key, self._secret_key
        )
        yield request


# -- client-side rate limit -----------------------------------------------------------------


# -- payloads -------------------------------------------------------------------------------


class NclueTask(BaseModel):
    """One task as gettask / gettasklist return it. Only ``status`` must be a string; the rest
    is read tolerantly in :meth:`NclueProvider.normalize`."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    status: str
    task_id: Any = None
    task_name: Any = None
    created_at: Any = None
    completed_at: Any = None
    train_feature_id: Any = None
    train_feature_name: Any = None
    train_bucket: Any = None
    train_file_path: Any = None
    test_feature_id: Any = None
    test_feature_name: Any = None
    test_bucket: Any = None
    test_file_path: Any = None
    auroc: Any = Field(default=None, alias="AUROC")
    line_count: Any = None
    disk_usage: Any = None
    fail_message: Any = None


@dataclass
class ListPage:
    """One answer of the list endpoint: raw task objects and the upstream's total."""

    index: int
    items: list[Any]
    total: int | None


#: API Gateway error codes (PROVIDERS.md 4.5; 403/230 from the gateway overview page).
GATEWAY_ERRORS: dict[str, tuple[FetchErrorKind, str]] = {
    "100": (FetchErrorKind.UPSTREAM_ERROR, "Bad Request Exception"),
    "200": (FetchErrorKind.UNAUTHORIZED, "Authentication Failed"),
    # 401 too, but the key and signature were good: the account lacks permission.
    "210": (FetchErrorKind.FORBIDDEN, "Permission Denied"),
    "230": (FetchErrorKind.FORBIDDEN, "Forbidden"),
    "300": (FetchErrorKind.NOT_FOUND, "Not Found Exception"),
    "400": (FetchErrorKind.RATE_LIMITED, "Quota Exceeded"),
    "410": (FetchErrorKind.RATE_LIMITED, "Throttle Limited"),
    "420": (FetchErrorKind.RATE_LIMITED, "Rate Limited"),
    "430": (FetchErrorKind.UPSTREAM_ERROR, "Request Entity Too Large"),
    "500": (FetchErrorKind.UPSTREAM_ERROR, "Endpoint Error"),
    "510": (FetchErrorKind.TIMEOUT, "Endpoint Timeout"),
    "900": (FetchErrorKind.UPSTREAM_ERROR, "Unexpected Error"),
}

QUERY_KEYS = ("status", "state", "name", "id")


def task_filter(query: str | None) -> Callable[[NormalizedTask], bool]:
    """``--query`` for NCLUE, which has no server-side search: a client-side filter.

    Space-separated terms, all of which must match: ``status:failed`` (the upstream word or
    the normalized state), ``state:succeeded``, ``name:churn`` (substring of the task name),
    ``id:f5ae`` (substring of the id), or a bare word (substring of the name or the id).
    """
    if not query or not query.strip():
        return lambda task: True
    try:
        tokens = shlex.split(query)
    except ValueError:
        tokens = query.split()
    checks: list[Callable[[NormalizedTask], bool]] = []
    for token in tokens:
        key, sep, value = token.partition(":")
        if not sep:
            key, value = "", token
        key, value = key.lower(), value.lower()
        if key and key not in QUERY_KEYS:
            raise ValueError(
                f"--query: NCLUE has no server-side search; unknown term {key!r} "
                f"(use {', '.join(k + ':' for k in QUERY_KEYS)} or a bare word)"
            )
        checks.append(_term_check(key, value))
    return lambda task: all(check(task) for check in checks)


def _term_check(key: str, value: str) -> Callable[[NormalizedTask], bool]:
    def name_of(task: NormalizedTask) -> str:
        return (task.name or "").lower()

    if key == "status":
        return lambda t: (t.upstream_status or "").lower() == value or t.state.value == value
    if key == "state":
        return lambda t: t.state.value == value
    if key == "name":
        return lambda t: value in name_of(t)
    if key == "id":
        return lambda t: value in t.task_id.lower()
    return lambda t: value in name_of(t) or value in t.task_id.lower()


# -- the provider ---------------------------------------------------------------------------


class NclueProvider(Provider):
    name = "nclue"
    label = "NAVER Cloud NCLUE"
    api_prefix = "/api/v1/tasks"
    can_search = True
    max_page_size = 100
    #: :meth:`fetch_many` weighs list pages against GETs itself, so any number of ids is safe.
    batch_size = 100
    times_note = (
        "NCLUE sends times without a zone; they are read in the source's time zone "
        "(UTC unless the source sets timezone)."
    )

    def __init__(
        self,
        source: SourceConfig,
        client: httpx.Client,
        *,
        limiter: RateLimiter | None = None,
    ) -> None:
        super().__init__(source, client, limiter=limiter)
        #: The list's total as last seen: lets :meth:`fetch_many` price a list scan up front.
        self.known_total: int | None = None

    @classmethod
    def create(
        cls,
        source: SourceConfig,
        *,
        transport: httpx.BaseTransport | None = None,
        now_ms: Callable[[], int] | None = None,
        limiter: RateLimiter | None = None,
    ) -> NclueProvider:
        """As :meth:`Provider.create`, plus an injectable signing clock and limiter."""
        client = build_client(
            source,
            auth=cls.client_auth(source, now_ms=now_ms),
            headers=cls.client_headers(source),
            transport=transport,
        )
        return cls(source, client, limiter=limiter)

    @classmethod
    def client_auth(
        cls, source: SourceConfig, *, now_ms: Callable[[], int] | None = None
    ) -> httpx.Auth | None:
        access_key = source.secret("access_key_env")
        secret_key = source.secret("secret_key_env")
        if not access_key or not secret_key:
            return None
        return NcpSignatureV2(access_key, secret_key, now_ms=now_ms or wall_clock_ms)

    # -- requests ------------------------------------------------------------------------------
    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One signed request (the base class waits for the source's rate limit first)."""
        if not isinstance(self.client.auth, NcpSignatureV2):
            raise FetchError(
                FetchErrorKind.UNAUTHORIZED,
                f"{self.label}: no access key / secret key configured for this source",
            )
        return super().request(method, path, **kwargs)

    def fetch(self, task_id: str) -> NormalizedTask:
        response = self.request("GET", self.api_path(task_id))
        if response.status_code != 200:
            raise self.error_for(response)
        return self.normalize(task_id, self.json_body(response))

    def list_page(self, index: int, limit: int) -> ListPage:
        """GET ``/api/v1/tasks?index=&limit=`` (``limit`` clamped to 1..100)."""
        limit = max(1, min(self.max_page_size, limit))
        response = self.request(
            "GET", self.api_prefix, params={"index": max(0, index), "limit": limit}
        )
        if response.status_code != 200:
            raise self.error_for(response)
        payload = self.json_body(response)
        tasks = payload.get("tasks") if isinstance(payload, dict) else None
        if not isinstance(tasks, list):
            raise FetchError(
                FetchErrorKind.BAD_PAYLOAD,
                "task list answer has no 'tasks' array",
                status_code=response.status_code,
                raw=payload,
            )
        total = payload.get("total")
        if isinstance(total, bool) or not isinstance(total, int):
            total = None
        if total is not None:
            self.known_total = total
        return ListPage(index=index, items=tasks, total=total)

    def scan(self) -> Iterator[tuple[str, NormalizedTask | FetchError]]:
        """Every listed task, newest first, one list call per 100 tasks."""
        index = 0
        while True:
            page = self.list_page(index, self.max_page_size)
            yield from self._normalize_items(page.items)
            index += len(page.items)
            if len(page.items) < self.max_page_size or (
                page.total is not None and index >= page.total
            ):
                return

    def search_page(self, query: str | None, offset: int, limit: int) -> SearchPage:
        """A page of the task list; with ``query``, a page of the client-side filtered list.

        Filtering reads the whole list (``ceil(total/100)`` calls at 1 request/s) to give an
        exact total; :meth:`search` streams instead, in one pass.
        """
        if not query or not query.strip():
            page = self.list_page(offset, limit)
            items = self._normalize_items(page.items)
            tasks = [task for _, task in items if not isinstance(task, FetchError)]
            return SearchPage(tasks, page.total)
        matches = list(self._filtered(query))
        return SearchPage(matches[offset : offset + limit], len(matches))

    def search(
        self, query: str | None = None, limit: int | None = None
    ) -> Iterator[NormalizedTask]:
        """One streaming pass over the list, filtered on the client when ``query`` is set."""
        if limit is not None and limit <= 0:
            return
        for count, task in enumerate(self._filtered(query), start=1):
            yield task
            if limit is not None and count >= limit:
                return

    def fetch_many(self, task_ids: list[str]) -> dict[str, NormalizedTask | FetchError]:
        """Page the list (100 tasks a call) when that is cheaper than one GET per id.

        Paging stops as soon as every id is found. Before each further page the remaining list
        calls are weighed against one GET per id still missing, and the cheaper way finishes
        the job. Ids absent from the complete list are ``not_found``; if the list's total moved
        while paging (a task was added or removed, shifting pages), missing ids are fetched one
        by one rather than declared gone.
        """
        wanted = list(dict.fromkeys(task_ids))
        if len(wanted) <= 1 or (
            self.known_total is not None and self._list_calls(self.known_total) >= len(wanted)
        ):
            return super().fetch_many(wanted)
        results: dict[str, NormalizedTask | FetchError] = {}
        missing = set(wanted)
        index = 0
        first_total: int | None = None
        stable = True
        complete = False
        while missing:
            try:
                page = self.list_page(index, self.max_page_size)
            except FetchError as exc:
                results.update({task_id: exc for task_id in missing})
                return {task_id: results[task_id] for task_id in wanted}
            if index == 0:
                first_total = page.total
            elif page.total != first_total:
                stable = False
            for task_id, task in self._normalize_items(page.items, only=missing):
                results[task_id] = task
                missing.discard(task_id)
            index += len(page.items)
            if len(page.items) < self.max_page_size or (
                page.total is not None and index >= page.total
            ):
                complete = True
                break
            if page.total is not None and self._list_calls(page.total - index) >= len(missing):
                break
        if complete and stable:
            for task_id in missing:
                results[task_id] = FetchError(
                    FetchErrorKind.NOT_FOUND,
                    f"{self.label}: task is not in the task list ({index} tasks listed)",
                )
        else:
            results.update(super().fetch_many([t for t in wanted if t in missing]))
        return {task_id: results[task_id] for task_id in wanted}

    def _list_calls(self, count: int) -> int:
        return max(1, math.ceil(count / self.max_page_size))

    def _normalize_items(
        self, items: list[Any], only: set[str] | None = None
    ) -> Iterator[tuple[str, NormalizedTask | FetchError]]:
        """(id, task) for listed items; one that does not parse comes out as its error.

        Items without a string ``task_id`` cannot be keyed: they are skipped and logged.
        """
        for item in items:
            task_id = item.get("task_id") if isinstance(item, dict) else None
            if not isinstance(task_id, str):
                log.warning("source %s: listed task without a task_id skipped", self.source.name)
                continue
            if only is not None and task_id not in only:
                continue
            try:
                yield task_id, self.normalize(task_id, item)
            except FetchError as exc:
                yield task_id, exc

    def _filtered(self, query: str | None) -> Iterator[NormalizedTask]:
        keep = task_filter(query)
        for task_id, task in self.scan():
            if isinstance(task, FetchError):
                log.warning(
                    "source %s: listed task %r skipped: %s", self.source.name, task_id, task
                )
            elif keep(task):
                yield task

    # -- reading answers -------------------------------------------------------------------------
    def normalize(self, task_id: str, payload: Any) -> NormalizedTask:
        try:
            task = NclueTask.model_validate(payload)
        except ValidationError as exc:
            raise FetchError(
                FetchErrorKind.BAD_PAYLOAD, "task object has no string 'status'", raw=payload
            ) from exc
        mapping = map_status(STATUSES, task.status, source=self.source.name, provider=self.name)
        zone = self.source.zone
        finished = parse_iso(task.completed_at, default_tz=zone)
        auroc = tolerant_float(task.auroc)
        details: dict[str, Any] = {
            "auroc": auroc,
            # An AUROC that is not a number is shown as it came (the raw payload keeps it too).
            "auroc_raw": as_text(task.auroc) if auroc is None else None,
            "line_count": task.line_count,
            "disk_usage": task.disk_usage,
            "train_feature_id": task.train_feature_id,
            "train_feature_name": task.train_feature_name,
            "train_bucket": task.train_bucket,
            "train_file_path": task.train_file_path,
            "test_feature_id": task.test_feature_id,
            "test_feature_name": task.test_feature_name,
            "test_bucket": task.test_bucket,
            "test_file_path": task.test_file_path,
        }
        links: dict[str, str] = {"api": self.api_url(task_id)}
        for key in ("train_feature_id", "test_feature_id"):
            value = getattr(task, key)
            if isinstance(value, str) and value:
                links[key] = value
        return NormalizedTask(
            task_id=task_id,
            state=mapping.state,
            upstream_status=task.status,
            terminal=mapping.terminal,
            raw=payload,
            # NCLUE builds one kind of thing: a task model.
            task_type="task-model",
            name=as_text(task.task_name),
            created_at=parse_iso(task.created_at, default_tz=zone),
            updated_at=finished,
            finished_at=finished,
            error=as_text(task.fail_message),
            links=links,
            details={k: v for k, v in details.items() if v not in (None, "", [], {})},
        )

    def error_for(self, response: httpx.Response) -> FetchError:
        """Classify an error answer by its layer: API Gateway envelope, else NCLUE's own."""
        try:
            body = response.json()
        except ValueError:
            body = None
        gateway = body.get("error") if isinstance(body, dict) else None
        if isinstance(gateway, dict) and "errorCode" in gateway:
            error = self._gateway_error(response, gateway)
        else:
            error = self._nclue_error(response, body)
        return FetchError(
            error.kind,
            self._scrub(error.message, response.request),
            status_code=error.status_code,
            retry_after=error.retry_after,
        )

    def _gateway_error(self, response: httpx.Response, envelope: dict[str, Any]) -> FetchError:
        code = str(envelope.get("errorCode")).strip()
        known = GATEWAY_ERRORS.get(code)
        message = as_text(envelope.get("message")) or (known[1] if known else "")
        text = f"API Gateway {code} {message}".strip()
        details = as_text(envelope.get("details"))
        if details:
            text += f": {details}"
        if code == "200":
            skew = self._clock_skew(response)
            hint = " ".join(filter(None, (message, details))).lower()
            if skew is not None and abs(skew) > MAX_CLOCK_SKEW_SECONDS - 5:
                direction = "behind" if skew > 0 else "ahead of"
                text += (
                    f" (clock skew: this machine's clock is about {abs(skew):.0f} s {direction} "
                    "the gateway's, which accepts at most 5 minutes; fix the clock, e.g. NTP)"
                )
            elif "timestamp" in hint or "expired" in hint:
                text += " (the gateway rejected the request timestamp: check this machine's clock)"
        if known is None:
            return self.status_error(response, message=text)
        return FetchError(
            known[0],
            text,
            status_code=response.status_code,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )

    def _nclue_error(self, response: httpx.Response, body: Any) -> FetchError:
        # NCLUE's own error body is unverified (PROVIDERS.md 4.5): look for a code and a
        # message at the top level or under "error", under the usual spellings.
        code: str | None = None
        message: str | None = None
        for container in (body, body.get("error") if isinstance(body, dict) else None):
            if not isinstance(container, dict):
                continue
            for key in ("code", "errorCode", "error_code", "status_code"):
                if container.get(key) is not None and code is None:
                    code = as_text(container[key])
            for key in ("message", "error_message", "errorMessage", "msg", "detail"):
                if isinstance(container.get(key), str) and message is None:
                    message = container[key]
        if isinstance(body, dict) and isinstance(body.get("error"), str) and message is None:
            message = body["error"]
        if code is None and message is None:
            excerpt = short_body(response)
            text = f"NCLUE HTTP {response.status_code}" + (f": {excerpt}" if excerpt else "")
        else:
            text = " ".join(filter(None, ("NCLUE", code, message)))
        return self.status_error(response, message=text)

    @staticmethod
    def _clock_skew(response: httpx.Response) -> float | None:
        """Gateway time (``Date``) minus the time we signed, in seconds; ``None`` if unknown."""
        signed = response.request.headers.get(TIMESTAMP_HEADER)
        date = response.headers.get("Date")
        if not signed or not date:
            return None
        try:
            gateway = parsedate_to_datetime(date)
            signed_s = int(signed) / 1000
        except (TypeError, ValueError):
            return None
        if gateway.tzinfo is None:
            gateway = gateway.replace(tzinfo=UTC)
        return gateway.timestamp() - signed_s

    def _scrub(self, text: str, request: httpx.Request) -> str:
        """Never let the secret or the signature reach a message, even if an upstream echoes it."""
        for secret in (
            self.source.secret("secret_key_env"),
            request.headers.get(SIGNATURE_HEADER),
        ):
            if secret:
                text = text.replace(secret, "[redacted]")
        return text
