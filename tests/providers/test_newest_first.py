"""Every provider's newest-first walk of a query (``Provider.search_newest``) against its
simulator over loopback: newest first across pages, each task once, the total on page one."""

from __future__ import annotations

import json
import random
from urllib.parse import parse_qs

import httpx
import pytest

from webapp.providers import provider_for
from webapp.providers.nclue import NclueProvider
from webapp.simulators import SIMULATORS


def start(suite, clock, provider: str, count: int) -> list[str]:  # type: ignore[no-untyped-def]
    """``count`` tasks, one a minute; their ids oldest first."""
    rng = random.Random(2)
    ids = []
    for _ in range(count):
        task = SIMULATORS[provider].add_demo_task(suite.states[provider], rng)
        ids.append(task.task_id)
        clock.advance(60)
    return ids


@pytest.mark.parametrize("provider", list(SIMULATORS))
def test_the_walk_comes_newest_first_page_by_page(provider, suite, clock, make_source):
    ids = start(suite, clock, provider, 17)
    client = provider_for(make_source(provider, rate_limit=1000))
    pages = list(client.search_newest("*", page_size=5))
    client.close()
    walked = [task.task_id for page in pages for task in page.tasks]
    assert walked == list(reversed(ids))
    assert [len(page.tasks) for page in pages] == [5, 5, 5, 2]
    assert pages[0].total == 17
    times = [task.created_at for page in pages for task in page.tasks]
    if provider == "mixpeek":
        assert times == [None] * 17  # TaskResponse has no times: a follow stops at ids
    else:
        assert times == sorted(times, reverse=True)  # type: ignore[type-var]


def test_a_mixpeek_query_asking_for_another_order_is_still_walked_newest_first(
    suite, clock, make_source
):
    ids = start(suite, clock, "mixpeek", 4)
    client = provider_for(make_source("mixpeek"))
    query = json.dumps({"sort": {"field": "created_at", "direction": "asc"}})
    walked = [t.task_id for page in client.search_newest(query, page_size=3) for t in page.tasks]
    client.close()
    assert walked == list(reversed(ids))


def test_an_nclue_list_that_comes_oldest_first_is_walked_back_from_its_end(make_source):
    """NCLUE's docs do not give the list's order: the walk reads it from the creation times."""
    listed = [
        {"task_id": f"t{n:02d}", "status": "completed", "created_at": f"2026-01-01T00:{n:02d}:00"}
        for n in range(12)
    ]
    asked: list[tuple[int, int]] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        args = parse_qs(request.url.query.decode())
        index, limit = int(args["index"][0]), int(args["limit"][0])
        asked.append((index, limit))
        page = listed[index : index + limit]
        return httpx.Response(
            200, json={"index": index, "limit": limit, "total": len(listed), "tasks": page}
        )

    source = make_source("nclue", rate_limit=1000)
    client = NclueProvider.create(source, transport=httpx.MockTransport(upstream))
    pages = list(client.search_newest(None, page_size=5))
    walked = [task.task_id for page in pages for task in page.tasks]
    assert walked == [f"t{n:02d}" for n in reversed(range(12))]
    assert asked == [(0, 5), (7, 5), (2, 5), (0, 2)]
