"""Linked tasks: the upstream tasks a tracked task leads to (:class:`~webapp.db.models.TaskLink`).

- :mod:`~webapp.links.discover` reads candidate ids out of a payload, by the rules each
  provider's spec declares (``ProviderSpec.payload_links``); it makes no request.
- :mod:`~webapp.links.linking` is the refresher processes' pass: it looks for a task's links when
  the task is first seen and whenever its state changes (``Task.links_checked_at``), asks the
  provider for the task's siblings (``Provider.siblings``), resolves each payload id to the one
  configured source that has it, remembers every answer, and tracks what it found when the
  naming task's source says ``track_related``.
- :mod:`~webapp.links.family` is what the task page shows: the links, and the family's bars.

Nothing here names an upstream: which keys name which provider's tasks, and how a task's
siblings are listed, live in the provider modules.
"""
