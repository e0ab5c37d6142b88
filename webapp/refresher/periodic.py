"""What the refresher's periodic passes share (overdue marking, retention, link finding): the
app, the refresher's clock, its writers' lock, and "at most every N seconds" on this process."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime

from flask import Flask

Writing = Callable[[], AbstractContextManager[object]]


class PeriodicPass:
    """A pass a refresher process runs at most every :attr:`every_seconds` (monotonic time, so
    a test's clock or a wall-clock jump changes nothing)."""

    every_seconds: float

    def __init__(self, app: Flask, clock: Callable[[], datetime], writing: Writing) -> None:
        self.app = app
        self.clock = clock
        self.writing = writing
        self._last: float | None = None

    def is_due(self) -> bool:
        return self._last is None or time.monotonic() - self._last >= self.every_seconds

    def started(self) -> float:
        """Note that a pass starts now; the monotonic time it started."""
        self._last = time.monotonic()
        return self._last
