"""The OpenAI-compatible routes, through Flask's test client, against the fake upstream."""

from __future__ import annotations

import json
import logging

import pytest

from testbed.openai_upstream import Fail, Hang, Reply, Stream
from testbed.server import free_port
from tests.support.app import make_app

KEY = "sk-provider-key-0123456789"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hi"}]}


def gateway_app(url: str, **settings: str):
    values = {
        "OPENAI_BASE_URL": url,
        "OPENAI_API_KEY": KEY,
        "AIPROXY_UPSTREAM_BACKOFF": "0.01",
        "AIPROXY_UPSTREAM_TIMEOUT": "5",
    }
    values.update(settings)
    return make_app(**values)


@pytest.fixture
def client(fake_openai):
    return gateway_app(fake_openai.url).test_client()


def usage_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "service.usage"]


# --- relaying ----------------------------------------------------------------------------------


def test_chat_body_goes_upstream_byte_for_byte_with_the_provider_key(client, fake_openai):
    raw = b'{"model": "gpt-4o-mini",  "messages": [], "x_unknown_field": {"kept": [1, 2]}}'
    response = client.post(
        "/v1/chat/completions", data=raw, headers={"Authorization": "Bearer client-own-key"}
    )
    assert response.status_code == 200
    sent = fake_openai.requests[-1]
    assert sent.raw == raw
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert "client-own-key" not in json.dumps(sent.headers)


def test_chat_answer_comes_back_unchanged(client, fake_openai):
    upstream_answer = {"id": "x", "object": "chat.completion", "choices": [], "vendor_extra": {"a": 1}}
    fake_openai.enqueue(Reply(body=upstream_answer))
    response = client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 200
    assert response.get_json() == upstream_answer
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.headers["X-Request-Id"]


def test_rate_limit_headers_and_openai_beta_are_passed_along(client, fake_openai):
    fake_openai.enqueue(
        Fail(400, "No", headers={"x-ratelimit-remaining-requests": "0", "x-request-id": "up-1"})
    )
    response = client.post("/v1/chat/completions", json=CHAT, headers={"OpenAI-Beta": "assistants=v2"})
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    assert response.headers["X-Request-Id"] != "up-1"  # the proxy's own id stays
    assert fake_openai.requests[-1].headers["openai-beta"] == "assistants=v2"
    assert fake_openai.requests[-1].headers["x-request-id"] == response.headers["X-Request-Id"]


@pytest.mark.parametrize(
    ("path", "body", "expect"),
    [
        ("/v1/embeddings", {"model": "text-embedding-3-small", "input": ["a", "b"]}, "embedding"),
        ("/v1/responses", {"model": "gpt-4o-mini", "input": "hello"}, "response"),
        ("/v1/completions", {"model": "gpt-3.5-turbo-instruct", "prompt": "Once"}, "text_completion"),
        ("/v1/moderations", {"input": "nice words"}, "modr-fake"),
    ],
)
def test_other_post_routes_are_relayed(client, fake_openai, path, body, expect):
    response = client.post(path, json=body)
    assert response.status_code == 200
    assert expect in response.get_data(as_text=True)
    assert fake_openai.requests[-1].path == path
    assert fake_openai.requests[-1].body == body


def test_models_list_and_one_model(client, fake_openai):
    listed = client.get("/v1/models")
    assert listed.status_code == 200
    assert "gpt-4o-mini" in [m["id"] for m in listed.get_json()["data"]]
    one = client.get("/v1/models/gpt-4o")
    assert one.get_json()["id"] == "gpt-4o"
    missing = client.get("/v1/models/org/no-such-model")
    assert missing.status_code == 404
    assert missing.get_json()["error"]["code"] == "model_not_found"
    assert fake_openai.requests[-1].path == "/v1/models/org/no-such-model"


# --- streaming ---------------------------------------------------------------------------------


def test_stream_is_relayed_as_server_sent_events(client, fake_openai):
    fake_openai.enqueue(Stream(["Hel", "lo"]))
    response = client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Accel-Buffering"] == "no"
    text = response.get_data(as_text=True)
    deltas = [
        json.loads(line[6:])["choices"][0]["delta"].get("content", "")
        for line in text.splitlines()
        if line.startswith("data: {")
    ]
    assert "".join(deltas) == "Hello"
    assert text.rstrip().endswith("data: [DONE]")


def test_stream_cut_off_by_the_upstream_ends_with_an_error_event(client, fake_openai, caplog):
    fake_openai.enqueue(Stream(["a", "b", "c"], close_after=2))
    caplog.set_level(logging.INFO)
    text = client.post("/v1/chat/completions", json={**CHAT, "stream": True}).get_data(as_text=True)
    last = [line for line in text.splitlines() if line.startswith("data:")][-1]
    assert json.loads(last[6:])["error"]["message"] == "The upstream closed the stream before its end."
    assert "[DONE]" not in text
    assert usage_records(caplog)[-1].error == "unreachable"


