"""Hostile upstreams: markup, script URLs and template syntax placed by the simulators in task
ids, names, types, errors, links and raw fields (and by a person in labels and notes), fetched
through the real providers, come out escaped on every page, fragment, export and API answer.
"""

from __future__ import annotations

import csv
import io
import json
import random
from urllib.parse import quote
from urllib.parse import unquote
from urllib.parse import urlsplit

import pytest
from bs4 import BeautifulSoup
from flask import url_for

from tests.conftest import refresh_once
from tests.conftest import track
from tests.helpers import csrf
from tests.helpers import soup
from webapp.db import store
from webapp.db.models import ImportJob
from webapp.db.models import NotificationRule
from webapp.db.models import SavedView
from webapp.db.models import db
from webapp.simulators import SIMULATORS
from webapp.web.headers import CONTENT_SECURITY_POLICY
from webapp.web.presentation import safe_link

PAYLOADS = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "javascript:alert(1)",
    "{{7*7}}",
    "</textarea><svg onload=alert(1)>",
]
SCRIPT, IMG, JS_URL, TEMPLATE, TEXTAREA = PAYLOADS
EVERYTHING = " ".join(PAYLOADS)

#: Per upstream, the simulator fields its payloads carry: names, types, errors, links, raw.
HOSTILE_FIELDS = {
    "opensearch-ml": {
        "function_name": SCRIPT,
        "task_type": IMG,
        "error": EVERYTHING,
        "model_id": JS_URL,
        "worker_node": [TEXTAREA, TEMPLATE],
    },
    "mixpeek": {
        "task_type": SCRIPT,
        "error": EVERYTHING,
        "additional_data": {"note": TEXTAREA, "link": JS_URL},
        "inputs": [IMG],
    },
    "conductor": {
        "taskDefName": SCRIPT,
        "taskType": IMG,
        "workflowType": TEXTAREA,
        "referenceTaskName": TEMPLATE,
        "reasonForIncompletion": EVERYTHING,
        "correlationId": JS_URL,
        "inputData": {"url": JS_URL, "html": IMG},
    },
    "nclue": {
        "task_name": SCRIPT,
        "fail_message": EVERYTHING,
        "train_feature_id": JS_URL,
        "train_feature_name": IMG,
        "train_file_path": TEXTAREA,
        "test_feature_name": TEMPLATE,
    },
}
#: Ids each upstream's API carries as they are (in a URL path segment, encoded).
HOSTILE_IDS = {name: f"{SCRIPT}{IMG}-{name}" for name in HOSTILE_FIELDS}


@pytest.fixture
def hostile(app_factory, make_source, suite, clock):  # type: ignore[no-untyped-def]
    sources = [make_source(provider, name=provider) for provider in HOSTILE_FIELDS]
    app = app_factory(sources)
    rng = random.Random(7)
    for provider, fields in HOSTILE_FIELDS.items():
        module, state = SIMULATORS[provider], suite.states[provider]
        failed = module.add_demo_task(
            state, rng, task_id=HOSTILE_IDS[provider], final="failed", running_seconds=1
        )
        failed.fields.update(fields)
        running = module.add_demo_task(
            state, rng, task_id=HOSTILE_IDS[provider] + "-run", running_seconds=10_000
        )
        running.fields.update({k: v for k, v in fields.items() if k != "error"})
        track(app, provider, HOSTILE_IDS[provider], HOSTILE_IDS[provider] + "-run")
    clock.advance(30)
    refresh_once(app)
    client = app.test_client()
    for provider in HOSTILE_FIELDS:  # a person's own labels and notes, hostile too
        with app.test_request_context():
            url = url_for("tasks.annotate", source=provider, task_id=HOSTILE_IDS[provider])
        answer = client.post(
            url, data={"csrf_token": csrf(client), "labels": f"{IMG} {SCRIPT}", "note": EVERYTHING}
        )
        assert answer.status_code in (200, 303)
    return app


def detail_url(app, provider: str, suffix: str = "", endpoint: str = "tasks.detail") -> str:  # type: ignore[no-untyped-def]
    with app.test_request_context():
        return url_for(endpoint, source=provider, task_id=HOSTILE_IDS[provider] + suffix)


