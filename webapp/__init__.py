"""Taskdeck: one dashboard for asynchronous tasks that run on other people's platforms."""

from __future__ import annotations

__version__ = "0.1.0"

from webapp.factory import create_app  # noqa: E402

__all__ = ["create_app", "__version__"]
