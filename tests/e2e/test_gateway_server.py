"""The gateway in the real server process (gunicorn + gevent) against the fake upstream."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

import pytest

from testbed.openai_upstream import Stream
from tests.support.waiting import wait_until

KEY = "sk-provider-key-0123456789"


@pytest.fixture(scope="module")
def server_settings():
    return {"OPENAI_API_KEY": KEY, "LOG_FORMAT": "json", "AIPROXY_MAX_BODY_BYTES": "4096"}


def open_stream(server, body: dict) -> http.client.HTTPResponse:
    parts = urlsplit(server.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.request(
        "POST",
        "/v1/chat/completions",
        body=json.dumps(body),
        headers={"Content-Type": "application/json", "Authorization": "Bearer client-key"},
    )
    return connection.getresponse()


def test_first_chunk_reaches_the_client_while_the_upstream_is_still_streaming(server, fake):
    fake.enqueue(Stream(["one", "two", "three", "four"], pause=0.4))
    response = open_stream(server, {"model": "gpt-4o-mini", "messages": [], "stream": True})
    assert response.status == 200
    assert response.getheader("X-Accel-Buffering") == "no"
    first = response.readline()
    # The fake is still answering (three pauses to go): the proxy did not wait for the end.
    assert first.startswith(b"data: {")
    assert fake.active == 1
    rest = response.read()
    assert rest.rstrip().endswith(b"data: [DONE]")
    assert fake.active == 0


def test_a_client_that_disconnects_makes_the_proxy_close_the_upstream_request(server, fake):
    before = len(fake.disconnects)
    fake.enqueue(Stream(["word"] * 100, pause=0.1))
    response = open_stream(server, {"model": "gpt-4o-mini", "messages": [], "stream": True})
    assert response.readline().startswith(b"data: {")
    response.close()  # the client goes away after the first chunk
    assert fake.wait_for_disconnect(count=before + 1, timeout=10)
    assert fake.disconnects[-1].body["stream"] is True


def test_usage_record_is_a_json_log_line(server, fake):
    body = {"model": "gpt-4o-mini", "messages": [], "stream": True, "stream_options": {"include_usage": True}}
    response = open_stream(server, {**body})
    response.read()

    def usage_records() -> list[dict]:
        return [r for r in server.log_records() if r["logger"] == "service.usage" and r.get("total_tokens")]

    wait_until(usage_records, timeout=5)
    record = usage_records()[-1]
    assert record["route"] == "/v1/chat/completions"
    assert record["stream"] is True
    assert record["status"] == 200
    assert record["total_tokens"] == record["prompt_tokens"] + record["completion_tokens"]
    assert KEY not in server.log()


def post_chunked(server, path: str, pieces: list[bytes]) -> http.client.HTTPResponse:
    """POST a body in chunked transfer encoding: no Content-Length for the proxy to check first."""
    parts = urlsplit(server.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.request(
        "POST",
        path,
        body=iter(pieces),
        headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        encode_chunked=True,
    )
    return connection.getresponse()


def test_a_chunked_body_is_relayed_whole_and_one_over_the_limit_is_413(server, fake):
    empty = json.dumps({"model": "text-embedding-3-small", "input": ""}).encode()
    body = json.dumps({"model": "text-embedding-3-small", "input": "y" * (4096 - len(empty))}).encode()
    assert len(body) == 4096  # AIPROXY_MAX_BODY_BYTES exactly
    response = post_chunked(server, "/v1/embeddings", [body[:1000], body[1000:2000], body[2000:]])
    assert response.status == 200
    assert json.loads(response.read())["object"] == "list"
    assert fake.requests[-1].raw == body
    sent = len(fake.requests)

    too_large = json.dumps({"model": "text-embedding-3-small", "input": "y" * 5000}).encode()
    response = post_chunked(server, "/v1/embeddings", [too_large[:2500], too_large[2500:]])
    assert response.status == 413
    assert json.loads(response.read())["error"]["message"] == "The request body is too large."
    assert len(fake.requests) == sent


def test_a_chunked_body_over_the_limit_is_413_at_flasks_routes_too(server, fake):
    too_large = json.dumps({"model": "gpt-4o-mini", "note": "z" * 5000}).encode()
    response = post_chunked(server, "/test/openai", [too_large[:2500], too_large[2500:]])
    assert response.status == 413
    assert json.loads(response.read())["error"]["message"] == "The request body is too large."