def assert_inert(html: str, where: str) -> None:
    """No markup of the payloads' own: only our scripts, no handlers, no script URLs."""
    page = soup_text(html)
    for script in page.find_all("script"):
        assert script.get("src", "").startswith("/static/") and not script.string, where
    for element in page.find_all(True):
        handlers = [a for a in element.attrs if a.lower().startswith("on")]
        assert not handlers, f"{where}: {element.name} has {handlers}"
        for attribute in ("href", "src", "action", "formaction", "hx-get", "hx-post"):
            value = element.get(attribute)
            if isinstance(value, str):
                assert not unquote(value).strip().lower().startswith("javascript:"), where
    assert not page.find_all(["svg", "img"], attrs={"onload": True}), where
    assert not page.find_all("img", src="x"), where
    assert "49" not in page.get_text(" ").split(), f"{where}: a template ran the payload"


def soup_text(html: str) -> BeautifulSoup:
    return BeautifulSoup(html, "html.parser")


@pytest.mark.parametrize("live", [SCRIPT, IMG, TEXTAREA, '<a href="javascript:alert(1)">x</a>'])
def test_the_check_catches_live_markup(live):
    with pytest.raises(AssertionError):
        assert_inert(f"<p>{live}</p>", "a page that forgot to escape")


def test_every_task_was_fetched_with_its_payloads(hostile):
    with hostile.app_context():
        for provider in HOSTILE_FIELDS:
            task = store.get_task(provider, HOSTILE_IDS[provider])
            assert task is not None and task.state == "failed", (
                provider,
                task and task.fetch_error,
            )
            assert SCRIPT in (task.error or ""), provider
            assert task.labels and task.note == EVERYTHING


def test_pages_and_fragments_escape_every_payload(hostile):
    client = hostile.test_client()
    urls = ["/", "/?view=all&q=alert", "/?view=all&state=failed", "/sources"]
    for provider in HOSTILE_FIELDS:
        urls += [detail_url(hostile, provider), detail_url(hostile, provider, "-run")]
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        html = response.get_data(as_text=True)
        assert_inert(html, url)
    for provider in HOSTILE_FIELDS:
        page = client.get(detail_url(hostile, provider)).get_data(as_text=True)
        text = soup(client.get(detail_url(hostile, provider))).get_text(" ")
        assert SCRIPT in text and "&lt;script&gt;" in page, provider  # shown, as text
        status = client.get(
            detail_url(hostile, provider, "-run", "tasks.status"), headers={"HX-Request": "true"}
        )
        assert_inert(status.get_data(as_text=True), f"status fragment of {provider}")
    poller = soup(client.get("/?view=all")).select_one("#live-poller")
    live = client.get(poller["hx-get"], headers={"HX-Request": "true"})
    assert live.status_code in (200, 204, 286)
    assert_inert(live.get_data(as_text=True), "live fragment")


def test_links_from_payloads_are_links_only_for_http(hostile):
    page = soup(hostile.test_client().get(detail_url(hostile, "opensearch-ml")))
    hrefs = [a["href"] for a in page.select("ul.links a")]
    assert all(href.startswith(("http://", "https://")) for href in hrefs)
    shown = [code.get_text() for code in page.select("ul.links code")]
    assert JS_URL in shown


def test_exports_and_api_answers_are_data_not_markup(hostile):
    client = hostile.test_client()
    exported = client.get("/tasks/export.csv?view=all")
    assert exported.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(exported.get_data(as_text=True))))
    assert any(SCRIPT in cell for row in rows for cell in row)
    for url in ["/tasks/export.json?view=all", "/api/v1/tasks?view=all&limit=100"]:
        answer = client.get(url)
        assert answer.mimetype == "application/json", url
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        json.loads(answer.get_data(as_text=True))
    for provider in HOSTILE_FIELDS:
        for endpoint in ("api.get_task", "tasks.raw_payload"):
            answer = client.get(detail_url(hostile, provider, endpoint=endpoint))
            assert answer.status_code == 200 and answer.mimetype == "application/json"
            assert answer.headers["Content-Security-Policy"].startswith("default-src 'self'")


