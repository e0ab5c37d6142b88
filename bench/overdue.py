"""What do overdue tasks cost at 10k, 100k and 1M cached tasks? Prints figures; not a test.

    .venv/bin/python bench/overdue.py                      # 100k and 1M tasks
    .venv/bin/python bench/overdue.py --sizes 1000000 --keep /tmp/bench-1m.sqlite

Uses bench/list_page.py's database (about 1 % of tasks active, the rest finished, durations
spread exponentially around 5 minutes) and times, on SQLite: learning every (source, type)
bound from history (the one grouped query, run every 10 minutes), one periodic pass over every
active task, and the summary bar's overdue count.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from list_page import build_database  # noqa: E402

from webapp.listing.counts import overdue_count  # noqa: E402
from webapp.listing.query import TaskQuery  # noqa: E402
from webapp.overdue.history import history  # noqa: E402
from webapp.overdue.history import learn  # noqa: E402
from webapp.overdue.marking import judge_all  # noqa: E402


def ms(seconds: list[float]) -> str:
    return f"p50 {statistics.median(seconds) * 1000:.1f} ms, max {max(seconds) * 1000:.1f} ms"


def measure(path: Path, count: int) -> None:
    app = build_database(path, count)
    with app.app_context():
        runs = []
        for _ in range(3):
            started = time.perf_counter()
            learned = learn(datetime.now(UTC))
            runs.append(time.perf_counter() - started)
        print(f"  learn {len(learned)} bounds from history: {ms(runs)}", flush=True)
        history(app).refresh_if_due(datetime.now(UTC), force=True)
        runs = []
        for _ in range(3):
            started = time.perf_counter()
            flipped = judge_all(app, datetime.now(UTC))
            runs.append(time.perf_counter() - started)
        print(f"  periodic pass (first one flipped {len(flipped)}): {ms(runs)}", flush=True)
        runs = []
        for _ in range(20):
            started = time.perf_counter()
            overdue_count(TaskQuery.from_args({}), 5000)
            runs.append(time.perf_counter() - started)
        print(f"  summary overdue count: {ms(runs)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--keep", type=Path)
    args = parser.parse_args()
    for size in args.sizes:
        print(f"{size:,} tasks", flush=True)
        if args.keep:
            measure(args.keep, size)
        else:
            with tempfile.TemporaryDirectory() as folder:
                measure(Path(folder) / "bench.sqlite", size)


if __name__ == "__main__":
    main()