def test_a_failure_before_streaming_is_a_plain_error(client, fake_openai):
    fake_openai.enqueue(Fail(400, "stream_options requires stream"))
    response = client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert response.status_code == 400
    assert response.get_json()["error"]["message"] == "stream_options requires stream"


# --- failures ----------------------------------------------------------------------------------


def test_upstream_client_error_relayed_with_status_and_body(client, fake_openai):
    fake_openai.enqueue(Fail(400, "Invalid value for 'temperature'", code="invalid_value"))
    response = client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 400
    assert response.get_json()["error"] == {
        "message": "Invalid value for 'temperature'",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_value",
    }
    assert len(fake_openai.requests) == 1


def test_upstream_server_error_relayed_after_the_retries(fake_openai):
    client = gateway_app(fake_openai.url, AIPROXY_UPSTREAM_RETRIES="1").test_client()
    fake_openai.enqueue(Fail(500, "boom 1"), Fail(500, "boom 2"))
    response = client.post("/v1/embeddings", json={"input": "x"})
    assert response.status_code == 500
    assert response.get_json()["error"]["message"] == "boom 2"
    assert len(fake_openai.requests) == 2


def test_upstream_429_relayed_with_retry_after(client, fake_openai):
    fake_openai.enqueue(Fail(429, "Rate limit reached", headers={"Retry-After": "60"}))
    response = client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "60"
    assert response.get_json()["error"]["message"] == "Rate limit reached"


def test_an_upstream_error_page_becomes_a_json_error(client, fake_openai):
    fake_openai.enqueue(Fail(404, raw=b"<html>nginx: not found</html>"))
    response = client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 404
    assert response.get_json()["error"]["message"] == "The upstream answered HTTP 404."


def test_unreachable_upstream_is_502():
    client = gateway_app(f"http://127.0.0.1:{free_port()}/v1", AIPROXY_UPSTREAM_RETRIES="0").test_client()
    response = client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 502
    assert response.get_json()["error"]["code"] == "upstream_unreachable"


def test_slow_upstream_is_504(fake_openai):
    client = gateway_app(fake_openai.url, AIPROXY_UPSTREAM_TIMEOUT="0.3").test_client()
    fake_openai.enqueue(Hang(5))
    response = client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 504
    assert "0.3 seconds" in response.get_json()["error"]["message"]


def test_no_provider_key_is_503_naming_the_setting(fake_openai):
    client = make_app(OPENAI_BASE_URL=fake_openai.url).test_client()
    for response in (client.post("/v1/chat/completions", json=CHAT), client.get("/v1/models")):
        assert response.status_code == 503
        assert "OPENAI_API_KEY" in response.get_json()["error"]["message"]
    assert fake_openai.requests == []


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "empty"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "not an array"),
        (b'"text"', "not a string"),
        (b"\xff\xfe\xfa", "not UTF-8 text"),
        (b'{"model": "m", "seed": ' + b"9" * 5000 + b"}", "an integer of more than 4,300 digits"),
    ],
)
def test_bodies_that_are_not_a_json_object_are_400(client, fake_openai, data, words):
    response = client.post("/v1/chat/completions", data=data, content_type="application/json")
    assert response.status_code == 400
    assert words in response.get_json()["error"]["message"]
    assert fake_openai.requests == []


def test_an_upstream_that_echoes_the_provider_key_never_shows_it(client, fake_openai):
    fake_openai.enqueue(Fail(401, f"Incorrect API key provided: {KEY}"))
    response = client.post("/v1/chat/completions", json=CHAT)
    assert KEY not in response.get_data(as_text=True)


# --- usage records -------------------------------------------------------------------------------


def test_one_usage_record_with_tokens_per_request(client, fake_openai, caplog):
    caplog.set_level(logging.INFO)
    fake_openai.enqueue(Reply(usage={"prompt_tokens": 11, "completion_tokens": 22, "total_tokens": 33}))
    # buffered: read and closed like a server does; the record is written once the answer went out.
    client.post("/v1/chat/completions", json=CHAT, headers={"X-Request-Id": "req-123"}, buffered=True)
    (record,) = usage_records(caplog)
    assert record.request_id == "req-123"
    assert record.client == "anonymous"
    assert record.route == "/v1/chat/completions"
    assert record.model == "gpt-4o-mini"
    assert record.status == 200
    assert (record.prompt_tokens, record.completion_tokens, record.total_tokens) == (11, 22, 33)
    assert record.upstream_ms is not None and record.latency_ms >= record.upstream_ms


def test_usage_of_a_stream_comes_from_its_last_chunk(client, fake_openai, caplog):
    caplog.set_level(logging.INFO)
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    client.post("/v1/chat/completions", json=body).get_data()
    (record,) = usage_records(caplog)
    assert record.stream is True
    assert record.total_tokens == record.prompt_tokens + record.completion_tokens > 0


