"""The Bedrock client against a fake Bedrock runtime over real HTTP (boto3 with endpoint_url)."""

import base64
import socket

import pytest

from service.core.errors import ProviderError, ProxyError
from service.gateway.providers.bedrock import BedrockProvider
from testbed.bedrock_runtime import Answer, Fail, FakeBedrock, Hang, StreamFail, image_bytes
from tests.support.app import make_settings

MODEL_ID = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
PROFILE_ARN = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-5-v1:0"


@pytest.fixture(scope="module")
def fake():
    with FakeBedrock() as fake:
        yield fake


def make_client(endpoint: str, **settings: str) -> BedrockProvider:
    values = {
        "AWS_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "not-a-real-secret",
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": endpoint,
        "AIPROXY_UPSTREAM_RETRIES": "0",
        **settings,
    }
    return BedrockProvider.from_settings(make_settings(**values))


@pytest.fixture
def client(fake):
    return make_client(fake.url)


def chat(model_id=MODEL_ID, **body):
    return {"model": "bedrock/" + model_id, "messages": [{"role": "user", "content": "Say hello"}], **body}


def test_plain_chat_reaches_converse_signed_for_the_configured_region(fake, client):
    fake.enqueue(Answer(input_tokens=7, output_tokens=3))
    completion = client.chat(chat(temperature=0.5, max_tokens=20))
    assert completion["choices"][0]["message"]["content"] == f"Hello from {MODEL_ID}."
    assert completion["choices"][0]["finish_reason"] == "stop"
    assert completion["model"] == "bedrock/" + MODEL_ID
    assert completion["usage"] == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    sent = fake.requests[-1]
    assert sent.operation == "converse"
    assert sent.model_id == MODEL_ID
    assert sent.body["inferenceConfig"] == {"temperature": 0.5, "maxTokens": 20}
    assert "Credential=AKIDEXAMPLE/" in sent.headers["authorization"]
    assert "/eu-west-1/bedrock/aws4_request" in sent.headers["authorization"]


def test_inference_profile_arn_travels_intact(fake, client):
    completion = client.chat(chat(PROFILE_ARN))
    assert fake.requests[-1].model_id == PROFILE_ARN
    assert completion["model"] == "bedrock/" + PROFILE_ARN


def test_image_bytes_reach_bedrock(fake, client):
    png = b"\x89PNG\r\n\x1a\n-pixels-"
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    client.chat(
        {
            **chat(),
            "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}],
        }
    )
    [block] = fake.requests[-1].body["messages"][0]["content"]
    assert block["image"]["format"] == "png"
    assert image_bytes(block) == png


def test_n_choices_come_from_n_calls(fake, client):
    fake.enqueue(Answer("first", output_tokens=1), Answer("second", output_tokens=1))
    before = len(fake.requests)
    completion = client.chat(chat(n=2))
    assert len(fake.requests) - before == 2
    assert sorted(c["message"]["content"] for c in completion["choices"]) == ["first", "second"]
    assert [c["index"] for c in completion["choices"]] == [0, 1]
    assert completion["usage"]["completion_tokens"] == 2


def test_tool_use_comes_back_as_tool_calls(fake, client):
    fake.enqueue(Answer("", tool_uses=[{"toolUseId": "tu1", "name": "weather", "input": {"city": "Oslo"}}]))
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]
    choice = client.chat(chat(tools=tools))["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"][0]["function"]["name"] == "weather"
    assert fake.requests[-1].body["toolConfig"]["tools"][0]["toolSpec"]["name"] == "weather"


def test_stream_relays_converse_stream_events_as_chunks_with_usage(fake, client):
    fake.enqueue(Answer("Hi there friend", input_tokens=7, output_tokens=3))
    stream = client.open_stream(chat(stream=True, stream_options={"include_usage": True}))
    chunks = list(stream)
    assert fake.requests[-1].operation == "converse-stream"
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Hi there friend"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    assert stream.usage == chunks[-1]["usage"]


def test_stream_without_include_usage_sends_no_usage_chunk_but_counts_it(fake, client):
    stream = client.open_stream(chat(stream=True))
    chunks = list(stream)
    assert all(c["choices"] for c in chunks)
    assert all("usage" not in c for c in chunks)
    assert stream.usage["total_tokens"] > 0


def test_streamed_n_choices_arrive_with_their_indexes(fake, client):
    fake.enqueue(Answer("one"), Answer("two"))
    chunks = list(client.open_stream(chat(stream=True, n=2)))
    texts = {0: "", 1: ""}
    for chunk in chunks:
        for choice in chunk["choices"]:
            texts[choice["index"]] += choice["delta"].get("content") or ""
    assert texts == {0: "one", 1: "two"}


