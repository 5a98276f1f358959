"""Per-client limits in the real server process, with slow requests held open by a fake upstream."""

import json
import threading
import urllib.error
import urllib.request

import pytest

from service.governance.key_store import hash_key
from testbed.openai_upstream import Stream
from tests.support.http import fetch
from tests.support.waiting import wait_until

PROVIDER_KEY = "sk-provider-limits-test"
BATCH_KEY = "aip_limits-batch-key-000000000000000000000001"
STREAMER_KEY = "aip_limits-streamer-key-0000000000000000000002"
WEB_KEY = "aip_limits-web-key-00000000000000000000000003"
TINY_KEY = "aip_limits-tiny-key-0000000000000000000000004"
STORE = {
    "batch": {"keys": [hash_key(BATCH_KEY)], "max_concurrent": 2},
    "streamer": {"keys": [hash_key(STREAMER_KEY)], "max_concurrent": 1},
    "web": {"keys": [hash_key(WEB_KEY)]},
    "tiny": {"keys": [hash_key(TINY_KEY)], "rpm": 2},
}
SLOW = 1.0  # seconds the fake upstream takes to answer a chat


@pytest.fixture(scope="module")
def server_settings():
    return {
        "OPENAI_API_KEY": PROVIDER_KEY,
        "AIPROXY_CLIENT_KEYS": json.dumps(STORE),
        "AIPROXY_WORKERS": "1",  # limits are counted per process
    }


def call(server, key: str, path: str = "/v1/chat/completions", body: dict | None = None):
    """(status, headers, parsed body) of one request; never raises on an HTTP error status."""
    data = json.dumps(body or {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    response = fetch(
        server.url + path,
        data.encode() if path.startswith("/v1/") else None,
        {"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    # A success may come without a body; an error always has its JSON one.
    raw = response.body if response.status >= 400 else response.body or b"null"
    return response.status, response.headers, json.loads(raw)


def test_max_concurrent_refuses_the_extra_request_and_spares_other_clients(server, fake):
    fake.delay = SLOW
    try:
        results = []
        slow = [threading.Thread(target=lambda: results.append(call(server, BATCH_KEY))) for _ in range(2)]
        for thread in slow:
            thread.start()
        wait_until(lambda: fake.active == 2)  # both of batch's requests are in flight

        status, headers, body = call(server, BATCH_KEY)
        assert status == 429
        assert headers["Retry-After"] == "1"
        assert body["error"]["type"] == "rate_limit_error"
        assert "2 requests in flight" in body["error"]["message"]
        assert fake.active == 2  # the refused request never reached the upstream

        # Another client is served while batch is at its limit.
        status, _, body = call(server, WEB_KEY)
        assert status == 200
        assert body["choices"][0]["message"]["content"]

        for thread in slow:
            thread.join(30)
        assert [status for status, _, _ in results] == [200, 200]
    finally:
        fake.delay = 0
    # Both slots were freed when the answers were sent.
    assert call(server, BATCH_KEY)[0] == 200


def test_a_streamed_answer_holds_its_slot_until_the_stream_ends(server, fake):
    fake.enqueue(Stream(contents=["a", "b", "c", "d"], pause=0.3))
    body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    request = urllib.request.Request(
        server.url + "/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {STREAMER_KEY}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as stream:
        assert stream.status == 200
        assert stream.readline().startswith(b"data: ")  # the stream has started...
        assert call(server, STREAMER_KEY, "/test")[0] == 429  # ...and holds streamer's one slot
        assert call(server, WEB_KEY, "/test")[0] == 200
        rest = stream.read()
    assert b"data: [DONE]" in rest
    # The slot is freed as the server closes the response, just after the last bytes went out.
    wait_until(lambda: call(server, STREAMER_KEY, "/test")[0] == 200, timeout=5)


def test_rpm_refuses_the_extra_request_of_that_client_only(server):
    assert call(server, TINY_KEY, "/test")[0] == 200
    assert call(server, TINY_KEY, "/test")[0] == 200
    status, headers, body = call(server, TINY_KEY, "/test")
    assert status == 429
    assert 1 <= int(headers["Retry-After"]) <= 60
    assert "2 requests a minute" in body["error"]["message"]
    assert call(server, WEB_KEY, "/test")[0] == 200
