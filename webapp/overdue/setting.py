"""A source's ``overdue_after``: how long its active tasks may run before they are overdue.

In the sources file it is a number of seconds for every type (``overdue_after = 900``) or a
table of seconds per task type, ``"*"`` standing for the types not named
(``overdue_after = {DEPLOY_MODEL = 600, "*" = 1800}``). The sources form takes the same as text:
``900`` or ``DEPLOY_MODEL=600, *=1800``. Types without a bound fall back to the one learned from
history (:mod:`webapp.overdue.history`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

#: The key of a table that stands for every type it does not name.
ANY_TYPE = "*"
#: At most a year: anything longer is a typo, and keeps datetimes in range.
MAX_SECONDS = 366 * 86400

_PAIR = re.compile(r"^\s*([^=\s,]+)\s*=\s*([^\s,]+)\s*$")


def _seconds(value: Any, where: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{where}: a number of seconds, not {value!r}")
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: a number of seconds, not {value!r}") from None
    if not 0 < seconds <= MAX_SECONDS:
        raise ValueError(f"{where}: between 0 and {MAX_SECONDS} seconds")
    return seconds


def parse_overdue_after(value: Any) -> float | dict[str, float] | None:
    """The setting as given in the file (a number or a table) or the form (text); raises
    ``ValueError`` with a message that says what is wrong."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, Mapping):
        table = {str(k): _seconds(v, f"type {k}") for k, v in value.items()}
        if not table:
            return None
        return table
    if isinstance(value, str) and "=" in value:
        table = {}
        for part in re.split(r"[,;\n]+", value.strip()):
            if not part.strip():
                continue
            match = _PAIR.match(part)
            if match is None:
                raise ValueError(f"{part.strip()!r}: write TYPE=SECONDS, e.g. DEPLOY_MODEL=600")
            table[match.group(1)] = _seconds(match.group(2), f"type {match.group(1)}")
        return table
    return _seconds(value, "overdue_after")


def bound_for(setting: float | dict[str, float] | None, task_type: str | None) -> float | None:
    """The configured seconds for a task of ``task_type``, or ``None`` (learned instead)."""
    if setting is None or isinstance(setting, float):
        return setting
    if task_type is not None and task_type in setting:
        return setting[task_type]
    return setting.get(ANY_TYPE)


def as_text(setting: float | dict[str, float] | None) -> str:
    """The form's text for a setting (what :func:`parse_overdue_after` reads back)."""
    if setting is None:
        return ""
    if isinstance(setting, float):
        return f"{setting:g}"
    return ", ".join(f"{key}={value:g}" for key, value in setting.items())
