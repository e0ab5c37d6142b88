"""Followed upstream queries: each source may follow one, re-run on an interval."""
