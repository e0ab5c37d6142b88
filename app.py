"""What ``flask --app app`` and ``gunicorn app:app`` load."""

from webapp import create_app

app = create_app()