@pytest.mark.parametrize(
    "url",
    [
        "https://ml.example/tasks/1",
        "http://10.0.0.5:9200/_plugins/_ml/tasks/x",
        "HTTPS://EXAMPLE.COM/",
    ],
)
def test_safe_link_keeps_http_urls(url):
    assert safe_link(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        " javascript:alert(1)",
        "java\tscript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "//evil.example/x",
        "/relative/path",
        "https://",
        "http:\\\\evil.example",
        "https://ok.example/\nx",
        "",
        None,
        42,
    ],
)
def test_safe_link_refuses_everything_else(url):
    assert safe_link(url) is None


# -- every page and fragment of the URL map ---------------------------------------------------

#: GET endpoints whose answers are data (JSON, CSV, Prometheus text, files), not markup: the
#: exports and API answers are checked by ``test_exports_and_api_answers_are_data_not_markup``.
DATA_ENDPOINTS = frozenset(
    {
        "static",
        "health.favicon",
        "health.healthz",
        "metrics.metrics",
        "api.openapi_document",
        "api.list_tasks",
        "api.get_task",
        "tasks.export",
        "tasks.raw_payload",
        "audit.export_csv",
        "audit.export_json",
    }
)
#: Pages that must show the payloads (escaped), so that their check is not vacuous.
SHOWS_PAYLOADS = frozenset(
    {
        "tasks.index",
        "tasks.detail",
        "tasks.charts",
        "tasks.import_page",
        "tasks.import_progress",
        "share.page",
        "tokens.index",
        "audit.index",
        "notifications.index",
        "notifications.edit",
        "notifications.deliveries",
    }
)
#: How the payloads read in markup once escaped.
ESCAPED = ("&lt;script&gt;", "&lt;img src=x")


def post(client, url: str, data: dict[str, str], partial: bool = False):  # type: ignore[no-untyped-def]
    headers = {"HX-Request": "true"} if partial else {}
    return client.post(url, data={"csrf_token": csrf(client), **data}, headers=headers)


def checked(response, where: str) -> str:  # type: ignore[no-untyped-def]
    """The answer's text, checked to be inert when it is markup, and sent under the CSP."""
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY, where
    assert response.headers["X-Content-Type-Options"] == "nosniff", where
    html = response.get_data(as_text=True)
    if response.mimetype == "text/html":
        assert_inert(html, where)
        # Nothing the policy would refuse (style-src 'self'): no inline style anywhere.
        page = soup_text(html)
        assert not page.find_all("style") and not page.find_all(style=True), where
    return html


def place_more_payloads(app, clock) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """Payloads in what the rest of the app shows: share links, an alert rule whose deliveries
    name the tasks, a saved view, an import, a tracked id the upstream does not know. Returns
    the URL values that reach them."""
    client = app.test_client()
    share_urls = {}
    for provider in HOSTILE_FIELDS:
        made = post(client, detail_url(app, provider, endpoint="share.create"), {"expires": "1d"})
        assert made.status_code == 200
        checked(made, f"share link made for {provider}")
        share_urls[provider] = soup(made).select_one("#share-url")["value"]
    rule = {"name": SCRIPT, "when": "state:finished", "kind": "webhook"}
    made = post(client, "/notifications", {**rule, "url": "http://127.0.0.1:9/hook"})
    assert made.status_code == 303, made.get_data(as_text=True)
    # The running tasks end upstream: the rule writes a delivery naming each.
    clock.advance(20_000)
    refresh_once(app)
    made = post(client, "/views", {"name": IMG, "query": f"view=all&q={SCRIPT}"})
    assert made.status_code == 303
    tracked = post(
        client, "/tasks/track", {"source": "opensearch-ml", "task_ids": f"{IMG}-unknown"}
    )
    checked(tracked, "tracking an unknown hostile id")
    with app.app_context():
        job = ImportJob(source="opensearch-ml", query=EVERYTHING, limit=5, status="failed")
        job.error = EVERYTHING
        db.session.add(job)
        db.session.commit()
        return {
            "job_id": job.id,
            "rule_id": db.session.scalar(db.select(NotificationRule.id)),
            "view_id": db.session.scalar(db.select(SavedView.id)),
            "share_urls": share_urls,
        }


