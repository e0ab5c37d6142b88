"""bench/serving.py's quick run, as CI runs it: gunicorn serving Taskdeck and a bare Flask
endpoint, loaded by wrk. The figures are printed for people to read; this checks that every one
of them was measured (each endpoint answered as expected under load, nothing failed), never how
fast they were."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIGURE = re.compile(
    r"^  (?P<label>\S.*?)\s+(?P<rate>\d+) req/s\s+p50\s+[\d.]+ ms\s+p99\s+[\d.]+ ms\s+"
    r"[\d.]+ KB\s+(?P<ratio>.*?)\s+cpu\s+(?P<cpu>[\d.]+) ms/answer(?P<cost> \([\d.]+x bare\))?$",
    re.M,
)
ENDPOINTS = {
    "bare Flask endpoint",
    "bare Flask endpoint, again",
    "list: first page",
    "list: filtered (failed, one source)",
    "list: searched (error words)",
    "list: 20 pages deep",
    "list: htmx fragment",
    "detail page",
    "status poll: unchanged (204)",
    "status poll: changed",
    "status poll: terminal (286)",
    "live poll: 100 active rows, none changed",
    "live poll: 100 active rows, one changed",
    "API: task list",
}


@pytest.mark.sqlite_only
def test_the_quick_serving_benchmark_measures_every_endpoint(tmp_path):
    environ = {key: value for key, value in os.environ.items() if not key.startswith("TASKDECK_")}
    environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    environ["TMPDIR"] = str(tmp_path)
    run = subprocess.run(
        [sys.executable, "bench/serving.py", "--quick", "--seconds", "1"],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    figures = {m["label"]: m for m in FIGURE.finditer(run.stdout)}
    assert set(figures) == ENDPOINTS, run.stdout
    assert all(int(m["rate"]) > 0 for m in figures.values()), run.stdout
    assert "errors!" not in run.stdout
    bare = figures.pop("bare Flask endpoint")
    assert bare["ratio"] == "(the floor)" and float(bare["cpu"]) > 0
    assert all(m["ratio"].endswith("bare") for m in figures.values()), run.stdout
    # The server's own CPU time per answer, next to the bare endpoint's.
    assert all(m["cost"] for m in figures.values()), run.stdout
    summary = re.search(
        r"list row: (\d+) bytes of HTML\s+workers' RSS: ([\d, MB]+)\s+database: (\d+) bytes per "
        r"task \(([\d.]+) events each\)",
        run.stdout,
    )
    assert summary is not None, run.stdout
    assert float(summary.group(4)) >= 2  # a history, not bare rows
