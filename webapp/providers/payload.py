"""Reading upstream payloads: lenient field types and the one "validate or ``bad_payload``" step.

Upstreams send fields of unexpected types (a number where text was documented, a string
AUROC, a zero for "no time yet"). A payload model declares what each field means with the
types below: an odd value becomes text or ``None`` instead of rejecting the whole task, while
the payload itself is kept raw on the task. Only what a task cannot be tracked without (its
status word) is strict, and a payload missing it is a ``bad_payload`` fetch error.
"""

from __future__ import annotations

import json
from datetime import UTC
from datetime import datetime
from datetime import tzinfo
from typing import Annotated
from typing import Any
from typing import TypeVar

import httpx
from pydantic import AliasChoices
from pydantic import BaseModel
from pydantic import BeforeValidator
from pydantic import ConfigDict
from pydantic import Field
from pydantic import ValidationError
from pydantic import ValidationInfo

from webapp.domain import FetchError
from webapp.domain import FetchErrorKind

# -- value readers (also used on their own, e.g. for headers) ---------------------------------


def as_text(value: Any) -> str | None:
    """A string for display from a field that should be a string but may not be."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def nonempty_str(value: Any) -> str | None:
    """A non-empty string as it is; anything else (an id that is a number, say) is ``None``."""
    return value if isinstance(value, str) and value else None


def tolerant_float(value: Any) -> float | None:
    """A number from a number or a numeric string (NCLUE sends AUROC as a string)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def strict_int(value: Any) -> int | None:
    """An integer (not a boolean) as it is; anything else is ``None``."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def scalar(value: Any) -> bool | int | float | str | None:
    """A JSON scalar as it came; an array or object as its JSON text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return as_text(value)


def object_or_empty(value: Any) -> Any:
    """A JSON object as it is; anything else reads as an empty one (for nested models)."""
    return value if isinstance(value, dict) else {}


def list_or_empty(value: Any) -> Any:
    """A JSON array as it is; anything else reads as an empty one."""
    return value if isinstance(value, list) else []


def object_or_text(value: Any) -> Any:
    """A JSON object or a string as it is; anything else is ``None`` (``object | str`` fields)."""
    return value if isinstance(value, dict | str) else None


def list_or_text(value: Any) -> Any:
    """A JSON array or a string as it is; anything else is ``None`` (``list | str`` fields)."""
    return value if isinstance(value, list | str) else None


def epoch_ms(value: Any, *, zero_is_unset: bool = False) -> datetime | None:
    """A UTC datetime from epoch milliseconds; ``None`` for missing or unreadable values."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if zero_is_unset and value == 0:
        return None
    try:
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def parse_iso(
    value: Any, *, default_tz: tzinfo = UTC, epoch_is_unset: bool = False
) -> datetime | None:
    """A UTC datetime from an ISO 8601 string; a string without a zone is read in ``default_tz``."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=default_tz)
    parsed = parsed.astimezone(UTC)
    if epoch_is_unset and parsed == datetime(1970, 1, 1, tzinfo=UTC):
        return None
    return parsed


def _iso_in_zone(value: Any, info: ValidationInfo) -> datetime | None:
    context = info.context if isinstance(info.context, dict) else {}
    zone = context.get("zone", UTC)
    return parse_iso(value, default_tz=zone)


# -- field types ------------------------------------------------------------------------------

#: Text to show; a value of another type is shown as its JSON text.
Text = Annotated[str | None, BeforeValidator(as_text)]
#: An identifier worth linking: a non-empty string, else ``None``.
Id = Annotated[str | None, BeforeValidator(nonempty_str)]
#: A number or word shown as it came (a count, a progress); arrays and objects as JSON text.
Scalar = Annotated[bool | int | float | str | None, BeforeValidator(scalar)]
#: A number, from a number or a numeric string; anything else is ``None``.
Float = Annotated[float | None, BeforeValidator(tolerant_float)]
#: A whole number (a total, a count the code computes with); anything else is ``None``.
Count = Annotated[int | None, BeforeValidator(strict_int)]
#: Epoch milliseconds; anything unreadable is ``None``.
EpochMs = Annotated[datetime | None, BeforeValidator(epoch_ms)]
#: An ISO 8601 time; one without a zone is read in the validation context's ``zone`` (UTC).
IsoTime = Annotated[datetime | None, BeforeValidator(_iso_in_zone)]


class Payload(BaseModel):
    """Base of the upstream payload models: fields a model does not name are ignored (the task
    keeps the raw payload), and a validated payload is not changed afterwards."""

    model_config = ConfigDict(frozen=True)


M = TypeVar("M", bound=BaseModel)


def validate_payload(
    model: type[M],
    payload: Any,
    problem: str,
    *,
    status_code: int | None = None,
    zone: tzinfo | None = None,
) -> M:
    """``payload`` read as ``model``, or a ``bad_payload`` :class:`FetchError` that keeps it raw.

    ``problem`` says what is wrong in the upstream's terms ("task has no string 'status'");
    ``zone`` is where :data:`IsoTime` fields without a zone are read.
    """
    try:
        return model.model_validate(payload, context={"zone": zone or UTC})
    except ValidationError as exc:
        raise FetchError(
            FetchErrorKind.BAD_PAYLOAD, problem, status_code=status_code, raw=payload
        ) from exc


def read_json_as(model: type[M], response: httpx.Response) -> M | None:
    """An answer's JSON body read as ``model`` (an error envelope, say); ``None`` when the body
    is not JSON or not of that shape."""
    try:
        return model.model_validate_json(response.content)
    except ValidationError:
        return None


# -- validation problems in error answers (FastAPI's ``{loc, msg, type}`` and its kin) ----------


def dotted(value: Any) -> str:
    """A problem's location: ``["body", "status"]`` as ``body.status``."""
    if isinstance(value, list):
        return ".".join(str(part) for part in value)
    return as_text(value) or ""


class Problem(Payload):
    """One validation problem, ``{loc, msg, type}`` (FastAPI) or ``{location, message}`` (an
    envelope of the same idea); in a :data:`Problems` list, a bare value is read as a message."""

    where: Annotated[str, BeforeValidator(dotted)] = Field(
        default="", validation_alias=AliasChoices("location", "loc")
    )
    message: Text = Field(default=None, validation_alias=AliasChoices("message", "msg"))
    type: Text = None

    def __str__(self) -> str:
        message = self.message or self.type or "invalid"
        return f"{self.where}: {message}" if self.where else message


def _problem(value: Any) -> Any:
    return value if isinstance(value, dict) else {"message": as_text(value) or "?"}


Problems = list[Annotated[Problem, BeforeValidator(_problem)]]


def join_problems(problems: list[Problem]) -> str:
    """``body.status: Input should be ...; query.limit: ...`` from validation error items."""
    parts = [str(problem) for problem in problems[:10]]
    if len(problems) > 10:
        parts.append(f"and {len(problems) - 10} more")
    return "; ".join(parts)
