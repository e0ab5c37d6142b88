"""The cache: models, the writes the refresher and views share, and the database set-up."""
