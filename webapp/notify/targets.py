"""Sending one message to one target: a JSON webhook, a Slack incoming webhook, or e-mail.

Each sender returns an :class:`AttemptResult` instead of raising: the delivery log keeps every
answer. Webhooks go through the same address guard as upstream requests (no link-local or
cloud-metadata address, whatever the host name resolves to).
"""

from __future__ import annotations

import smtplib
import ssl
import time
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import unquote
from urllib.parse import urlsplit

import httpcore
import httpx
from markupsafe import escape

from webapp.providers.addresses import GuardedBackend
from webapp.version import __version__

#: Seconds a receiver may take to answer.
TIMEOUT = 10.0
#: How much of an answer the delivery log keeps.
ANSWER_CHARS = 500


@dataclass(frozen=True)
class AttemptResult:
    #: ``ok``, ``error`` (the receiver said no) or ``unreachable``.
    outcome: str
    status_code: int | None
    answer: str | None
    seconds: float
    #: The receiver refused for good (a 4xx other than 408/429): no retry would help.
    permanent: bool = False


@dataclass(frozen=True)
class SmtpSettings:
    """``TASKDECK_SMTP_URL`` read: ``smtp://user:pass@host:port[?starttls=true]`` or
    ``smtps://…`` (TLS from the start), and ``TASKDECK_SMTP_FROM``."""

    host: str
    port: int
    tls: bool
    starttls: bool
    username: str | None
    password: str | None
    sender: str

    @classmethod
    def parse(cls, url: str, sender: str | None) -> SmtpSettings:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("TASKDECK_SMTP_URL: give smtp://user:pass@host:port or smtps://…")
        query = parse_qs(parts.query)
        starttls = query.get("starttls", ["false"])[0].lower() in ("1", "true", "yes")
        tls = parts.scheme == "smtps"
        return cls(
            host=parts.hostname,
            port=parts.port or (465 if tls else 587 if starttls else 25),
            tls=tls,
            starttls=starttls and not tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            sender=sender or f"taskdeck@{parts.hostname}",
        )


def guarded_client(*, allow_link_local: bool) -> httpx.Client:
    transport = httpx.HTTPTransport(retries=0)
    if not allow_link_local:
        pool = transport._pool
        assert isinstance(pool, httpcore.ConnectionPool)
        # As for upstreams (webapp.providers.http.default_transport): httpx has no parameter
        # for httpcore's network backend, and this pool is new and unused.
        pool._network_backend = GuardedBackend()
    return httpx.Client(
        transport=transport,
        timeout=httpx.Timeout(TIMEOUT, connect=5.0),
        headers={"User-Agent": f"taskdeck/{__version__}"},
        follow_redirects=False,
    )


def post_json(url: str, body: dict[str, Any], *, allow_link_local: bool) -> AttemptResult:
    """POST ``body`` as JSON; 2xx is success."""
    started = time.perf_counter()
    try:
        with guarded_client(allow_link_local=allow_link_local) as client:
            response = client.post(url, json=body)
    except httpx.HTTPError as exc:
        return AttemptResult(
            "unreachable", None, str(exc)[:ANSWER_CHARS] or type(exc).__name__, _since(started)
        )
    answer = response.text[:ANSWER_CHARS]
    if response.is_success:
        return AttemptResult("ok", response.status_code, answer, _since(started))
    permanent = 400 <= response.status_code < 500 and response.status_code not in (408, 425, 429)
    return AttemptResult("error", response.status_code, answer, _since(started), permanent)


def slack_message(payload: dict[str, Any]) -> dict[str, Any]:
    """A Block Kit message: a header, the state, source, type and error, and a button to the
    task's page (``text`` is the notification's fallback)."""
    task = payload.get("task") or {}
    event = (payload.get("event") or {}).get("description", "")
    rule = payload.get("rule") or {}
    title = f"{task.get('name') or task.get('task_id') or 'A task'} {event}".strip()
    fields = [
        ("State", f"{task.get('state', '?')} ({task.get('upstream_status') or '—'})"),
        ("Source", str(task.get("source", "?"))),
        ("Type", str(task.get("task_type") or "—")),
    ]
    if rule:
        fields.append(("Rule", str(rule.get("name"))))
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        {
            "type": "section",
            "fields": [{"type": "mrkdwn", "text": f"*{name}*\n{value}"} for name, value in fields],
        },
    ]
    if task.get("error"):
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"*Error*\n```{str(task['error'])[:2500]}```"},
            }
        )
    url = payload.get("url")
    if url and str(url).startswith(("http://", "https://")):
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open in Taskdeck"},
                        "url": url,
                    }
                ],
            }
        )
    return {"text": title, "blocks": blocks}


def email_message(payload: dict[str, Any], sender: str, recipient: str) -> EmailMessage:
    """Plain text and a simple HTML part; the subject names the task and its state."""
    task = payload.get("task") or {}
    event = (payload.get("event") or {}).get("description", "")
    name = task.get("name") or task.get("task_id") or "a task"
    subject = f"[Taskdeck] {name} ({task.get('source', '?')}): {task.get('state', '?')}"
    rows = [
        ("Event", event),
        ("State", f"{task.get('state', '?')} ({task.get('upstream_status') or '—'})"),
        ("Source", str(task.get("source", "?"))),
        ("Type", str(task.get("task_type") or "—")),
        ("Task id", str(task.get("task_id", "?"))),
    ]
    rule = payload.get("rule")
    if rule:
        rows.append(("Rule", f"{rule.get('name')} (when {rule.get('when')})"))
    if task.get("error"):
        rows.append(("Error", str(task["error"])))
    url = payload.get("url")
    text = "\n".join(f"{label}: {value}" for label, value in rows)
    if url:
        text += f"\n\n{url}\n"
    cells = "".join(
        f"<tr><th align='left'>{escape(label)}</th><td>{escape(value)}</td></tr>"
        for label, value in rows
    )
    link = f"<p><a href='{escape(url)}'>Open the task in Taskdeck</a></p>" if url else ""
    html = f"<html><body><h2>{escape(name)} {escape(event)}</h2><table>{cells}</table>{link}"
    html += "</body></html>"
    message = EmailMessage()
    message["Subject"] = subject[:200]
    message["From"] = sender
    message["To"] = recipient
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message


def send_email(settings: SmtpSettings, recipient: str, payload: dict[str, Any]) -> AttemptResult:
    started = time.perf_counter()
    message = email_message(payload, settings.sender, recipient)
    try:
        smtp: smtplib.SMTP
        if settings.tls:
            context = ssl.create_default_context()
            smtp = smtplib.SMTP_SSL(settings.host, settings.port, timeout=TIMEOUT, context=context)
        else:
            smtp = smtplib.SMTP(settings.host, settings.port, timeout=TIMEOUT)
        with smtp:
            if settings.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if settings.username:
                smtp.login(settings.username, settings.password or "")
            refused = smtp.send_message(message)
    except smtplib.SMTPResponseException as exc:
        error = exc.smtp_error
        detail = error.decode("utf-8", "replace") if isinstance(error, bytes) else str(error)
        permanent = 500 <= exc.smtp_code < 600
        return AttemptResult(
            "error", exc.smtp_code, detail[:ANSWER_CHARS], _since(started), permanent
        )
    except (smtplib.SMTPException, OSError) as exc:
        return AttemptResult(
            "unreachable", None, str(exc)[:ANSWER_CHARS] or type(exc).__name__, _since(started)
        )
    if refused:
        return AttemptResult("error", None, f"refused: {', '.join(refused)}", _since(started))
    return AttemptResult("ok", 250, f"accepted for {recipient}", _since(started))


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 4)
