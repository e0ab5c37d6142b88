"""The floor for bench/serving.py: a Flask app whose one view answers "ok", served by the same
gunicorn settings as Taskdeck, so the ratio shows what Taskdeck itself costs."""

from flask import Flask

app = Flask(__name__)


@app.get("/")
def ok() -> str:
    return "ok"
