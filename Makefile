# The two commands README.md promises. Both set everything up first (idempotent).
.PHONY: setup demo test lint bench screenshots

setup:
	./scripts/setup.sh

demo: setup
	.venv/bin/taskdeck demo

# The whole suite twice: apps on SQLite files (tests parametrized over both databases run their
# PostgreSQL case here too), then every app on the PostgreSQL server the tests start.
test:
	./scripts/setup.sh --test
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/python -m mypy
	.venv/bin/python -m pytest
	TASKDECK_TEST_DATABASE=postgresql .venv/bin/python -m pytest

lint:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/python -m mypy

bench: setup
	.venv/bin/python bench/refresh.py