def test_stream_chunks_arrive_before_the_stream_ends(fake, client):
    held = Answer("alpha beta gamma", hold_after=2)
    fake.enqueue(held)
    stream = client.open_stream(chat(stream=True))
    chunks = iter(stream)
    assert next(chunks)["choices"][0]["delta"]["role"] == "assistant"
    assert next(chunks)["choices"][0]["delta"]["content"] == "alpha"  # while the fake holds the rest
    held.gate.set()
    rest = list(chunks)
    assert rest[-1]["choices"][0]["finish_reason"] == "stop"


def test_closing_a_stream_early_drops_the_bedrock_connection(fake, client):
    held = Answer("one two three", hold_after=2)
    fake.enqueue(held)
    before = len(fake.disconnects)
    stream = client.open_stream(chat(stream=True))
    next(iter(stream))
    stream.close()
    assert fake.wait_for_disconnect(before + 1, timeout=10)
    held.gate.set()


@pytest.mark.parametrize(
    ("code", "status", "says"),
    [
        ("ValidationException", 400, "rejected the request"),
        ("AccessDeniedException", 403, "bedrock:InvokeModel "),
        ("ResourceNotFoundException", 404, "no model"),
        ("ThrottlingException", 429, "throttling"),
        ("ServiceQuotaExceededException", 429, "throttling"),
        ("ModelNotReadyException", 503, "not ready"),
        ("ServiceUnavailableException", 503, "unavailable"),
        ("ModelTimeoutException", 504, "too long"),
        ("InternalServerException", 502, "InternalServerException"),
        ("ModelErrorException", 502, "ModelErrorException"),
    ],
)
def test_each_bedrock_error_maps_to_its_status(fake, client, code, status, says):
    fake.enqueue(Fail(code, "details from Bedrock"))
    with pytest.raises(ProviderError) as caught:
        client.chat(chat())
    assert caught.value.status == status
    assert says in caught.value.message
    assert caught.value.kind == code
    assert caught.value.code == code


def test_access_denied_on_a_stream_names_the_streaming_permission(fake, client):
    fake.enqueue(
        Fail("AccessDeniedException", "User: arn:aws:sts::123456789012:assumed-role/x is not authorized")
    )
    with pytest.raises(ProviderError) as caught:
        client.open_stream(chat(stream=True))
    assert caught.value.status == 403
    assert "bedrock:InvokeModelWithResponseStream" in caught.value.message
    assert "123456789012" not in caught.value.message  # the account and role stay in the log


def test_an_error_event_mid_stream_raises_mapped(fake, client):
    fake.enqueue(StreamFail("throttlingException", after=2))
    stream = client.open_stream(chat(stream=True))
    received = []
    with pytest.raises(ProviderError) as caught:
        for chunk in stream:
            received.append(chunk)
    assert received  # the start of the answer was relayed before the failure
    assert caught.value.status == 429


def test_a_read_timeout_is_a_504(fake):
    client = make_client(fake.url, AIPROXY_UPSTREAM_TIMEOUT="0.3")
    fake.enqueue(Hang(3))
    with pytest.raises(ProviderError) as caught:
        client.chat(chat())
    assert caught.value.status == 504
    assert "0.3 seconds" in caught.value.message


def test_an_unreachable_endpoint_is_a_502():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket is closed
    client = make_client(f"http://127.0.0.1:{port}")
    with pytest.raises(ProviderError) as caught:
        client.chat(chat())
    assert caught.value.status == 502


def test_botocore_retries_as_configured_and_nothing_more(fake):
    fake.enqueue(Fail("ServiceUnavailableException"))
    before = len(fake.requests)
    completion = make_client(fake.url, AIPROXY_UPSTREAM_RETRIES="1").chat(chat())
    assert completion["choices"][0]["message"]["content"]
    attempts = fake.requests[before:]
    assert len(attempts) == 2
    assert attempts[-1].headers["amz-sdk-request"].endswith("attempt=2; max=2")

    fake.enqueue(Fail("ServiceUnavailableException"))
    before = len(fake.requests)
    with pytest.raises(ProviderError):
        make_client(fake.url, AIPROXY_UPSTREAM_RETRIES="0").chat(chat())
    assert len(fake.requests) - before == 1


def test_a_bad_request_is_refused_before_any_call(fake, client):
    before = len(fake.requests)
    with pytest.raises(ProxyError) as caught:
        client.chat(chat(temperature="warm"))
    assert caught.value.status == 400
    assert len(fake.requests) == before
