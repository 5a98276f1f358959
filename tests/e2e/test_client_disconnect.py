"""A client that drops a stream while the upstream is silent is noticed at once (service/gateway/sse.py's
client watch in the gevent server): its in-flight slot and the upstream connection are released
within a second or two, not when the upstream next speaks."""

from __future__ import annotations

import json
import time

import openai
import pytest

from service.governance.key_store import hash_key
from testbed.openai_upstream import Stream
from tests.support.waiting import wait_until

PROVIDER_KEY = "sk-provider-disconnect-test-0001"
CLIENT_KEY = "aip_disconnect-test-streamer-key-000000000001"
SILENCE = 10.0  # how long the upstream stays silent after its first chunk


@pytest.fixture(scope="module")
def server_settings():
    return {
        "OPENAI_API_KEY": PROVIDER_KEY,
        "AIPROXY_CLIENT_KEYS": json.dumps(
            {"streamer": {"keys": [hash_key(CLIENT_KEY)], "max_concurrent": 1}}
        ),
        "AIPROXY_WORKERS": "1",  # limits are counted per process
        "LOG_FORMAT": "json",
    }


@pytest.fixture(scope="module")
def sdk(server):
    with openai.OpenAI(base_url=server.url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=30) as sdk:
        yield sdk


def test_a_dropped_stream_frees_its_slot_and_the_upstream_at_once(sdk, server, fake):
    fake.enqueue(Stream(["never sent"], pause=SILENCE))
    stream = sdk.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Think for a long time about this question"}],
        stream=True,
    )
    first = next(iter(stream))
    assert first.choices[0].delta.role == "assistant"
    # The stream holds the client's one slot while the upstream is silent.
    with pytest.raises(openai.RateLimitError):
        sdk.chat.completions.create(model="gpt-4o-mini", messages=[])
    request_id = stream.response.headers["x-request-id"]
    disconnects = len(fake.disconnects)

    stream.close()  # the client goes away
    dropped = time.monotonic()

    # Its next request is admitted within two seconds, long before the upstream would speak again.
    while True:
        try:
            reply = sdk.chat.completions.create(model="gpt-4o-mini", messages=[])
            break
        except openai.RateLimitError:
            assert time.monotonic() - dropped < 2, "the dropped stream still holds the client's slot"
            time.sleep(0.05)
    assert reply.choices[0].message.content
    assert fake.wait_for_disconnect(count=disconnects + 1, timeout=2 - (time.monotonic() - dropped))
    assert fake.disconnects[-1].body["stream"] is True

    # The dropped stream's usage record says so and charges an estimate, never nothing.
    def record() -> dict | None:
        return next(
            (
                r
                for r in server.log_records()
                if r.get("request_id") == request_id and r["logger"] == "service.usage"
            ),
            None,
        )

    wait_until(record, timeout=5)
    usage = record()
    assert usage["error"] == "client_disconnected"
    assert usage["estimated"] is True
    assert usage["prompt_tokens"] > 0 and usage["total_tokens"] > 0
