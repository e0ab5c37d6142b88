"""Taskdeck as users run it: served by gunicorn with the README's settings, loaded by wrk from
another process, next to a bare Flask endpoint under the same settings in the same run. Prints
figures; never a test of timings.

    .venv/bin/python bench/serving.py                  # 10k, 100k and 1M tasks
    .venv/bin/python bench/serving.py --quick          # 10k tasks, 2 s a figure (what CI runs)
    .venv/bin/python bench/serving.py --sizes 1000000 --keep /tmp/bench-1m.sqlite

For each size it fills a SQLite file (:mod:`bench.dataset`: tasks with their history), starts
``gunicorn -c python:webapp.gunicorn_conf app:app`` on it (two workers a core x 2 threads unless
``TASKDECK_WORKERS`` / ``TASKDECK_THREADS`` say otherwise; the refresher off, so only serving is
measured) and the same gunicorn settings around a Flask app whose one view answers "ok", then
runs ``wrk -t1 -c4 --latency`` against each endpoint in turn, with the session cookie a browser
would hold (its first visit's): requests per second, p50 and p99
latency, the ratio of its requests per second to the bare endpoint's, and the CPU time the
workers spent per answer (which other work on the machine does not skew as much as rates).
Then the workers' resident memory and the database's bytes per task. ``--only WORD…`` loads
the endpoints whose label holds one of the words.

Targets at 1M tasks (issue 14), as ratios to bare Flask: list page and its fragment >= 1/8,
unchanged status poll >= 1/2, changed/terminal status and detail page >= 1/4, live poll >= 1/3;
search p50 < 30 ms and p99 < 100 ms; a list row <= 700 bytes; worker RSS <= 200 MB.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import runpy
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import httpx
from bs4 import BeautifulSoup

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.dataset import build_database  # noqa: E402
from bench.dataset import sources_toml  # noqa: E402

#: The bare endpoint's app, loaded by gunicorn from this folder.
BARE_APP = "bench.bare_app:app"
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


@dataclass
class Figure:
    label: str
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    bytes_per_response: float
    #: The server's own CPU time per answer (its workers' user + system time over the load):
    #: what an answer costs whatever else the machine is doing.
    cpu_ms: float = 0.0
    requests: int = 0

    def ratio(self, bare: Figure) -> float:
        return self.requests_per_second / bare.requests_per_second


@dataclass
class Endpoint:
    label: str
    path: str
    headers: dict[str, str]
    #: The status every answer must have (checked once before the load).
    status: int = 200


def gunicorn_setting(name: str) -> object:
    """A value of the README's gunicorn config as it stands in this environment."""
    before = dict(os.environ)
    config = runpy.run_path(str(ROOT / "webapp" / "gunicorn_conf.py"))
    # Reading it makes a metrics folder and names it in the environment: undo both.
    os.environ.clear()
    os.environ.update(before)
    if config["_MADE_METRICS_DIR"]:
        shutil.rmtree(config["_MADE_METRICS_DIR"], ignore_errors=True)
    return config[name]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def gunicorn(app_spec: str, env: dict[str, str]) -> Iterator[tuple[str, int]]:
    """``gunicorn -c python:webapp.gunicorn_conf APP`` on a free port: its URL and pid."""
    port = free_port()
    environ = {**os.environ, **env, "TASKDECK_BIND": f"127.0.0.1:{port}"}
    command = [
        str(Path(sys.executable).parent / "gunicorn"),
        "-c",
        "python:webapp.gunicorn_conf",
        "--chdir",
        str(ROOT),
        # The access log would cost the server as much as the answers: users log elsewhere.
        "--access-logfile",
        "/dev/null",
        app_spec,
    ]
    process = subprocess.Popen(
        command, env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            if process.poll() is not None:
                raise SystemExit(f"gunicorn {app_spec} exited:\n{process.stderr.read()[-2000:]}")
            try:
                if httpx.get(url + "/", timeout=2).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"gunicorn {app_spec} did not answer within 60 s")
            time.sleep(0.1)
        yield url, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def workers(master: int) -> list[str]:
    return Path(f"/proc/{master}/task/{master}/children").read_text().split()


def workers_cpu_seconds(master: int) -> float:
    """User + system CPU time of a gunicorn master's workers so far, in seconds."""
    ticks = 0
    for pid in workers(master):
        # Fields after the command name (which may hold spaces): utime, stime are 14th, 15th.
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def load(master: int, url: str, headers: dict[str, str], seconds: int, connections: int) -> Figure:
    """:func:`wrk` on ``url`` and the CPU time the server spent per answer meanwhile."""
    wrk(url, headers, 1, connections)  # warm-up
    before = workers_cpu_seconds(master)
    figure = wrk(url, headers, seconds, connections)
    figure.cpu_ms = (workers_cpu_seconds(master) - before) * 1000 / max(figure.requests, 1)
    return figure