def test_usage_record_of_a_failure(client, fake_openai, caplog):
    caplog.set_level(logging.INFO)
    fake_openai.enqueue(Fail(400, "nope"))
    client.post("/v1/embeddings", json={"model": "text-embedding-3-small", "input": "x"})
    (record,) = usage_records(caplog)
    assert (record.status, record.error, record.model) == (400, "http", "text-embedding-3-small")


# --- legacy routes -------------------------------------------------------------------------------


def test_legacy_models_is_the_data_array(client):
    response = client.get("/openai/models")
    assert response.status_code == 200
    assert "gpt-4o" in [m["id"] for m in response.get_json()]


def test_legacy_test_openai_says_hello(client, fake_openai):
    fake_openai.enqueue(Reply(["Hello! How can I help?"]))
    response = client.get("/test/openai")
    assert response.get_json() == {"role": "assistant", "content": "Hello! How can I help?"}
    sent = fake_openai.requests[-1].body
    assert sent["messages"] == [{"role": "user", "content": "Hello world"}]
    assert sent["model"] == "gpt-4o-mini"  # AIPROXY_ASSESSMENT_MODEL's default


def test_legacy_test_openai_takes_model_and_api_key(client, fake_openai):
    client.post("/test/openai", data={"model": "gpt-4o", "api-key": "sk-callers-own"})
    sent = fake_openai.requests[-1]
    assert sent.body["model"] == "gpt-4o"
    assert sent.headers["authorization"] == "Bearer sk-callers-own"
    client.post("/test/openai", json={"model": "gpt-4.1"})
    assert fake_openai.requests[-1].body["model"] == "gpt-4.1"


def test_legacy_test_openai_refuses_a_key_no_header_can_carry_without_echoing_it(client, fake_openai):
    response = client.post("/test/openai", data={"api-key": "sk-one two\r\nX-Injected: 1"})
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["param"] == "api-key"
    assert "sk-one" not in response.get_data(as_text=True)
    assert fake_openai.requests == []


def test_legacy_test_openai_with_a_rejected_key(fake_openai):
    fake_openai.api_key = KEY
    client = gateway_app(fake_openai.url).test_client()
    response = client.get("/test/openai?api-key=sk-wrong-key-123")
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "invalid_api_key"


# --- hostile or odd input ------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["/v1/chat/completions", "/v1/embeddings", "/test/openai", "/assessment"])
def test_json_nested_too_deeply_is_a_400_not_a_crash(client, fake_openai, route):
    response = client.post(route, data=b"[" * 50_000, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.get_json()["error"]["type"] == "invalid_request_error"
    assert fake_openai.requests == []


@pytest.mark.parametrize("model_id", ["../files", "gpt-4o/../../files", "a//b", "./x"])
def test_model_ids_cannot_climb_out_of_models(client, fake_openai, model_id):
    response = client.get(f"/v1/models/{model_id}")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "model_not_found"
    assert fake_openai.requests == []


def test_aliases_apply_to_every_relayed_route(fake_openai):
    aliases = json.dumps({"small": "text-embedding-3-small"})
    client = gateway_app(fake_openai.url, AIPROXY_MODEL_ALIASES=aliases).test_client()
    response = client.post("/v1/embeddings", json={"model": "small", "input": "hello"})
    assert response.status_code == 200
    assert fake_openai.requests[-1].body["model"] == "text-embedding-3-small"


def test_a_model_group_whose_models_no_header_can_carry_answers_with_them_escaped(fake_openai):
    # The first model of the group fails over to the second; both names hold what a header cannot.
    group = json.dumps({"odd": ["gpt-\u2603\rx", "gpt\u0000\nx"]})
    client = gateway_app(fake_openai.url, AIPROXY_MODEL_ALIASES=group).test_client()
    fake_openai.enqueue(Fail(503, "down"))
    response = client.post("/v1/chat/completions", json={**CHAT, "model": "odd"})
    assert response.status_code == 200
    assert response.headers["x-aiproxy-deployment"] == "openai/gpt\\x00\\nx"
    assert [r.body["model"] for r in fake_openai.requests] == ["gpt-\u2603\rx", "gpt\u0000\nx"]


def test_bedrock_models_are_refused_outside_chat_completions(client, fake_openai):
    response = client.post("/v1/embeddings", json={"model": "bedrock/amazon.titan-embed", "input": "x"})
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["param"] == "model"
    assert "/v1/chat/completions only" in error["message"]
    assert fake_openai.requests == []


def test_model_list_that_is_not_json_is_relayed_as_it_came(fake_openai):
    client = gateway_app(fake_openai.url, AIPROXY_BEDROCK_MODELS="amazon.nova-lite-v1:0").test_client()
    fake_openai.enqueue(Fail(200, raw=b"plain text models"), path="/models")
    response = client.get("/v1/models")
    assert response.status_code == 200
    assert response.get_data() == b"plain text models"
