"""Who is asking: the person, token or share link a request acts for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from flask import g
from flask import has_request_context

from webapp.access.roles import Role

PrincipalKind = Literal["user", "token", "share", "anonymous"]


@dataclass(frozen=True)
class Principal:
    """The identity behind a request, and the most it may do."""

    name: str
    role: Role
    kind: PrincipalKind
    #: The ``users`` row behind a signed-in person.
    user_id: int | None = None
    #: The ``api_tokens`` row behind a bearer token.
    token_id: int | None = None
    #: The task a share link opens, as ``(source, task_id)``: the only one it may see.
    shared_task: tuple[str, str] | None = None

    def can(self, role: Role) -> bool:
        return self.role >= role


#: With ``TASKDECK_AUTH=none`` everyone is this; the page says that sign-in is off.
ANONYMOUS = Principal(name="anonymous", role=Role.ADMIN, kind="anonymous")


def current_principal() -> Principal | None:
    """The principal of the current request, or ``None`` outside one or before sign-in."""
    if not has_request_context():
        return None
    principal: Principal | None = g.get("principal")
    return principal
