"""Keyset page cursors: the sort keys of a page's edge row, as an opaque URL-safe token.

A cursor comes back from the browser or a script, so :func:`decode` trusts nothing: the token
must hold exactly one value per key, each of the key's type (an aware datetime for a time, an
int for the id tie-breaker), or it is refused before any SQL is built.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from webapp.listing.columns import SORTS


def encode(values: list[Any]) -> str:
    encoded = [{"dt": v.isoformat()} if isinstance(v, datetime) else v for v in values]
    raw = json.dumps(encoded, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _python_type(sql_type: sa.types.TypeEngine[Any]) -> type:
    # A TypeDecorator (our UTC datetimes) reports ``object``; its implementation knows better.
    if isinstance(sql_type, sa.types.TypeDecorator):
        sql_type = sql_type.impl_instance
    return sql_type.python_type


def decode(token: str, sort: str) -> list[Any]:
    """The values of a cursor made for the ``sort`` column; ``ValueError`` for anything else."""
    keys = SORTS[sort].directions(False)
    try:
        padded = token + "=" * (-len(token) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (UnicodeEncodeError, binascii.Error, ValueError) as exc:
        raise ValueError("not a page cursor") from exc
    if not isinstance(values, list) or len(values) != len(keys):
        raise ValueError("not a page cursor for this sort")
    decoded: list[Any] = []
    for (key, _), value in zip(keys, values, strict=True):
        expected = _python_type(key.type)
        if isinstance(value, dict) and set(value) == {"dt"} and isinstance(value["dt"], str):
            value = datetime.fromisoformat(value["dt"])
            if value.tzinfo is None:
                raise ValueError("a cursor time without a zone")
        if value is None and expected is not int:
            decoded.append(value)
            continue
        if type(value) is not expected and not (expected is float and type(value) is int):
            raise ValueError("a cursor value of the wrong type")
        decoded.append(value)
    return decoded
