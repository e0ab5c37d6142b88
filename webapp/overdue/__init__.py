"""Overdue tasks: an active task running past its bound (README, "Overdue tasks").

- :mod:`.setting`: a source's ``overdue_after`` (seconds, or seconds per task type)
- :mod:`.history`: bounds learned from the cache's finished tasks of each source and type
- :mod:`.judge`: whether one task is overdue now, and why, in words for the page
- :mod:`.marking`: writing the verdict on tasks (each write, and a periodic pass)
"""
