# The two commands README.md promises. Both set everything up first (idempotent).
.PHONY: setup demo test lint bench screenshots

setup:
	./scripts/setup.sh

demo: setup
	.venv/bin/taskdeck demo

test:
	./scripts/setup.sh --test
	.venv/bin/ruff check .
	.venv/bin/python -m pytest

lint:
	.venv/bin/ruff check .

bench: setup
	.venv/bin/python bench/refresh.py
