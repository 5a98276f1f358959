"""The official `openai` client, through a running proxy, chatting with a `bedrock/` model."""

from __future__ import annotations

import openai
import pytest

from testbed.bedrock_runtime import Answer, Fail, FakeBedrock
from testbed.server import running_server

PROFILE = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
MODEL = "bedrock/" + PROFILE


@pytest.fixture(scope="module")
def fake():
    with FakeBedrock() as fake:
        yield fake


@pytest.fixture(scope="module")
def sdk(fake):
    settings = {
        # The standard AWS variables, as ECS or a developer's shell would set them.
        "AWS_REGION": "us-west-2",
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "not-a-real-secret",
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": fake.url,
        "AIPROXY_UPSTREAM_RETRIES": "0",
        "AIPROXY_MODEL_ALIASES": f'{{"claude": "{MODEL}"}}',
    }
    # The SDK is closed before the server stops: an idle keep-alive connection would hold up the
    # server's graceful stop for its whole timeout.
    with (
        running_server(settings) as server,
        openai.OpenAI(base_url=server.url + "/v1", api_key="client-key", max_retries=0, timeout=20) as sdk,
    ):
        yield sdk


def test_chat(sdk, fake):
    fake.enqueue(Answer("Hello from Claude.", input_tokens=9, output_tokens=4))
    completion = sdk.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hello"}], max_tokens=64
    )
    assert completion.choices[0].message.content == "Hello from Claude."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.total_tokens == 13
    sent = fake.requests[-1]
    assert sent.model_id == PROFILE
    assert sent.body["inferenceConfig"] == {"maxTokens": 64}
    assert "/us-west-2/bedrock/aws4_request" in sent.headers["authorization"]


def test_streamed_chat_by_alias(sdk, fake):
    fake.enqueue(Answer("Streamed from Bedrock", input_tokens=5, output_tokens=3))
    stream = sdk.chat.completions.create(
        model="claude",
        messages=[{"role": "user", "content": "Hello"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Streamed from Bedrock"
    assert chunks[-1].usage.total_tokens == 8
    assert fake.requests[-1].operation == "converse-stream"


def test_tool_calls(sdk, fake):
    fake.enqueue(Answer("", tool_uses=[{"toolUseId": "tu-1", "name": "weather", "input": {"city": "Oslo"}}]))
    completion = sdk.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
        tools=[{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
    )
    [call] = completion.choices[0].message.tool_calls
    assert (call.id, call.function.name, call.function.arguments) == ("tu-1", "weather", '{"city": "Oslo"}')
    assert completion.choices[0].finish_reason == "tool_calls"


def test_throttling_is_a_rate_limit_error(sdk, fake):
    fake.enqueue(Fail("ThrottlingException", "Too many requests"))
    with pytest.raises(openai.RateLimitError) as caught:
        sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hello"}])
    assert "throttling" in caught.value.message


def test_stream_chunks_reach_the_client_while_bedrock_is_still_streaming(sdk, fake):
    held = Answer("alpha beta gamma", hold_after=2)  # messageStart and "alpha", then wait
    fake.enqueue(held)
    try:
        stream = sdk.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hello"}], stream=True
        )
        chunks = iter(stream)
        assert next(chunks).choices[0].delta.role == "assistant"
        assert next(chunks).choices[0].delta.content == "alpha"  # the rest is not sent yet
    finally:
        held.gate.set()
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == " beta gamma"
