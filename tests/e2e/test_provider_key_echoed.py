"""An upstream that echoes the proxy's provider key everywhere it can: in streamed events (one key
split across two TCP writes too), in an answer's body and in its headers. Nothing of it reaches
the client of the real server process, and of the upstream's headers only the allow-list
(rate limits, processing time, version, Retry-After, its request id renamed) is relayed."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

import pytest

from testbed.server import running_server
from tests.support.raw_http import RawConnection, RawServer

KEY = "sk-provider-echoed-key-0123456789abcdef"
HALF = len(KEY) // 2
ECHOING_HEADERS = (
    f"openai-organization: org-{KEY}\r\n"
    f"openai-processing-ms: {KEY}\r\n"
    "openai-version: 2020-10-01\r\n"
    f"x-ratelimit-limit-requests: {KEY}\r\n"
    "x-ratelimit-remaining-tokens: 149990\r\n"
    f"x-request-id: req-{KEY}\r\n"
    f"set-cookie: __session={KEY}; Path=/; HttpOnly\r\n"
    f"x-internal: routed-by-{KEY}\r\n"
)
NOT_RELAYED = ("openai-organization", "set-cookie", "x-internal")


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def event(content: str) -> bytes:
    delta = {"choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]}
    return b"data: " + json.dumps(delta).encode() + b"\n\n"


def echo(connection: RawConnection) -> None:
    """Answer each request on the connection, echoing the key it brought."""
    while request := connection.read_request():
        assert f"Authorization: Bearer {KEY}".encode() in request
        if b'"stream": true' in request or b'"stream":true' in request:
            connection.send(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
                + ECHOING_HEADERS.encode()
                + b"\r\n"
            )
            whole = event(f"whole {KEY}.")
            split = event(f"split {KEY}.")
            cut = split.index(KEY.encode()) + HALF
            # Two TCP writes, 0.2 s apart, in two chunks of the chunked body: the key's halves
            # arrive separately.
            connection.send(chunk(whole), chunk(split[:cut]), chunk(split[cut:]), pause=0.2)
            connection.send(chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        else:
            status = b"400 Bad Request" if b"fail" in request else b"200 OK"
            body = json.dumps({"object": "chat.completion", "echo": f"you sent {KEY}", "choices": []})
            if b"fail" in request:
                body = json.dumps({"error": {"message": f"Key {KEY} is not allowed", "type": "x"}})
            connection.send(
                b"HTTP/1.1 "
                + status
                + b"\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n".encode()
                + ECHOING_HEADERS.encode()
                + b"\r\n"
                + body.encode()
            )


@pytest.fixture(scope="module")
def server():
    with (
        RawServer(echo) as upstream,
        running_server({"OPENAI_BASE_URL": upstream.url + "/v1", "OPENAI_API_KEY": KEY}) as server,
    ):
        yield server
        assert upstream.errors == []


def post(server, body: dict) -> tuple[http.client.HTTPResponse, bytes]:
    parts = urlsplit(server.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    response = connection.getresponse()
    return response, response.read()


def assert_key_nowhere(response: http.client.HTTPResponse, body: bytes) -> None:
    assert KEY[:HALF] not in body.decode() and KEY[HALF:] not in body.decode()
    for name, value in response.getheaders():
        assert KEY[:HALF] not in value and KEY[HALF:] not in value, name
    names = {name.lower() for name, _ in response.getheaders()}
    assert names.isdisjoint(NOT_RELAYED)
    # The allow-listed headers are relayed, the key blanked out of them.
    assert response.getheader("openai-processing-ms") == "[FILTERED]"
    assert response.getheader("x-ratelimit-limit-requests") == "[FILTERED]"
    assert response.getheader("x-ratelimit-remaining-tokens") == "149990"
    assert response.getheader("openai-version") == "2020-10-01"
    assert response.getheader("X-Upstream-Request-Id") == "req-[FILTERED]"
    assert not response.getheader("X-Request-Id").startswith("req-")  # the proxy's own


def test_a_stream_that_echoes_the_key_even_split_across_writes_never_shows_it(server):
    response, body = post(server, {"model": "gpt-4o-mini", "messages": [], "stream": True})
    assert response.status == 200
    assert_key_nowhere(response, body)
    events = [json.loads(e.removeprefix(b"data: ")) for e in body.split(b"\n\n")[:-2]]
    contents = [e["choices"][0]["delta"]["content"] for e in events]
    assert contents == ["whole [FILTERED].", "split [FILTERED]."]
    assert body.endswith(b"data: [DONE]\n\n")
    assert KEY not in server.log()


def test_an_answer_that_echoes_the_key_never_shows_it(server):
    response, body = post(server, {"model": "gpt-4o-mini", "messages": []})
    assert response.status == 200
    assert_key_nowhere(response, body)
    assert json.loads(body)["echo"] == "you sent [FILTERED]"


def test_an_error_that_echoes_the_key_never_shows_it(server):
    response, body = post(server, {"model": "gpt-4o-mini", "messages": [], "fail": True})
    assert response.status == 400
    assert_key_nowhere(response, body)
    assert json.loads(body)["error"]["message"] == "Key [FILTERED] is not allowed"
    assert KEY not in server.log()
