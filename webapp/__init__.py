"""Taskdeck: one dashboard for asynchronous tasks that run on other people's platforms."""

from webapp.factory import create_app
from webapp.version import __version__

__all__ = ["create_app", "__version__"]
