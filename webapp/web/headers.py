"""Security headers on every response: a Content-Security-Policy without inline code, and the
usual browser switches (no framing, no MIME sniffing, a same-origin referrer).

Pages load only our own scripts and styles (``static/``); nothing inline, so the policy needs
no ``unsafe-inline`` and no nonces. htmx is told not to inject its indicator ``<style>`` and
not to evaluate code (``<meta name="htmx-config">`` in ``base.html``).
"""

from __future__ import annotations

from flask import Flask
from flask import Response

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        # data: for the favicon and SVG data URLs a stylesheet may use.
        "img-src 'self' data:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "object-src 'none'",
    ]
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # For browsers older than CSP's frame-ancestors.
    "X-Frame-Options": "DENY",
    # Nothing here needs a camera, a microphone, the location or payments.
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def add_security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def init_app(app: Flask) -> None:
    app.after_request(add_security_headers)
