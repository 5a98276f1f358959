"""The service's metrics from the real server with three workers: one EMF record per request in
its JSON log, valid against CloudWatch's schema, and `GET /metrics` adding up every worker."""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.governance.key_store import hash_key
from testbed.openai_upstream import Reply
from testbed.redis_server import RedisServer
from testbed.server import running_server
from tests.support.emf import assert_valid_emf
from tests.support.http import fetch
from tests.support.waiting import wait_until

PROVIDER_KEY = "sk-provider-metrics-test"
WEB_KEY = "aip_metrics-e2e-web-key-00000000000000000001"
BATCH_KEY = "aip_metrics-e2e-batch-key-000000000000000002"
WRONG_KEY = "aip_metrics-e2e-wrong-key-000000000000000003"
METRICS_KEY = "metrics-e2e-key-0123456789abcdef"
ENVIRONMENT = "aiproxy-metrics.example.org"
STORE = {
    "web": {"keys": [hash_key(WEB_KEY)], "budget_usd_per_day": 5},
    "batch": {"keys": [hash_key(BATCH_KEY)]},
}
CHAT = "/v1/chat/completions"
PRICE_IN, PRICE_OUT = 10_000, 20_000  # USD per million tokens


def cost(prompt_tokens: int, completion_tokens: int) -> float:
    return (prompt_tokens * PRICE_IN + completion_tokens * PRICE_OUT) / 1e6


@pytest.fixture(scope="module")
def server_tmp(tmp_path_factory) -> Path:
    """The server's TMPDIR, where its master makes the workers' metrics directory."""
    return tmp_path_factory.mktemp("server-tmp")


@pytest.fixture(scope="module")
def store():
    """The limits store the workers share, so web's budget share adds up whichever worker answers."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def server_settings(server_tmp, store):
    return {
        "AIPROXY_REDIS_URL": store.url,
        "OPENAI_API_KEY": PROVIDER_KEY,
        "AIPROXY_CLIENT_KEYS": json.dumps(STORE),
        "AIPROXY_WORKERS": "3",
        "LOG_FORMAT": "json",
        "ENVIRONMENT": ENVIRONMENT,
        "AIPROXY_METRICS_KEY": METRICS_KEY,
        "TMPDIR": str(server_tmp),
        # Dear enough that one request's share of web's $5 budget shows at the metrics' precision.
        "AIPROXY_PRICES": json.dumps({"gpt-4o-mini": {"input": PRICE_IN, "output": PRICE_OUT}}),
    }


def call(server, key: str, path: str, body: dict | None = None, request_id: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    if request_id:
        headers["X-Request-Id"] = request_id
    data = json.dumps(body).encode() if body is not None else None
    return fetch(server.url + path, data, headers).status


def chat(model: str = "gpt-4o-mini", **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "Say hello"}], **extra}


def scrape(server) -> dict[tuple[str, frozenset], float]:
    """Every sample of `/metrics`, parsed with prometheus_client's own parser."""
    response = fetch(server.url + "/metrics", headers={"Authorization": f"Bearer {METRICS_KEY}"})
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.body.decode())
        for sample in family.samples
    }


