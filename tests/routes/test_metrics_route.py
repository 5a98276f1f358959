"""`GET /metrics`: its own key, no client key, Prometheus text (Flask test client, one process)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.governance.key_store import hash_key
from testbed.server import ROOT
from tests.support.app import make_app

CLIENT_KEY = "aip_metrics-route-web-key-00000000000000001"
METRICS_KEY = "metrics-route-key-0123456789abcdef"
STORE = {"web": {"keys": [hash_key(CLIENT_KEY)]}}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def client():
    app = make_app(AIPROXY_CLIENT_KEYS=json.dumps(STORE), AIPROXY_METRICS_KEY=METRICS_KEY)
    return app.test_client()


def requests_counted(client, route: str) -> float:
    text = client.get("/metrics", headers=bearer(METRICS_KEY), buffered=True).get_data(as_text=True)
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "aiproxy_requests"
        for sample in family.samples
        if sample.name == "aiproxy_requests_total" and sample.labels["route"] == route
    )


def test_the_metrics_key_opens_it_without_a_client_key(client):
    response = client.get("/metrics", headers=bearer(METRICS_KEY), buffered=True)
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    assert response.headers["Cache-Control"] == "no-store"
    families = {family.name for family in text_string_to_metric_families(response.get_data(as_text=True))}
    assert {"aiproxy_requests", "aiproxy_request_duration_seconds", "aiproxy_prompt_tokens"} <= families


@pytest.mark.parametrize(
    "headers",
    [{}, bearer("metrics-route-key-wrong-456789abcdef"), bearer(CLIENT_KEY), {"Authorization": METRICS_KEY}],
    ids=["no key", "wrong key", "a client key", "no Bearer scheme"],
)
def test_anything_but_the_metrics_key_is_401(client, headers):
    response = client.get("/metrics", headers=headers, buffered=True)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "metrics key" in response.get_json()["error"]["message"]
    assert METRICS_KEY not in response.get_data(as_text=True)


def test_without_a_metrics_key_it_answers_as_a_url_that_does_not_exist():
    client = make_app().test_client()
    off = client.get("/metrics", headers=bearer("anything-at-all-0123456789"), buffered=True)
    nowhere = client.get("/nowhere", buffered=True)
    assert off.status_code == nowhere.status_code == 404
    assert off.get_json() == nowhere.get_json()


def test_requests_are_counted_once_their_answer_is_closed(client):
    before = requests_counted(client, "/test")
    for _ in range(3):
        assert client.get("/test", headers=bearer(CLIENT_KEY), buffered=True).status_code == 200
    assert client.get("/test", buffered=True).status_code == 401
    assert requests_counted(client, "/test") == before + 4
    assert requests_counted(client, "/metrics") == 0  # the scrapes themselves are not


@pytest.mark.parametrize("metrics_key, kept", [(METRICS_KEY, True), ("", False)])
def test_prometheus_figures_are_kept_only_when_a_scraper_can_read_them(metrics_key, kept):
    # Without the key nobody can read them: a worker should not spend memory (prometheus_client
    # is several MiB) or time on every request keeping them. Checked in a fresh interpreter, as a
    # worker starts.
    code = (
        "import sys\n"
        "from tests.support.app import make_app\n"
        f"app = make_app(AIPROXY_METRICS_KEY={metrics_key!r})\n"
        "assert app.test_client().get('/', buffered=True).status_code == 200\n"
        "print('prometheus_client' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == str(kept)
