"""Conductor auth: none (open source), a fixed token, or an Orkes key id and secret exchanged
for a token at ``POST /api/token`` (PROVIDERS.md section 3, trap 10).

The token goes in ``X-Authorization`` with no ``Bearer``, is refreshed before it ages and, on a
401/403 whose JSON says ``EXPIRED_TOKEN`` or ``INVALID_TOKEN``, refreshed and the request
retried exactly once (conductor-python 2.0 ``ApiClient.__call_api``): a server restart or a
rotated signing key invalidates issued tokens long before their age is up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncGenerator
from collections.abc import Callable
from collections.abc import Generator
from collections.abc import Iterable

import httpx

from webapp.domain import FetchError
from webapp.domain import FetchErrorKind
from webapp.providers.base import parse_retry_after
from webapp.providers.base import short_body
from webapp.providers.payload import Payload
from webapp.providers.payload import read_json_as
from webapp.providers.source import SourceSettings
from webapp.version import __version__

#: The header Orkes reads the token from; the value is the bare token, no ``Bearer``.
TOKEN_HEADER = "X-Authorization"
TOKEN_PATH = "/api/token"
#: Refresh a token once it is this old. Orkes does not document the lifetime; both SDKs
#: refresh after 45 minutes (python ``auth_token_ttl_min``, Java ``tokenRefreshInSeconds``).
DEFAULT_TOKEN_REFRESH_SECONDS = 45 * 60
#: The ``error`` words of an Orkes 401/403 body (conductor-python ``rest.py``).
EXPIRED_TOKEN = "EXPIRED_TOKEN"
INVALID_TOKEN = "INVALID_TOKEN"
#: Words after which a new token may succeed where the old one failed.
RENEWABLE = frozenset({EXPIRED_TOKEN, INVALID_TOKEN})


class TokenResponse(Payload):
    """The answer of ``POST /api/token``."""

    token: str


class AuthFailure(Payload):
    """An Orkes 401/403 body: ``error`` is ``EXPIRED_TOKEN``, ``INVALID_TOKEN``..."""

    error: str


class ErrorResponse(Payload):
    """``ErrorResponse.java``: ``{status, code, message, instance, retryable}``."""

    message: str | None = None


class ConductorAuthBase(httpx.Auth):
    """What both token modes share: the secrets to keep out of error messages."""

    requires_response_body = True

    def secrets(self) -> list[str]:
        """Every credential this auth holds, so error messages can be scrubbed of them."""
        return []

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        # The token cache uses a threading lock; Taskdeck's clients are synchronous.
        raise RuntimeError("Conductor auth supports synchronous httpx clients only")
        yield request  # pragma: no cover - makes this an async generator


class ConductorTokenAuth(ConductorAuthBase):
    """A ready token (``token_env``): sent as is, never refreshed, never retried."""

    def __init__(self, token: str) -> None:
        self._token = token

    def secrets(self) -> list[str]:
        return [self._token]

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers[TOKEN_HEADER] = self._token
        yield request


class ConductorKeyAuth(ConductorAuthBase):
    """Orkes keyId/keySecret exchanged at ``POST /api/token`` for a token.

    One instance serves every thread sharing the source's client, so the cached token is read
    and renewed under a lock: when it ages, one thread renews it and the others wait for it.
    The token is renewed proactively after ``refresh_after`` seconds and once more, with exactly
    one retry of the request, when a 401/403 body says ``EXPIRED_TOKEN`` or ``INVALID_TOKEN``.
    The retry's answer, whatever it says, and a rejected exchange are returned or raised as
    they are: never a loop.
    """

    def __init__(
        self,
        key_id: str,
        key_secret: str,
        token_url: str,
        *,
        refresh_after: float = DEFAULT_TOKEN_REFRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        label: str = "Conductor",
    ) -> None:
        self._key_id = key_id
        self._key_secret = key_secret
        self.token_url = token_url
        self.refresh_after = refresh_after
        self._clock = clock
        self._label = label
        self._lock = threading.Lock()
        self._token: str | None = None
        self._obtained_at = 0.0

    def secrets(self) -> list[str]:
        return [s for s in (self._key_id, self._key_secret, self._token) if s]

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        # As httpx's default, but closing the inner flow for sure, so that a transport error
        # during the exchange releases the token lock at once (not at garbage collection).
        flow = self.auth_flow(request)
        try:
            request = next(flow)
            while True:
                response = yield request
                response.read()
                try:
                    request = flow.send(response)
                except StopIteration:
                    return
        finally:
            flow.close()

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if request.url.path.endswith(TOKEN_PATH):
            # Never send a token to the endpoint that issues them.
            request.headers.pop(TOKEN_HEADER, None)
            yield request
            return
        token = yield from self._valid_token(stale=None)
        request.headers[TOKEN_HEADER] = token
        response = yield request
        if response.status_code in (401, 403) and token_error(response) in RENEWABLE:
            token = yield from self._valid_token(stale=token)
            request.headers[TOKEN_HEADER] = token
            yield request

    def _valid_token(self, *, stale: str | None) -> Generator[httpx.Request, httpx.Response, str]:
        """The cached token, or a new one when there is none, it aged, or it is ``stale``."""
        with self._lock:
            token = self._token
            fresh = self._clock() - self._obtained_at < self.refresh_after
            # Another thread may have renewed a token the server refused: reuse that one.
            if token is not None and fresh and token != stale:
                return token
            self._token = None
            response = yield httpx.Request(
                "POST",
                self.token_url,
                json={"keyId": self._key_id, "keySecret": self._key_secret},
                headers={"Accept": "application/json", "User-Agent": f"taskdeck/{__version__}"},
            )
            token = self._read_token(response)
            self._token, self._obtained_at = token, self._clock()
            return token

    def _read_token(self, response: httpx.Response) -> str:
        code = response.status_code
        if code == 200:
            answer = read_json_as(TokenResponse, response)
            if answer is not None and answer.token:
                return answer.token
            raise FetchError(
                FetchErrorKind.UNAUTHORIZED,
                f"{self._label} token exchange answered without a token",
                status_code=code,
            )
        detail = scrub(error_message(response) or "", self.secrets())
        suffix = f": {detail}" if detail else ""
        if code == 429:
            kind = FetchErrorKind.RATE_LIMITED
            message = f"{self._label} token exchange was rate limited{suffix}"
        elif code >= 500:
            # The keys may be fine: a broken server is not a credential problem.
            kind = FetchErrorKind.UPSTREAM_ERROR
            message = f"{self._label} token exchange failed{suffix}"
        elif code == 404:
            kind = FetchErrorKind.UNAUTHORIZED
            message = (
                f"{self._label} has no {TOKEN_PATH} (open-source Conductor needs no key id or "
                "secret: remove key_id_env/key_secret_env)"
            )
        else:
            kind = FetchErrorKind.UNAUTHORIZED
            message = f"{self._label} rejected the key id and secret{suffix}"
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise FetchError(kind, message, status_code=code, retry_after=retry_after)


def auth_for(source: SourceSettings, *, refresh_after: float, label: str) -> httpx.Auth | None:
    """What the source's credentials ask for: a key id and secret to exchange, a ready token,
    or nothing (open-source Conductor has no auth by default)."""
    key_id = source.secret("key_id_env")
    if key_id is not None:
        return ConductorKeyAuth(
            key_id,
            source.secret("key_secret_env") or "",
            source.base_url.rstrip("/") + TOKEN_PATH,
            refresh_after=refresh_after,
            label=label,
        )
    token = source.secret("token_env")
    return ConductorTokenAuth(token) if token is not None else None


def token_failure(response: httpx.Response, label: str) -> FetchError | None:
    """A 401/403 whose body says the token expired or was rejected, as the error to report."""
    word = token_error(response) if response.status_code in (401, 403) else None
    if word not in RENEWABLE:
        return None
    why = "expired" if word == EXPIRED_TOKEN else "was rejected"
    return FetchError(
        FetchErrorKind.UNAUTHORIZED,
        f"the {label} token {why} ({word})",
        status_code=response.status_code,
    )


def token_error(response: httpx.Response) -> str | None:
    """The ``error`` word of an Orkes auth failure body (``EXPIRED_TOKEN``...), if any."""
    body = read_json_as(AuthFailure, response)
    return body.error if body is not None else None


def error_message(response: httpx.Response) -> str | None:
    """``ErrorResponse.message``, else the body's first characters; ``None`` for an empty body."""
    if not response.content.strip():
        return None
    body = read_json_as(ErrorResponse, response)
    return (body.message if body is not None else None) or short_body(response) or None


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every credential replaced, in case an upstream echoes one back."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
