"""Client limits and budgets shared through a real Redis by two server processes of two workers each
(as two tasks of a deployment), and what happens when a process dies or the store goes away."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import threading
import time
from contextlib import ExitStack

import pytest

from service.governance.key_store import hash_key
from testbed.openai_upstream import FakeOpenAI, Reply, Stream
from testbed.redis_server import RedisServer
from testbed.server import running_server
from tests.support.http import fetch

PROVIDER_KEY = "sk-provider-key-shared-limits"
STORE_PASSWORD = "store-password-shared-limits"
# $10 per million tokens each way: a call of 20 + 20 tokens costs $0.0004.
PRICES = json.dumps({"gpt-4o-mini": {"input": 10, "output": 10}})
CLIENTS = {
    "rpm": {"rpm": 10, "max_concurrent": 50},
    "tpm": {"rpm": 600, "max_concurrent": 50, "tpm": 600},
    "tpm-concurrent": {"rpm": 600, "max_concurrent": 50, "tpm": 600},
    "concurrent": {"rpm": 600, "max_concurrent": 2},
    "budget": {"rpm": 600, "max_concurrent": 50, "budget_usd_per_day": 0.001},
    "stream": {"rpm": 600, "max_concurrent": 50, "budget_usd_per_month": 5},
    "outage": {"rpm": 4, "max_concurrent": 50},
}


def key_of(client: str) -> str:
    return f"aip_{client}-shared-limits-test-key-0000000000000001"


STORE = json.dumps({name: {"keys": [hash_key(key_of(name))], **limits} for name, limits in CLIENTS.items()})


def chat(server, client: str, **fields):
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], **fields}
    headers = {"Authorization": f"Bearer {key_of(client)}", "Content-Type": "application/json"}
    return fetch(server.url + "/v1/chat/completions", json.dumps(body).encode(), headers, timeout=30)


def settings_for(fake: FakeOpenAI, store: RedisServer, **more: str) -> dict[str, str]:
    return {
        "OPENAI_BASE_URL": fake.url,
        "OPENAI_API_KEY": PROVIDER_KEY,
        "AIPROXY_CLIENT_KEYS": STORE,
        "AIPROXY_REDIS_URL": store.url,
        "AIPROXY_REDIS_PASSWORD": STORE_PASSWORD,
        "AIPROXY_PRICES": PRICES,
        "AIPROXY_WORKERS": "2",
        "AIPROXY_LIMITS_LEASE_SECONDS": "3",
        "LOG_FORMAT": "json",
        **more,
    }


@pytest.fixture(scope="module")
def fake():
    with FakeOpenAI(api_key=PROVIDER_KEY) as upstream:
        yield upstream


@pytest.fixture(scope="module")
def store():
    with RedisServer(password=STORE_PASSWORD) as server:
        yield server


@pytest.fixture(scope="module")
def servers(fake, store):
    """Two server processes of two workers each, sharing the store."""
    with ExitStack() as stack:
        yield [stack.enter_context(running_server(settings_for(fake, store))) for _ in range(2)]


def test_exactly_rpm_requests_pass_across_processes(servers):
    statuses = [chat(servers[number % 2], "rpm").status for number in range(16)]
    assert statuses.count(200) == 10 and statuses.count(429) == 6
    refused = chat(servers[0], "rpm")
    assert refused.status == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert json.loads(refused.body)["error"]["code"] == "rate_limit_exceeded"


def test_answers_carry_the_clients_own_rate_limit_headers(servers):
    answer = chat(servers[1], "tpm", max_tokens=50)
    assert answer.status == 200
    assert answer.headers["x-ratelimit-limit-requests"] == "600"
    assert int(answer.headers["x-ratelimit-remaining-requests"]) < 600
    assert answer.headers["x-ratelimit-limit-tokens"] == "600"
    assert answer.headers["x-ratelimit-reset-requests"].endswith("s")


def test_tokens_reserved_are_replaced_by_the_tokens_used(servers, fake):
    # Each request may use about 175 tokens (its size and max_tokens 150) and uses 20: with the
    # estimates alone, the fourth would not fit in the 600 tokens a minute; with the real counts all
    # ten pass, even while the settle of the one before is still on its way (a settle that cannot
    # change the next admission is sent after the answer, so it may land after the next request).
    fake.responder = lambda request: Reply(
        usage={"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}
    )
    try:
        for number in range(10):
            answer = chat(servers[number % 2], "tpm", max_tokens=150)
            assert answer.status == 200, (number, answer.body)
    finally:
        fake.responder = None  # nothing left over for the next test
    limits = fetch(servers[0].url + "/v1/limits", headers={"Authorization": f"Bearer {key_of('tpm')}"})
    usage = json.loads(limits.body)["usage"]
    assert 200 <= usage["tokens_last_minute"] < 600  # the real counts (and this read's own estimate)


def test_tokens_in_flight_count_against_tpm_across_processes(servers, fake):
    fake.responder = lambda request: Reply(delay=1.5)  # only the admitted ones reach the fake
    statuses = []

    def send(server) -> None:
        statuses.append(chat(server, "tpm-concurrent", max_tokens=250).status)

    threads = [threading.Thread(target=send, args=(servers[number % 2],)) for number in range(3)]
    try:
        for thread in threads:
            thread.start()
            time.sleep(0.2)  # in order: two estimates of about 280 fit in 600, the third does not
        for thread in threads:
            thread.join(30)
    finally:
        fake.responder = None
    assert sorted(statuses) == [200, 200, 429]


def test_a_budget_stops_spending_within_one_request(servers, fake):
    fake.enqueue(*[Reply(usage={"prompt_tokens": 20, "completion_tokens": 20, "total_tokens": 40})] * 3)
    statuses = [chat(servers[number % 2], "budget").status for number in range(3)]
    assert statuses == [200, 200, 200]  # $0.0008 spent before the third, which crosses $0.001
    refused = chat(servers[1], "budget")
    assert refused.status == 429
    error = json.loads(refused.body)["error"]
    assert error["code"] == "budget_exceeded"
    assert "daily budget of $0.0010" in error["message"] and "resets at" in error["message"]
    limits = fetch(servers[0].url + "/v1/limits", headers={"Authorization": f"Bearer {key_of('budget')}"})
    assert limits.status == 200  # reading the limits is not counted against them: it says why
    assert json.loads(limits.body)["remaining"]["budget_usd_today"] == 0


def test_a_stream_is_charged_its_real_tokens_and_reaches_the_client_unchanged(servers, fake):
    fake.enqueue(Stream(["Hel", "lo"]))
    answer = chat(servers[0], "stream", stream=True)
    assert answer.status == 200
    events = [line[6:] for line in answer.body.decode().splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    # The proxy asked the upstream for usage; the client, who did not, sees none of it.
    assert all("usage" not in chunk for chunk in chunks)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "Hello"
    asked = fake.requests_to("/chat/completions")[-1].body
    assert asked["stream_options"] == {"include_usage": True}
    [record] = [
        line
        for line in servers[0].log_records()
        if line["logger"] == "service.usage" and line["client"] == "stream"
    ]
    assert record["completion_tokens"] > 0 and record["cost_usd"] > 0
    # A stream is settled once its last event has gone out: the other process sees it right after.
    deadline = time.monotonic() + 5
    while True:
        limits = fetch(servers[1].url + "/v1/limits", headers={"Authorization": f"Bearer {key_of('stream')}"})
        spent = json.loads(limits.body)["usage"]["spent_usd_this_month"]
        if spent == pytest.approx(record["cost_usd"]) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert spent == pytest.approx(record["cost_usd"])


def test_the_slots_of_a_killed_process_come_back_after_the_lease(servers, fake, store):
    fake.enqueue(*[Stream(["a", "b"], pause=30)] * 2)
    before = len(fake.requests_to("/chat/completions"))

    def hold_a_slot(server) -> None:
        with contextlib.suppress(http.client.HTTPException, OSError):  # its server is killed
            chat(server, "concurrent", stream=True)

    with running_server(settings_for(fake, store)) as doomed:
        for _ in range(2):  # both slots of the client, held by streams in the doomed process
            threading.Thread(target=hold_a_slot, args=(doomed,), daemon=True).start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(fake.requests_to("/chat/completions")) < before + 2:
            time.sleep(0.05)
        refused = chat(servers[0], "concurrent")
        assert refused.status == 429 and "2 requests in flight" in refused.body.decode()
        os.killpg(doomed.process.pid, signal.SIGKILL)  # master and workers, as a stopped task
        doomed.process.wait(10)
    killed = time.monotonic()
    while chat(servers[0], "concurrent").status == 429:
        assert time.monotonic() - killed < 3 + 5, "the dead process's slots never came back"
        time.sleep(0.25)


def test_when_the_store_fails_each_process_counts_alone_then_shares_again(fake):
    with RedisServer(password=STORE_PASSWORD) as store, running_server(settings_for(fake, store)) as server:
        assert chat(server, "outage").status == 200
        store.stop()
        answered = [chat(server, "outage").status for _ in range(3)]
        assert 200 in answered  # open: still served, counted per process meanwhile
        store.start()
        time.sleep(1.5)  # the store is tried again a second after it failed
        statuses = [chat(server, "outage").status for _ in range(6)]
        assert statuses.count(200) == 4 and statuses.count(429) == 2  # shared again: one window
        log = server.log_records()
    errors = [line for line in log if line["level"] == "ERROR" and "limits store" in line["message"]]
    assert 1 <= len(errors) <= 2  # one per process that met the outage
    assert any("shared again" in line["message"] for line in log)


def test_in_closed_mode_a_failed_store_answers_503(fake):
    with (
        RedisServer(password=STORE_PASSWORD) as store,
        running_server(settings_for(fake, store, AIPROXY_LIMITS_ON_STORE_ERROR="closed")) as server,
    ):
        assert chat(server, "outage").status == 200
        store.stop()
        refused = chat(server, "outage")
    assert refused.status == 503
    assert json.loads(refused.body)["error"]["code"] == "limits_unavailable"