def total(samples: dict, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(value for (sample, found), value in samples.items() if sample == name and wanted <= found)


def test_each_request_writes_one_emf_record_with_its_figures(server, fake):
    fake.enqueue(Reply(usage={"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}), path=CHAT)
    assert call(server, WEB_KEY, CHAT, chat(), "emf-chat") == 200
    streamed = chat(stream=True, stream_options={"include_usage": True})
    assert call(server, WEB_KEY, CHAT, streamed, "emf-stream") == 200
    assert call(server, BATCH_KEY, CHAT, chat("m" * 150), "emf-odd-model") == 200
    assert call(server, WRONG_KEY, "/v1/models/gpt-4o-mini", None, "emf-refused") == 401
    assert call(server, WEB_KEY, "/v1/nothing/1234", None, "emf-lost") == 404
    assert call(server, WEB_KEY, "/", None, "emf-health") == 200
    ids = ("emf-chat", "emf-stream", "emf-odd-model", "emf-refused", "emf-lost", "emf-health")

    def access_lines() -> dict[str, list[dict]]:
        lines = [line for line in server.log_records() if line["request_id"] in ids]
        return {i: [line for line in lines if line["request_id"] == i] for i in ids}

    # The access line is written once the answer is closed, a moment after the client has it.
    wait_until(lambda: all(any(x["logger"] == "service.access" for x in v) for v in access_lines().values()))
    lines = access_lines()
    records = {}
    for request_id, mine in lines.items():
        emf = [line for line in mine if "_aws" in line]
        if request_id == "emf-health":
            assert emf == []  # the load balancer's health check is not the clients' traffic
            continue
        assert len(emf) == 1, f"{request_id}: {len(emf)} EMF records"
        assert emf[0]["logger"] == "service.access"
        assert_valid_emf(emf[0])
        records[request_id] = emf[0]
    usage = {
        i: next(x for x in lines[i] if x["logger"] == "service.usage") for i in ("emf-chat", "emf-stream")
    }

    for record in records.values():
        assert record["Environment"] == ENVIRONMENT
        assert record["Requests"] == 1
        assert record["Latency"] > 0
        assert {m["Name"] for d in record["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]} <= set(record)
        assert "1234" not in record["Route"]  # a route's template, never a raw path

    first = records["emf-chat"]
    assert (first["Client"], first["Model"], first["Route"], first["StatusClass"]) == (
        "web",
        "gpt-4o-mini",
        CHAT,
        "2xx",
    )
    assert (first["PromptTokens"], first["CompletionTokens"], first["Errors"]) == (11, 7, 0)
    assert first["UpstreamLatency"] == usage["emf-chat"]["upstream_ms"] <= first["Latency"]
    assert first["CostUSD"] == pytest.approx(cost(11, 7))
    # web's budget is $5 a day; the share counts this request's cost and whatever came before it.
    assert first["BudgetUsedPercent"] >= round(100 * cost(11, 7) / 5, 3)
    assert "TimeToFirstToken" not in first and "ErrorKind" not in first

    stream = records["emf-stream"]
    assert stream["TimeToFirstToken"] == usage["emf-stream"]["first_token_ms"] > 0
    assert stream["PromptTokens"] == usage["emf-stream"]["prompt_tokens"] > 0
    assert stream["CompletionTokens"] == usage["emf-stream"]["completion_tokens"] > 0
    assert stream["CostUSD"] == pytest.approx(cost(stream["PromptTokens"], stream["CompletionTokens"]))
    spent = 100 * stream["CostUSD"] / 5
    assert stream["BudgetUsedPercent"] == pytest.approx(first["BudgetUsedPercent"] + spent, abs=0.002)

    odd = records["emf-odd-model"]
    assert (odd["Client"], odd["Model"]) == ("batch", "other")  # a 150-character name is folded
    assert "BudgetUsedPercent" not in odd  # batch has no budget
    assert "CostUSD" not in odd  # no price known for the model: left out, not 0

    refused = records["emf-refused"]
    assert (refused["Client"], refused["Route"], refused["StatusClass"]) == (
        "anonymous",
        "/v1/models/<path:model_id>",
        "4xx",
    )
    assert (refused["Errors"], refused["ErrorKind"]) == (1, "unauthenticated")
    assert "PromptTokens" not in refused

    lost = records["emf-lost"]
    assert (lost["Route"], lost["StatusClass"], lost["ErrorKind"]) == ("unmatched", "4xx", "rejected")


def test_metrics_add_up_across_workers_dead_ones_included(server, fake, server_tmp):
    before = scrape(server)
    each = 12
    fake.enqueue(
        *[Reply(usage={"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}) for _ in range(each)],
        path=CHAT,
    )
    jobs = [(WEB_KEY, CHAT, chat())] * each + [(BATCH_KEY, "/test", None), (WRONG_KEY, "/test", None)] * each
    with ThreadPoolExecutor(12) as pool:  # a connection per request: the kernel spreads them over workers
        statuses = list(pool.map(lambda job: call(server, *job), jobs))
    assert Counter(statuses) == {200: 2 * each, 401: each}
    burst = len(jobs)

    def added(samples, name, **labels) -> float:
        return total(samples, name, **labels) - total(before, name, **labels)

    # Each request is recorded once its answer is closed, a moment after the client has it.
    with contextlib.suppress(AssertionError):  # the comparisons below say what is missing
        wait_until(lambda: added(scrape(server), "aiproxy_requests_total") >= burst)
    after = scrape(server)
    assert added(after, "aiproxy_requests_total") == burst
    by_route = {
        (route, status_class): added(after, "aiproxy_requests_total", route=route, status_class=status_class)
        for route, status_class in ((CHAT, "2xx"), ("/test", "2xx"), ("/test", "4xx"), (CHAT, "4xx"))
    }
    assert by_route == {(CHAT, "2xx"): each, ("/test", "2xx"): each, ("/test", "4xx"): each, (CHAT, "4xx"): 0}
    assert added(after, "aiproxy_requests_total", client="web") == each
    assert added(after, "aiproxy_errors_total", kind="unauthenticated") == each
    assert added(after, "aiproxy_prompt_tokens_total", client="web", model="gpt-4o-mini") == 5 * each
    assert added(after, "aiproxy_completion_tokens_total", client="web", model="gpt-4o-mini") == 3 * each
    # The gauge holds the share as of web's latest request: more than before the burst, under 100 %.
    assert (
        total(before, "aiproxy_budget_used_percent", client="web")
        < total(after, "aiproxy_budget_used_percent", client="web")
        < 100
    )
    assert added(after, "aiproxy_cost_usd_total", client="web") == pytest.approx(each * cost(5, 3))

    # Histograms: a count per request, cumulative buckets up to +Inf.
    assert added(after, "aiproxy_request_duration_seconds_count") == burst
    assert added(after, "aiproxy_upstream_duration_seconds_count", route=CHAT) == each
    for route in (CHAT, "/test"):
        buckets = sorted(
            (float(dict(labels)["le"]), value)
            for (name, labels), value in after.items()
            if name == "aiproxy_request_duration_seconds_bucket" and dict(labels)["route"] == route
        )
        counts = [value for _, value in buckets]
        assert counts == sorted(counts) and buckets[-1][0] == float("inf")
        assert counts[-1] == total(after, "aiproxy_request_duration_seconds_count", route=route)

    # The burst was served by more than one worker, each writing its own files.
    [directory] = server_tmp.glob("aiproxy-metrics-*")
    writers = {path.stem.rpartition("_")[2] for path in directory.glob("counter_*.db")}
    assert len(writers) >= 2, writers

    # A worker that exits takes nothing with it: its counts stay in the sums.
    master = psutil.Process(server.process.pid)
    victim = master.children()[0]
    victim.terminate()
    victim.wait(30)
    wait_until(lambda: len([c for c in master.children() if c.pid != victim.pid]) == 3, timeout=30)
    assert scrape(server) == after


@pytest.mark.parametrize(
    "key", [None, "metrics-e2e-key-wrong-6789abcdef", WEB_KEY], ids=["no key", "wrong key", "a client key"]
)
def test_metrics_need_the_metrics_key(server, key):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    response = fetch(server.url + "/metrics", headers=headers)
    assert response.status == 401
    assert json.loads(response.body)["error"]["type"] == "authentication_error"


def test_the_master_gives_workers_a_fresh_metrics_directory_and_removes_it(tmp_path):
    environment = {"TMPDIR": str(tmp_path), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    with running_server({**environment, "AIPROXY_METRICS_KEY": METRICS_KEY}) as server:
        [directory] = tmp_path.glob("aiproxy-metrics-*")  # not the directory the environment named
        assert fetch(server.url + "/test").status == 200
        wait_until(lambda: any(directory.glob("counter_*.db")))
        scraped = fetch(server.url + "/metrics", headers={"Authorization": f"Bearer {METRICS_KEY}"})
        assert scraped.status == 200
    assert not directory.exists()


def test_without_the_metrics_key_the_workers_keep_no_prometheus_figures(tmp_path):
    with running_server({"TMPDIR": str(tmp_path)}) as server:
        assert fetch(server.url + "/test").status == 200
        off = fetch(server.url + "/metrics", headers={"Authorization": "Bearer anything-0123456789"})
        assert off.status == 404  # no AIPROXY_METRICS_KEY: the route is off
        assert list(tmp_path.glob("aiproxy-metrics-*")) == []  # and nothing is counted for it