def workers_rss_mb(master: int) -> list[float]:
    """Resident memory of each worker of a gunicorn master, in MB."""
    sizes = []
    for pid in workers(master):
        status = Path(f"/proc/{pid}/status").read_text()
        found = re.search(r"VmRSS:\s+(\d+) kB", status)
        if found:
            sizes.append(int(found.group(1)) / 1024)
    return sizes


def wrk(url: str, headers: dict[str, str], seconds: int, connections: int) -> Figure:
    """Load ``url`` with wrk (one thread, ``connections`` connections) and read its report."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    output = subprocess.run(
        [*command, url], capture_output=True, text=True, check=True, timeout=seconds + 60
    ).stdout

    def latency(percent: str) -> float:
        found = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
        if not found:
            raise SystemExit(f"wrk printed no {percent}% latency:\n{output}")
        return float(found.group(1)) * UNITS[found.group(2)]

    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in [\d.]+\w+, ([\d.]+)(B|KB|MB|GB) read", output)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if not rate or not total:
        raise SystemExit(f"wrk printed no figures:\n{output}")
    scale = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}[total.group(3)]
    requests = int(total.group(1))
    return Figure(
        label="",
        requests_per_second=float(rate.group(1)),
        p50_ms=latency("50"),
        p99_ms=latency("99"),
        errors=int(errors.group(1)) if errors else 0,
        bytes_per_response=float(total.group(2)) * scale / max(requests, 1),
        requests=requests,
    )


def endpoints(client: httpx.Client) -> list[Endpoint]:
    """What a team's browsers and scripts ask for, with real ids and cursors from the cache."""
    hx = {"HX-Request": "true"}
    first = BeautifulSoup(client.get("/?view=all").text, "html.parser")
    deep = "/?view=all"
    for _ in range(20):  # twenty pages down, by the page's own "next" links
        page = BeautifulSoup(client.get(deep).text, "html.parser")
        deep = str(page.select_one("a[rel=next]")["href"])
    detail = str(first.select_one("a.task-link")["href"])
    running = BeautifulSoup(client.get("/?state=running").text, "html.parser")
    active = str(running.select_one("a.task-link")["href"])
    finished = BeautifulSoup(client.get("/?state=succeeded").text, "html.parser")
    done = str(finished.select_one("a.task-link")["href"])
    poller = BeautifulSoup(client.get("/?state=active&limit=100").text, "html.parser")
    live = str(poller.select_one("#live-poller")["hx-get"])
    rows = parse_qs(urlsplit(live).query)["rows"][0]
    if len(rows.split(",")) < 100:
        raise SystemExit(f"only {len(rows.split(','))} active rows for the live poll")
    status = _poll_url(client, active)
    # A poll after a fetch: a new version, the same family (its own cells come, not the chart).
    changed = re.sub(r"([?&]v=)\d+", r"\g<1>0", status)
    return [
        Endpoint("list: first page", "/?view=all", {}),
        Endpoint("list: filtered (failed, one source)", "/?state=failed&source=ml-prod", {}),
        Endpoint("list: searched (error words)", "/?q=checksum+mismatch", {}),
        Endpoint("list: 20 pages deep", deep, {}),
        Endpoint("list: htmx fragment", "/?view=all", hx),
        Endpoint("detail page", detail, {}),
        Endpoint("status poll: unchanged (204)", status, hx, 204),
        Endpoint("status poll: changed", changed, hx),
        Endpoint("status poll: terminal (286)", f"{done}/status?v=0", hx, 286),
        Endpoint("live poll: 100 active rows, none changed", live, hx, 204),
        Endpoint("live poll: 100 active rows, one changed", _one_row_older(live), hx),
        Endpoint("API: task list", "/api/v1/tasks", {}),
    ]


def _one_row_older(live: str) -> str:
    """The live poll of a page that shows its first row at an older version than the cache's:
    that row comes back, with the counts."""
    pk, _, _version = live.partition("rows=")[2].partition(",")[0].partition(".")
    return live.replace(f"rows={pk}.{_version}", f"rows={pk}.0", 1)


def _poll_url(client: httpx.Client, task_path: str) -> str:
    """The URL a task's page polls (the status widget's, with its ``v`` and ``f``)."""
    page = BeautifulSoup(client.get(task_path).text, "html.parser")
    poll = page.select_one("[hx-get*='/status?v=']")
    if poll is None:
        raise SystemExit(f"{task_path}: no status poll on the page")
    return str(poll["hx-get"])


def row_bytes(client: httpx.Client) -> float:
    """Bytes of HTML per row of the list (the table body over its rows)."""
    page = BeautifulSoup(client.get("/?view=all").text, "html.parser")
    rows = page.select("tbody#task-rows tr")
    return sum(len(str(row).encode()) for row in rows) / max(len(rows), 1)


