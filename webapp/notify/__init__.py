"""Being told: alert rules, "notify me" subscriptions, and the durable deliveries they write.

- :mod:`.rules`: rules from the config file and the UI, validated, synced into
  ``notification_rules``; each rule's ``when`` is the task list's own search (``TaskQuery``).
- :mod:`.triggers`: :func:`~.triggers.tasks_changed`, called by any writer in the transaction
  that changed tasks, writes a ``Delivery`` for each task that entered a rule's match and for
  each finished task someone asked to be told about.
- :mod:`.sending`: the refresher processes claim due deliveries with a lease and send them
  through :mod:`.targets` (webhook, Slack, e-mail), with retries and back-off.
"""
