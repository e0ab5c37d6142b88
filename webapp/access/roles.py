"""Roles, each allowed everything the one before it is (DESIGN.md, "Accounts and access")."""

from __future__ import annotations

import enum


class Role(enum.IntEnum):
    #: Reads every page and the API.
    VIEWER = 1
    #: Tracks, untracks and imports tasks, edits labels, notes and saved views, runs actions.
    EDITOR = 2
    #: Manages sources, users, tokens, notifications and settings; reads the audit log.
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: str) -> Role:
        """``viewer``, ``editor`` or ``admin``; raises ``ValueError`` naming the choices."""
        try:
            return cls[value.strip().upper()]
        except KeyError:
            raise ValueError(
                f"unknown role {value!r}; expected one of {', '.join(ROLE_NAMES)}"
            ) from None


ROLE_NAMES = tuple(role.label for role in Role)
