"""The official `openai` Python client, pointed at a running proxy, against the fake upstream."""

from __future__ import annotations

import openai
import pytest

from testbed.openai_upstream import Fail, Reply, Stream

KEY = "sk-provider-key-0123456789"


@pytest.fixture(scope="module")
def server_settings():
    return {"OPENAI_API_KEY": KEY, "AIPROXY_UPSTREAM_BACKOFF": "0.01"}


@pytest.fixture(scope="module")
def sdk(server):
    # The SDK's own key is the client's key, never the provider's; max_retries=0 so each
    # test sees exactly what the proxy answered.
    with openai.OpenAI(base_url=server.url + "/v1", api_key="client-key", max_retries=0, timeout=20) as sdk:
        yield sdk


def test_chat(sdk, fake):
    fake.enqueue(Reply(["Hi there!"]))
    completion = sdk.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}]
    )
    assert completion.choices[0].message.content == "Hi there!"
    assert completion.usage.total_tokens > 0
    assert fake.requests[-1].headers["authorization"] == f"Bearer {KEY}"


def test_streamed_chat(sdk, fake):
    fake.enqueue(Stream(["Str", "eam", "ed"], pause=0.05))
    stream = sdk.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Hello"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Streamed"
    assert chunks[-1].usage.completion_tokens == 3


def test_embeddings(sdk):
    result = sdk.embeddings.create(model="text-embedding-3-small", input=["one", "two"])
    assert [item.index for item in result.data] == [0, 1]
    assert len(result.data[0].embedding) == 8


def test_models_list(sdk):
    ids = [model.id for model in sdk.models.list()]
    assert "gpt-4o-mini" in ids


def test_upstream_400_is_a_bad_request_error_with_the_upstreams_message(sdk, fake):
    fake.enqueue(Fail(400, "Invalid 'messages': empty array.", code="empty_array"))
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model="gpt-4o-mini", messages=[])
    assert caught.value.status_code == 400
    assert caught.value.body["message"] == "Invalid 'messages': empty array."
    assert caught.value.message.endswith("Invalid 'messages': empty array.")
    assert caught.value.code == "empty_array"


def test_a_stream_the_upstream_breaks_off_raises_in_the_sdk(sdk, fake):
    fake.enqueue(Stream(["a", "b", "c"], close_after=2))
    stream = sdk.chat.completions.create(model="gpt-4o-mini", messages=[], stream=True)
    with pytest.raises(openai.APIError, match="closed the stream before its end"):
        list(stream)


def test_the_sdks_stream_helper_assembles_the_final_completion(sdk, fake):
    # The helper insists on OpenAI's chunk shapes (a finish_reason for every choice at the end).
    fake.enqueue(Stream(["Hel", "per"]))
    with sdk.chat.completions.stream(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}]
    ) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.content == "Helper"
    assert final.choices[0].finish_reason == "stop"
