"""Orkes tokens for the Conductor simulator: ``POST /api/token`` issues them, every other
request presents one in ``X-Authorization`` (PROVIDERS.md 3.6 and part 3).

A token expires by the simulator clock (``EXPIRED_TOKEN``). One the server does not know is
``INVALID_TOKEN``: a token it never issued, or one issued before it restarted or rotated its
signing key (:meth:`TokenIssuer.forget_all`), which happens long before a token's age is up.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from typing import Any

from webapp.simulators.core import SimulatorState

EXPIRED_TOKEN = "EXPIRED_TOKEN"
INVALID_TOKEN = "INVALID_TOKEN"


class TokenIssuer:
    """Tokens handed out by ``POST /api/token`` and when each expires (simulator clock)."""

    def __init__(self, state: SimulatorState, ttl_seconds: float) -> None:
        self.state = state
        self.ttl_seconds = ttl_seconds
        self._expiry: dict[str, float | None] = {}
        self._lock = threading.Lock()

    def issue(self, expiration_ms: Any) -> str:
        now = self.state.clock.now()
        ttl: float | None = self.ttl_seconds
        # Orkes' optional ``expiration`` is in ms; a negative value means "never expires".
        if isinstance(expiration_ms, int) and not isinstance(expiration_ms, bool):
            ttl = None if expiration_ms < 0 else expiration_ms / 1000
        claims = {"iat": int(now), "exp": None if ttl is None else int(now + ttl)}
        header = _b64({"alg": "HS256", "typ": "JWT"})
        token = f"{header}.{_b64(claims)}.{uuid.UUID(int=self.state.random.getrandbits(128)).hex}"
        with self._lock:
            self._expiry[token] = None if ttl is None else now + ttl
        return token

    def check(self, token: str) -> str | None:
        """``None`` when valid, else ``EXPIRED_TOKEN`` or ``INVALID_TOKEN``."""
        with self._lock:
            if token not in self._expiry:
                return INVALID_TOKEN
            expires = self._expiry[token]
        if expires is not None and self.state.clock.now() >= expires:
            return EXPIRED_TOKEN
        return None

    def forget_all(self) -> int:
        """A server restart or key rotation: every token issued so far becomes
        ``INVALID_TOKEN`` (never-expiring ones too). Returns how many were forgotten."""
        with self._lock:
            forgotten = len(self._expiry)
            self._expiry.clear()
        return forgotten


def _b64(value: dict[str, Any]) -> str:
    raw = json.dumps(value, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")
