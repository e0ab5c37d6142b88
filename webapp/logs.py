"""Logging: a request id on every response and log line, text or JSON lines, no secrets.

``X-Request-ID`` is taken from the request when a proxy sent a sane one, or made up, and given
back on the response. The id lives in a context variable, so lines logged while a request is
served carry it whatever module logs them; work the request hands to another thread (an
import's preview and its run) takes it along with :func:`with_request_id`.
``TASKDECK_LOG_FORMAT=json`` writes one JSON object per line. A filter on the handler replaces
every configured secret value (upstream credentials, the secret key) with ``***`` in case one
ever reaches a message.
"""

from __future__ import annotations

import contextvars
import functools
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from collections.abc import Iterable
from datetime import UTC
from datetime import datetime
from typing import ParamSpec
from typing import TypeVar

from flask import Flask
from flask import Response
from flask import g
from flask import request

from webapp.config import ConfigError
from webapp.metrics import observe_http

REQUEST_ID_HEADER = "X-Request-ID"
#: What we accept from a client or proxy: short, and nothing that could forge a log line.
_SANE_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "taskdeck_request_id", default=None
)


Params = ParamSpec("Params")
Result = TypeVar("Result")


def with_request_id(work: Callable[Params, Result]) -> Callable[Params, Result]:
    """``work``, to run in another thread on behalf of the current request: its log lines
    carry this request's id (a thread starts without the context variables of the one that
    made it, and a pool's threads serve many requests)."""
    request_id = request_id_var.get()

    @functools.wraps(work)
    def run(*args: Params.args, **kwargs: Params.kwargs) -> Result:
        token = request_id_var.set(request_id)
        try:
            return work(*args, **kwargs)
        finally:
            request_id_var.reset(token)

    return run


class RequestIdFilter(logging.Filter):
    """Puts the current request id (or ``-``) on every record as ``request_id``."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get() or "-"
        return True


class RedactingFilter(logging.Filter):
    """Replaces known secret values in the final message with ``***``."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def add(self, values: Iterable[str | None]) -> None:
        # Very short values would blank out ordinary words; real secrets are longer.
        self.secrets.update(v for v in values if v and len(v) >= 6)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        # Longest first: a secret that holds a shorter one would otherwise be replaced only in
        # part, and the rest of it logged.
        secrets = sorted(self.secrets, key=len, reverse=True)
        message = record.getMessage()
        cleaned = message
        for secret in secrets:
            cleaned = cleaned.replace(secret, "***")
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            for secret in secrets:
                record.exc_text = record.exc_text.replace(secret, "***")
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, request_id, message (and exception)."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            data["exception"] = record.exc_text
        return json.dumps(data, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
HANDLER_NAME = "taskdeck"
redactor = RedactingFilter()


def configure(log_format: str = "text", level: int = logging.INFO) -> None:
    """Install Taskdeck's handler on the root logger, once per process (idempotent)."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if h.get_name() == HANDLER_NAME), None)
    if handler is None:
        handler = logging.StreamHandler()
        handler.set_name(HANDLER_NAME)
        handler.addFilter(RequestIdFilter())
        handler.addFilter(redactor)
        root.addHandler(handler)
        root.setLevel(level)
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    # httpx logs every request at INFO with its URL; webapp.upstream logs them at DEBUG instead.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _start_request() -> None:
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = incoming if _SANE_ID.match(incoming) else uuid.uuid4().hex
    g.request_id = request_id
    g.request_started = time.perf_counter()
    g.request_id_token = request_id_var.set(request_id)


def _finish_request(response: Response) -> Response:
    request_id = g.get("request_id")
    if request_id:
        response.headers[REQUEST_ID_HEADER] = request_id
    started = g.get("request_started")
    if started is not None:
        endpoint = request.url_rule.endpoint if request.url_rule else "unmatched"
        observe_http(endpoint, response.status_code, time.perf_counter() - started)
    return response


def _end_request(_exc: BaseException | None) -> None:
    token = g.pop("request_id_token", None)
    if token is not None:
        request_id_var.reset(token)


def init_app(app: Flask) -> None:
    if app.config.get("LOG_FORMAT") not in ("text", "json"):
        raise ConfigError("TASKDECK_LOG_FORMAT: use text or json")
    configure(app.config["LOG_FORMAT"])
    redactor.add([app.config.get("SECRET_KEY")])
    app.before_request(_start_request)
    app.after_request(_finish_request)
    app.teardown_request(_end_request)
