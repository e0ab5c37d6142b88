"""Followed upstream queries (issue 13): a source's standing query that the refresher
processes re-run on an interval, tracking every task that is new since the last run.

- :mod:`.sync`: the sources file's ``follow`` keys become :class:`~webapp.db.models.Follow` rows.
- :mod:`.runner`: the runs themselves, in every refresher process, one process per follow at a
  time (a lease on the row).
"""
