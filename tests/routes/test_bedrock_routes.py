"""`bedrock/...` models through the app: chat completions, model lists, assessment (issue 9)."""

from __future__ import annotations

import json
import logging

import pytest

from testbed.bedrock_runtime import Answer, Fail, FakeBedrock, StreamFail
from testbed.openai_upstream import Reply
from tests.support.app import make_app
from tests.support.assessment import CONCEPTS, PROMPT, RUBRIC, tsv_answer

PROFILE = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
CLAUDE = "bedrock/" + PROFILE
KEY = "sk-provider-key-0123456789"
ALIASES = json.dumps({"claude": CLAUDE, "fast": "gpt-4o-mini"})


@pytest.fixture(scope="module")
def fake_bedrock():
    with FakeBedrock() as fake:
        yield fake


def bedrock_app(bedrock_url: str, openai_url: str | None = None, **settings: str):
    values = {
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "not-a-real-secret",
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": bedrock_url,
        "AIPROXY_UPSTREAM_RETRIES": "0",
        "AIPROXY_MODEL_ALIASES": ALIASES,
        "AIPROXY_BEDROCK_MODELS": f"{PROFILE},amazon.nova-lite-v1:0",
    }
    if openai_url:
        values.update(OPENAI_BASE_URL=openai_url, OPENAI_API_KEY=KEY)
    values.update(settings)
    return make_app(**values)


@pytest.fixture
def client(fake_bedrock, fake_openai):
    return bedrock_app(fake_bedrock.url, fake_openai.url).test_client()


def chat(model: str = CLAUDE, **fields) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "Say hello"}], **fields}


def events(response) -> list:
    lines = [line for line in response.get_data(as_text=True).split("\n") if line]
    assert all(line.startswith("data: ") for line in lines), lines
    return [line.removeprefix("data: ") for line in lines]


def test_bedrock_model_is_answered_by_bedrock_in_the_openai_shape(client, fake_bedrock, fake_openai, caplog):
    caplog.set_level(logging.INFO, logger="service.usage")
    fake_bedrock.enqueue(Answer("Hello!", input_tokens=11, output_tokens=2))
    response = client.post("/v1/chat/completions", json=chat(temperature=0.1, stop=["END"]))
    assert response.status_code == 200
    body = response.get_json()
    assert body["object"] == "chat.completion"
    assert body["model"] == CLAUDE
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Hello!", "refusal": None}
    assert body["usage"] == {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}
    sent = fake_bedrock.requests[-1]
    assert (sent.operation, sent.model_id) == ("converse", PROFILE)
    assert sent.body["inferenceConfig"] == {"temperature": 0.1, "stopSequences": ["END"]}
    assert fake_openai.requests == []  # the OpenAI upstream was not involved
    [record] = [r for r in caplog.records if r.name == "service.usage"]
    assert (record.model, record.status, record.total_tokens) == (CLAUDE, 200, 13)


def test_aliases_resolve_for_either_provider(client, fake_bedrock, fake_openai):
    response = client.post("/v1/chat/completions", json=chat("claude"))
    assert response.status_code == 200
    assert response.get_json()["model"] == CLAUDE
    assert fake_bedrock.requests[-1].model_id == PROFILE

    fake_openai.enqueue(Reply(["from openai"]))
    response = client.post("/v1/chat/completions", json=chat("fast"))
    assert response.get_json()["choices"][0]["message"]["content"] == "from openai"
    assert fake_openai.requests[-1].body["model"] == "gpt-4o-mini"


