"""The task list: query parsing, filters, search, sorting, keyset paging, counts and charts.

- :mod:`.query`: :class:`~webapp.listing.query.TaskQuery`, the view state from the URL
- :mod:`.columns`: states, the dimensions a view can fix, the sorts
- :mod:`.pages`: reading a page (keyset paging) and the rows of live updates
- :mod:`.counts`: tasks per state (the summary bar) and the filter menus
- :mod:`.backends`: what differs per database (search, labels, planning, counts)
- :mod:`.plan`: how SQLite reads a filtered, sorted page
- :mod:`.search`: the search box's syntax and the search indexes
- :mod:`.schema`: the indexes, search index and counts, set up at start
- :mod:`.charts`, :mod:`.saved_views`
"""
