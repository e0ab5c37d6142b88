"""The four upstream simulators for bench/refresh.py, in a child process: ``upstreams.py PLAN
READY`` serves the plan's tasks with its latency until its standard input closes; the parent
uses :func:`simulators`.

Served by gunicorn (one gthread worker), not werkzeug's development server: werkzeug answers
every request with ``Connection: close``, so each request would pay for a new TCP connection
and a new server thread, which no real upstream makes its clients do.
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

# This checkout's code, not whichever one the virtualenv's editable install points at.
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


# -- the simulators, in a child process ----------------------------------------------------------


def serve(plan_path: Path, ready_path: Path) -> None:
    """Child process: the four simulators on a free port, with the plan's tasks and latency.

    Served by gunicorn (one gthread worker), not werkzeug's development server: werkzeug
    answers every request with ``Connection: close``, so each request would pay for a new TCP
    connection and a new server thread, which no real upstream makes its clients do.
    """
    import signal
    import socket

    from gunicorn.app.base import BaseApplication

    from webapp.simulators import SIMULATORS
    from webapp.simulators import SimulatorSuite
    from webapp.simulators.core import Fault

    plan = json.loads(plan_path.read_text())
    credentials = {"mixpeek": {**SIMULATORS["mixpeek"].DEMO_CREDENTIALS, "rate_limit": 10**9}}
    suite = SimulatorSuite(credentials=credentials)
    history: dict[str, list[tuple[str, float]]] = {}
    for index, spec in enumerate(plan["tasks"]):
        module = SIMULATORS[spec["provider"]]
        task = module.add_demo_task(
            suite.states[spec["provider"]],
            random.Random(index),
            task_id=spec["task_id"],
            final=spec["final"],
            queued_seconds=spec["queued"],
            running_seconds=spec["running"],
        )
        task.started_at = spec["start"]
        # Remote batch-prediction tasks are re-read one by one (PROVIDERS.md trap 22): kept out
        # so the figures show batching itself.
        if task.fields.get("task_type") == "BATCH_PREDICTION":
            task.fields["task_type"] = "DEPLOY_MODEL"
        history[spec["task_id"]] = task.history(math.inf)
    for state in suite.states.values():
        state.set_fault(Fault.SLOW, seconds=plan["latency"])
    listener = socket.create_server(("127.0.0.1", 0), backlog=256)
    listener.set_inheritable(True)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    wsgi = suite.wsgi_app()

    class Upstreams(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            settings = {
                "bind": f"fd://{listener.fileno()}",
                "workers": 1,  # the simulators keep their state in memory
                "worker_class": "gthread",
                "threads": 64,  # each request sleeps for the latency on its thread
                "keepalive": 30,
                "graceful_timeout": 2,
                # Not "error": the worker is killed at the end of every run, which it logs.
                "loglevel": "critical",
                "accesslog": None,
            }
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return wsgi

    def stop_when_parent_goes() -> None:
        sys.stdin.read()  # until the parent closes our stdin
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=stop_when_parent_goes, daemon=True).start()
    partial = ready_path.with_suffix(".tmp")
    partial.write_text(json.dumps({"url": url, "history": history}))
    partial.rename(ready_path)  # whole, or not there yet; requests wait in the backlog
    Upstreams().run()


@dataclass
class Simulators:
    url: str
    history: dict[str, list[tuple[str, float]]]
    pid: int

    def cpu_seconds(self) -> float:
        """CPU time the simulators' processes have used (Linux; 0 elsewhere)."""
        return sum(_process_cpu(pid) for pid in _process_tree(self.pid))

    def calls(self, provider: str) -> dict[str, int]:
        answer = httpx.get(f"{self.url}/{provider}/_control/stats", timeout=30)
        return answer.json()["calls"]


@contextmanager
def simulators(tasks: list[dict[str, Any]], latency: float, workdir: Path) -> Iterator[Simulators]:
    plan, ready = workdir / "plan.json", workdir / "ready.json"
    ready.unlink(missing_ok=True)
    plan.write_text(json.dumps({"tasks": tasks, "latency": latency}))
    child = subprocess.Popen(
        [sys.executable, __file__, str(plan), str(ready)], stdin=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            if child.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the simulators did not start")
            time.sleep(0.05)
        info = json.loads(ready.read_text())
        yield Simulators(info["url"], info["history"], child.pid)
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=30)


def _process_tree(pid: int) -> list[int]:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [pid, *(grandchild for child in children for grandchild in _process_tree(int(child)))]


def _process_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime and stime, the 14th and 15th fields of stat(5), in clock ticks.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    serve(Path(sys.argv[1]), Path(sys.argv[2]))
