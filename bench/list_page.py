"""How fast is the task list at 10k, 100k and 1M cached tasks? Prints figures; not a test.

    .venv/bin/python bench/list_page.py            # 10k, 100k and 1M tasks
    .venv/bin/python bench/list_page.py --quick    # 10k and 100k, fewer requests
    .venv/bin/python bench/list_page.py --sizes 1000000 --keep /tmp/bench-1m.sqlite

For each size it fills a temporary SQLite file with bulk inserts (the search index and the
state counts are built once at the end, as on an upgrade), serves Taskdeck over loopback HTTP
from a werkzeug server thread, and times list pages (plain, filtered, searched, paged, sorted),
the live-update poll of a full page of active rows, and, in the same run, a bare Flask endpoint
that answers "ok": the floor that HTTP, werkzeug and Flask cost on this machine.

Targets at 1M tasks (issue 5): a filtered page p50 < 30 ms and p99 < 100 ms; the live poll of a
full page p50 < 5 ms.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import sqlalchemy as sa
from flask import Flask

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.dataset import build_database  # noqa: E402
from webapp.db.models import Task  # noqa: E402
from webapp.db.models import db  # noqa: E402
from webapp.simulators.server import ServerThread  # noqa: E402

HX = {"HX-Request": "true"}


def timed(
    client: httpx.Client,
    url: str,
    runs: int,
    *,
    expect: int = 200,
    headers: dict[str, str] | None = None,
) -> list[float]:
    client.get(url, headers=headers)  # warm-up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(url, headers=headers)
        times.append((time.perf_counter() - started) * 1000)
        if response.status_code != expect:
            raise SystemExit(f"{url}: HTTP {response.status_code}\n{response.text[:500]}")
    return times


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def report(label: str, times: list[float]) -> dict[str, float]:
    figures = {
        "p50": statistics.median(times),
        "p99": percentile(times, 99),
        "max": max(times),
    }
    print(
        f"  {label:<38} p50 {figures['p50']:7.1f} ms   p99 {figures['p99']:7.1f} ms"
        f"   max {figures['max']:7.1f} ms",
        flush=True,
    )
    return figures


def bare_app() -> Flask:
    app = Flask("bare")
    app.add_url_rule("/", "ok", lambda: "ok")
    return app


def second_page(client: httpx.Client, url: str) -> str:
    from bs4 import BeautifulSoup

    page = BeautifulSoup(client.get(url).text, "html.parser")
    link = page.select_one("a[rel=next]")
    if link is None:
        raise SystemExit(f"{url}: no next page")
    return str(link["href"])


def third_page(client: httpx.Client, url: str) -> str:
    return second_page(client, second_page(client, url))


def touch_rows(app: Flask, poll_url: str, count: int) -> None:
    """Make ``count`` of the poll's rows newer than the poll knows (as fetches would)."""
    from urllib.parse import parse_qs
    from urllib.parse import urlsplit

    token = parse_qs(urlsplit(poll_url).query)["rows"][0]
    ids = [int(part.split(".")[0]) for part in token.split(",")][:count]
    with app.app_context():
        db.session.execute(sa.update(Task).where(Task.id.in_(ids)).values(version=Task.version + 1))
        db.session.commit()


def live_url(client: httpx.Client, url: str) -> str:
    from bs4 import BeautifulSoup

    poller = BeautifulSoup(client.get(url).text, "html.parser").select_one("#live-poller")
    if poller is None or not poller.has_attr("hx-get"):
        raise SystemExit(f"{url}: no live poller")
    return str(poller["hx-get"])


def run_size(count: int, runs: int, keep: Path | None) -> dict[str, dict[str, float]]:
    print(f"\n{count:,} tasks", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        path = keep or Path(folder) / "bench.sqlite"
        app = build_database(path, count)
        results: dict[str, dict[str, float]] = {}
        with (
            ServerThread(app) as server,
            ServerThread(bare_app()) as bare,
            httpx.Client(base_url=server.url, timeout=60) as client,
        ):
            with httpx.Client(base_url=bare.url) as bare_client:
                results["bare Flask endpoint"] = report(
                    "bare Flask endpoint", timed(bare_client, "/", runs)
                )
            pages: list[tuple[str, str]] = [
                ("first page, no filter", "/?view=all"),
                ("filtered: state=failed", "/?state=failed"),
                ("filtered: state=active (few)", "/?state=active"),
                ("filtered: source + problems", "/?source=orkes&state=problems"),
                ("filtered: type, created in 7 days", "/?type=TRAINING&created_from=7d"),
                ("filtered: label", "/?q=label:urgent"),
                ("searched: error words", "/?q=checksum+mismatch"),
                ("searched: id prefix + qualifier", "/?q=reranker-12+state:succeeded"),
                ("searched + filtered: active", "/?q=checksum&state=active"),
                ("sorted by type", "/?sort=type"),
                ("sorted by upstream word, desc", "/?sort=-upstream"),
                ("filtered + sorted: failed by fresh", "/?state=failed&sort=fresh"),
            ]
            pages.append(("paged: 2nd page of state=failed", second_page(client, "/?state=failed")))
            pages.append(("paged: 3rd page of a search", third_page(client, "/?q=checksum")))
            for label, url in pages:
                results[label] = report(label, timed(client, url, runs))
            results["charts of state=failed (lazy)"] = report(
                "charts of state=failed (lazy)",
                timed(client, "/tasks/charts?state=failed", max(5, runs // 4), headers=HX),
            )
            poll = live_url(client, "/?state=active&limit=100")
            results["live poll, 100 active rows"] = report(
                "live poll, 100 active rows", timed(client, poll, runs * 2)
            )
            touch_rows(app, poll, 10)
            results["live poll, 10 of them changed"] = report(
                "live poll, 10 of them changed", timed(client, poll, runs * 2)
            )
            # A first page also asks for tasks tracked since it was drawn, with its filters.
            for label, url in [
                ("live poll, watching a search", "/?q=checksum+mismatch"),
                ("live poll, watching sorted by type", "/?sort=type"),
            ]:
                results[label] = report(label, timed(client, live_url(client, url), runs * 2))
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10k and 100k, fewer requests")
    parser.add_argument("--sizes", type=int, nargs="*", help="task counts to measure")
    parser.add_argument("--runs", type=int, help="requests per figure")
    parser.add_argument("--keep", type=Path, help="reuse (or create) this database file")
    args = parser.parse_args(argv)
    sizes = args.sizes or ([10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000])
    runs = args.runs or (50 if args.quick else 200)
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    print(f"sqlite {sqlite3.sqlite_version}, {runs} requests per figure, loopback HTTP")
    for size in sizes:
        run_size(size, runs, args.keep if len(sizes) == 1 else None)


if __name__ == "__main__":
    main()