def print_figure(figure: Figure, bare: Figure | None) -> None:
    ratio = f"1/{1 / figure.ratio(bare):.1f} of bare" if bare is not None else "(the floor)"
    if bare is not None and figure.ratio(bare) >= 1:
        ratio = f"{figure.ratio(bare):.2f}x bare"
    errors = f"   {figure.errors} errors!" if figure.errors else ""
    cost = f"   cpu {figure.cpu_ms:5.2f} ms/answer"
    if bare is not None and figure.cpu_ms and bare.cpu_ms:
        cost += f" ({figure.cpu_ms / bare.cpu_ms:.1f}x bare)"
    print(
        f"  {figure.label:<38} {figure.requests_per_second:8.0f} req/s   "
        f"p50 {figure.p50_ms:7.2f} ms   p99 {figure.p99_ms:7.2f} ms   "
        f"{figure.bytes_per_response / 1024:6.1f} KB   {ratio}{cost}{errors}",
        flush=True,
    )


def measure_bare(env: dict[str, str], seconds: int, connections: int) -> Figure:
    """The bare endpoint under the same gunicorn settings: the floor each figure is set against.
    Measured before the endpoints and again after them, since this machine's rates drift."""
    with gunicorn(BARE_APP, env) as (bare_url, bare_master):
        bare = load(bare_master, bare_url + "/", {}, seconds, connections)
    bare.label = "bare Flask endpoint"
    return bare


def run_size(
    count: int, seconds: int, connections: int, keep: Path | None, only: list[str] | None = None
) -> list[Figure]:
    print(f"\n{count:,} tasks", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        path = keep or Path(folder) / "bench.sqlite"
        build_database(path, count)
        config = Path(folder) / "taskdeck.toml"
        env = {
            **sources_toml(config),
            "TASKDECK_CONFIG": str(config),
            "TASKDECK_DATABASE_URL": f"sqlite:///{path}",
            "TASKDECK_SECRET_KEY": "bench",
            "TASKDECK_AUTH": "none",
            "TASKDECK_REFRESHER": "false",
            "TASKDECK_INSTANCE_PATH": folder,
        }
        figures: list[Figure] = []
        bare = measure_bare(env, seconds, connections)
        print_figure(bare, None)
        figures.append(bare)
        with gunicorn("app:app", env) as (url, master):
            with httpx.Client(base_url=url, timeout=60) as client:
                targets = [
                    target
                    for target in endpoints(client)
                    if not only or any(word in target.label for word in only)
                ]
                for target in targets:
                    answer = client.get(target.path, headers=target.headers)
                    if answer.status_code != target.status:
                        raise SystemExit(
                            f"{target.path}: HTTP {answer.status_code}, not {target.status}"
                        )
                per_row = row_bytes(client)
                # Sent as a browser sends it: the session its first visit got (which holds
                # the page forms' CSRF token, made once a session, not on every answer).
                cookie = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
            for target in targets:
                headers = {**target.headers, "Cookie": cookie} if cookie else target.headers
                figure = load(master, url + target.path, headers, seconds, connections)
                figure.label = target.label
                print_figure(figure, bare)
                figures.append(figure)
            rss = workers_rss_mb(master)
        # Again at the end, against the first: how far the machine drifted meanwhile.
        again = measure_bare(env, seconds, connections)
        again.label = "bare Flask endpoint, again"
        print_figure(again, bare)
        figures.append(again)
        size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
        with sqlite3.connect(path) as connection:
            events = connection.execute("SELECT count(*) FROM task_events").fetchone()[0]
        print(
            f"  list row: {per_row:.0f} bytes of HTML   workers' RSS: "
            + ", ".join(f"{mb:.0f} MB" for mb in rss)
            + f"   database: {size / count:.0f} bytes per task ({events / count:.1f} events each)",
            flush=True,
        )
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10k tasks, 2 s a figure")
    parser.add_argument("--sizes", type=int, nargs="*", help="task counts to measure")
    parser.add_argument("--seconds", type=int, help="load per figure (default 10, quick 2)")
    parser.add_argument("--connections", type=int, default=4, help="wrk connections (4)")
    parser.add_argument("--keep", type=Path, help="reuse (or create) this database file")
    parser.add_argument(
        "--only", nargs="*", help="endpoints whose label has one of these words (bare always)"
    )
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: ./scripts/setup.sh --test installs it")
    sizes = args.sizes or ([10_000] if args.quick else [10_000, 100_000, 1_000_000])
    seconds = args.seconds or (2 if args.quick else 10)
    print(
        f"gunicorn -c python:webapp.gunicorn_conf ({gunicorn_setting('workers')} "
        f"workers x {gunicorn_setting('threads')} threads), "
        f"wrk -t1 -c{args.connections}, {seconds} s a figure, {os.cpu_count()} CPUs, "
        f"sqlite {sqlite3.sqlite_version}"
    )
    for size in sizes:
        keep = args.keep if len(sizes) == 1 else None
        run_size(size, seconds, args.connections, keep, args.only)


if __name__ == "__main__":
    main()
