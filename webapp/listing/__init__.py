"""The task list: query parsing, filters, search, sorting, keyset paging, counts and charts."""
