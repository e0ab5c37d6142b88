"""The single source of Taskdeck's version."""

__version__ = "0.1.0"
