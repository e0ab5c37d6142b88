"""Loopback receivers for alert tests: a webhook endpoint that records what it gets (and can
fail on purpose), and a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field
from email import message_from_bytes
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller

from tests.postgres import free_port
from webapp.simulators.server import ServerThread


@dataclass
class WebhookReceiver:
    """A WSGI app: every POST is recorded; the first ``fail_next`` answer 500."""

    received: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0
    fail_next: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        with self.lock:
            self.attempts += 1
            if self.fail_next > 0:
                self.fail_next -= 1
                start_response("500 INTERNAL SERVER ERROR", [("Content-Type", "text/plain")])
                return [b"receiver is down"]
            self.received.append(json.loads(body))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]


@contextmanager
def webhook_receiver() -> Iterator[tuple[WebhookReceiver, str]]:
    receiver = WebhookReceiver()
    with ServerThread(receiver) as server:
        yield receiver, f"{server.url}/hook"


class _Handler:
    """Records every message; the first ``fail_next`` answer 451 (try again later)."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.attempts = 0
        self.fail_next = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.attempts += 1
        if self.fail_next > 0:
            self.fail_next -= 1
            return "451 4.3.0 Mail server busy, try again later"
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.messages.append(message_from_bytes(envelope.original_content or envelope.content))
        return "250 Message accepted for delivery"


@contextmanager
def smtp_server() -> Iterator[tuple[_Handler, str]]:
    """A real SMTP server on a free loopback port; yields its handler and a TASKDECK_SMTP_URL."""
    handler = _Handler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, f"smtp://127.0.0.1:{port}"
    finally:
        controller.stop()
