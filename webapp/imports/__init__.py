"""Importing tasks from an upstream's own search, from the CLI or as a background job."""