def test_streamed_chat_is_server_sent_events_ending_with_done(client, fake_bedrock, caplog):
    caplog.set_level(logging.INFO, logger="service.usage")
    fake_bedrock.enqueue(Answer("one two three", input_tokens=4, output_tokens=3))
    response = client.post(
        "/v1/chat/completions", json=chat(stream=True, stream_options={"include_usage": True})
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    data = events(response)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert (
        "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
        == "one two three"
    )
    assert chunks[-1]["usage"] == {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}
    assert fake_bedrock.requests[-1].operation == "converse-stream"
    [record] = [r for r in caplog.records if r.name == "service.usage"]
    assert (record.stream, record.total_tokens) == (True, 7)


def test_a_client_that_goes_away_mid_stream_drops_the_bedrock_connection(client, fake_bedrock, caplog):
    caplog.set_level(logging.INFO, logger="service.usage")
    held = Answer("one two three", hold_after=2)
    fake_bedrock.enqueue(held)
    before = len(fake_bedrock.disconnects)
    response = client.post("/v1/chat/completions", json=chat(stream=True), buffered=False)
    try:
        assert next(response.response).startswith(b"data: ")
        response.close()  # what the server does when the client's connection is gone
        assert fake_bedrock.wait_for_disconnect(before + 1, timeout=10)
    finally:
        held.gate.set()
    [record] = [r for r in caplog.records if r.name == "service.usage"]
    assert record.error == "client_disconnected"


def test_a_refusal_before_the_stream_starts_is_a_plain_json_error(client, fake_bedrock):
    fake_bedrock.enqueue(Fail("AccessDeniedException", "not authorized"))
    response = client.post("/v1/chat/completions", json=chat(stream=True))
    assert response.status_code == 403
    error = response.get_json()["error"]
    assert "bedrock:InvokeModelWithResponseStream" in error["message"]
    assert error["type"] == "permission_error"


def test_a_failure_mid_stream_is_an_error_event(client, fake_bedrock):
    fake_bedrock.enqueue(StreamFail("serviceUnavailableException", after=2))
    response = client.post("/v1/chat/completions", json=chat(stream=True))
    data = events(response)
    assert "[DONE]" not in data
    assert json.loads(data[-1])["error"]["message"].startswith("Amazon Bedrock is unavailable")


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("ValidationException", 400),
        ("AccessDeniedException", 403),
        ("ThrottlingException", 429),
        ("ModelNotReadyException", 503),
        ("ServiceUnavailableException", 503),
        ("ModelTimeoutException", 504),
    ],
)
def test_bedrock_errors_keep_the_openai_error_shape(client, fake_bedrock, code, status):
    fake_bedrock.enqueue(Fail(code, "details"))
    response = client.post("/v1/chat/completions", json=chat())
    assert response.status_code == status
    error = response.get_json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code


def test_an_http_image_url_is_a_400_naming_the_part(client, fake_bedrock):
    before = len(fake_bedrock.requests)
    image = {"type": "image_url", "image_url": {"url": "https://example.org/cat.png"}}
    response = client.post("/v1/chat/completions", json=chat(messages=[{"role": "user", "content": [image]}]))
    assert response.status_code == 400
    assert response.get_json()["error"]["param"] == "messages[0].content[0].image_url.url"
    assert len(fake_bedrock.requests) == before


def test_models_list_has_the_upstreams_models_then_bedrock_models_and_aliases(client):
    ids = [m["id"] for m in client.get("/v1/models").get_json()["data"]]
    assert "gpt-4o-mini" in ids
    assert ids[-4:] == [CLAUDE, "bedrock/amazon.nova-lite-v1:0", "claude", "fast"]
    one = client.get("/v1/models/claude")
    assert one.status_code == 200
    assert one.get_json()["owned_by"] == f"alias of {CLAUDE}"
    assert client.get(f"/v1/models/{CLAUDE}").get_json()["owned_by"] == "amazon-bedrock"


def test_without_an_openai_key_the_bedrock_models_are_still_listed_and_served(fake_bedrock):
    client = bedrock_app(fake_bedrock.url).test_client()
    listed = client.get("/v1/models")
    assert listed.status_code == 200
    assert [m["id"] for m in listed.get_json()["data"]] == [
        CLAUDE,
        "bedrock/amazon.nova-lite-v1:0",
        "claude",
        "fast",
    ]
    assert client.post("/v1/chat/completions", json=chat()).status_code == 200
    assert client.post("/v1/chat/completions", json=chat("gpt-4o")).status_code == 503


def test_assessment_with_a_bedrock_model(client, fake_bedrock):
    grades = ("Convincing Evidence", "No Evidence", "Limited Evidence", "Extensive Evidence")
    fake_bedrock.enqueue(Answer(tsv_answer(*grades), input_tokens=100, output_tokens=40))
    fake_bedrock.enqueue(Answer(tsv_answer(*grades, tag="B"), input_tokens=100, output_tokens=40))
    response = client.post(
        "/assessment",
        data={
            "code": "let x = 1;",
            "prompt": PROMPT,
            "rubric": RUBRIC,
            "model": "claude",
            "num-responses": "2",
        },
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["metadata"]["agent"] == "bedrock"
    assert body["metadata"]["usage"]["total_tokens"] == 280
    assert [row["Key Concept"] for row in body["data"]] == list(CONCEPTS)
    assert [row["Grade"] for row in body["data"]] == list(grades)
    assert all(len(row["Votes"]) == 2 for row in body["data"])
    sent = fake_bedrock.requests[-1]
    assert sent.model_id == PROFILE
    assert PROMPT.strip()[:40] in sent.body["system"][0]["text"]
    assert sent.body["messages"][-1]["content"][-1]["text"].strip() == "let x = 1;"


def test_assessment_maps_bedrock_throttling_to_429(client, fake_bedrock):
    fake_bedrock.enqueue(Fail("ThrottlingException", "slow down"))
    response = client.post(
        "/assessment", data={"code": "let x = 1;", "prompt": PROMPT, "rubric": RUBRIC, "model": CLAUDE}
    )
    assert response.status_code == 429
