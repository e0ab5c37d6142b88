"""The NCP API Gateway in front of NCLUE: request signing and the gateway's own errors.

Every request is signed with API Gateway signature v2 (:class:`NcpSignatureV2`, PROVIDERS.md
4.4, trap 16). The gateway answers its own failures in a ``{"error": {"errorCode": "200",
"message", "details"}}`` envelope (4.5); a rejected timestamp is reported as clock skew, not as
a bad key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from collections.abc import Generator
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Annotated
from typing import Any

import httpx
from pydantic import BeforeValidator
from pydantic import ValidationError

from webapp.domain import FetchErrorKind
from webapp.providers.payload import Payload
from webapp.providers.payload import Text

TIMESTAMP_HEADER = "x-ncp-apigw-timestamp"
ACCESS_KEY_HEADER = "x-ncp-iam-access-key"
SIGNATURE_HEADER = "x-ncp-apigw-signature-v2"
#: The gateway rejects a timestamp more than 5 minutes away from its own clock.
MAX_CLOCK_SKEW_SECONDS = 300.0


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


class GatewayErrorBody(Payload):
    errorCode: Annotated[str, BeforeValidator(lambda value: str(value).strip())]
    message: Text = None
    details: Text = None


class GatewayEnvelope(Payload):
    error: GatewayErrorBody


def gateway_error(response: httpx.Response, body: Any) -> tuple[FetchErrorKind | None, str] | None:
    """``(kind, message)`` for the gateway's own error envelope, ``None`` for any other body.

    The kind is ``None`` for an error code the gateway does not document: the HTTP status
    classifies it then.
    """
    try:
        error = GatewayEnvelope.model_validate(body).error
    except ValidationError:
        return None
    code = error.errorCode
    known = GATEWAY_ERRORS.get(code)
    message = error.message or (known[1] if known else "")
    text = f"API Gateway {code} {message}".strip()
    if error.details:
        text += f": {error.details}"
    if code == "200":
        skew = clock_skew(response)
        hint = " ".join(filter(None, (message, error.details))).lower()
        if skew is not None and abs(skew) > MAX_CLOCK_SKEW_SECONDS - 5:
            direction = "behind" if skew > 0 else "ahead of"
            text += (
                f" (clock skew: this machine's clock is about {abs(skew):.0f} s {direction} "
                "the gateway's, which accepts at most 5 minutes; fix the clock, e.g. NTP)"
            )
        elif "timestamp" in hint or "expired" in hint:
            text += " (the gateway rejected the request timestamp: check this machine's clock)"
    return (known[0] if known else None), text


def clock_skew(response: httpx.Response) -> float | None:
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
