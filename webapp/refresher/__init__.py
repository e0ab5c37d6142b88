"""The refresher: the only part of Taskdeck that talks to upstreams.

- :mod:`.engine`: the :class:`~webapp.refresher.engine.Refresher` (passes, dispatch, jobs)
- :mod:`.claims`: leasing due tasks, one class per database
- :mod:`.lanes`: each source's own thread pool, queue depth and batching
- :mod:`.jobs`: one job's fetch and its real upstream calls; pass reports
- :mod:`.writer`: the thread that writes results, one transaction per source
- :mod:`.health`: source health, the circuit breaker and its probes, source-wide pauses
- :mod:`.scheduling`: when each task is polled next
- :mod:`.retention`: deleting finished tasks after ``RETENTION_DAYS``
- :mod:`.background`: the refresher on a thread of the web process
"""