def urls_of(app, endpoint: str, values: dict[str, object]) -> list[str]:  # type: ignore[no-untyped-def]
    """The URLs of a GET endpoint that reach the payloads (each provider's, where it varies)."""
    rule = next(app.url_map.iter_rules(endpoint))
    if endpoint.startswith("share."):
        paths = [urlsplit(url).path for url in values["share_urls"].values()]  # type: ignore[attr-defined]
        return [path + ("/status" if endpoint == "share.status" else "") for path in paths]
    extra = {
        "tasks.index": ["?view=all", "?view=all&state=failed", f"?view=all&q={quote(SCRIPT)}"],
        "tasks.charts": ["?view=all"],
        "audit.index": ["", f"?target={quote(SCRIPT)}"],
        "preferences.set_time_mode": ["?mode=utc&next=/%3Fview%3Dall"],
    }.get(endpoint, [""])
    urls = []
    for provider in (
        HOSTILE_FIELDS if "source" in rule.arguments or "name" in rule.arguments else [None]
    ):
        arguments = {
            name: {
                "source": provider,
                "name": provider,
                "task_id": HOSTILE_IDS.get(provider or ""),
            }.get(name, values.get(name))
            for name in rule.arguments
        }
        with app.test_request_context():
            base = url_for(endpoint, **arguments)
        urls += [base + suffix for suffix in extra]
    return urls


def test_every_page_and_fragment_of_the_url_map_escapes_every_payload(hostile, clock):
    values = place_more_payloads(hostile, clock)
    client = hostile.test_client()
    endpoints = sorted(
        {
            rule.endpoint
            for rule in hostile.url_map.iter_rules()
            if "GET" in (rule.methods or ()) and rule.endpoint not in DATA_ENDPOINTS
        }
    )
    shown = set()
    for endpoint in endpoints:
        for url in urls_of(hostile, endpoint, values):
            page = client.get(url, follow_redirects=True)
            assert page.status_code < 500, url
            if any(mark in checked(page, url) for mark in ESCAPED):
                shown.add(endpoint)
            fragment = client.get(url, headers={"HX-Request": "true"})
            assert fragment.status_code < 500, url
            checked(fragment, f"{url} (htmx)")
    assert SHOWS_PAYLOADS - shown == set(), "these pages showed no payload: a vacuous check"


def test_fragments_answering_writes_escape_every_payload(hostile):
    client = hostile.test_client()
    shown = set()
    for provider in HOSTILE_FIELDS:
        for partial in (False, True):
            for endpoint, data in (
                ("tasks.annotate", {"labels": f"{IMG} {SCRIPT}", "note": EVERYTHING}),
                ("tasks.refresh_now", {}),
            ):
                answer = post(
                    client, detail_url(hostile, provider, endpoint=endpoint), data, partial
                )
                assert answer.status_code < 500
                if any(mark in checked(answer, f"{endpoint} of {provider}") for mark in ESCAPED):
                    shown.add(endpoint)
            preview = post(client, "/tasks/import/preview", {"source": provider}, partial)
            if any(mark in checked(preview, f"import preview of {provider}") for mark in ESCAPED):
                shown.add("tasks.import_preview")
    # (A re-fetch answers the status widget: states, which are ours, not the upstream's words.)
    assert shown == {"tasks.annotate", "tasks.import_preview"}
    dry_run = post(client, "/notifications/dry-run", {"when": "state:problems"}, partial=True)
    assert any(mark in checked(dry_run, "the alert rule's dry run") for mark in ESCAPED)
    missing = client.get(f"/tasks/opensearch-ml/{quote(SCRIPT, safe='')}-missing")
    assert missing.status_code == 404
    checked(missing, "a missing task's 404")
