"""What a third-party client sees of upstreams that misbehave: streams cut inside an event, and
answers compressed although the proxy asked for none. The official `openai` client against the
real server process and the fake upstream."""

from __future__ import annotations

import gzip
import json
import socket
import time
import urllib.request

import openai
import pytest

from testbed.openai_upstream import Fail, Reply, Stream
from testbed.server import running_server
from tests.support.raw_http import RawConnection, RawServer
from tests.support.waiting import wait_until

KEY = "sk-provider-relay-clients-7Q2W"
TIMEOUT = 1.5  # AIPROXY_UPSTREAM_TIMEOUT: how long the proxy waits for a silent upstream
CUT = b'data: {"id": "x", "obj'  # the start of an event the upstream never finishes


@pytest.fixture(scope="module")
def server_settings():
    return {
        "OPENAI_API_KEY": KEY,
        "AIPROXY_UPSTREAM_TIMEOUT": str(TIMEOUT),
        "AIPROXY_UPSTREAM_BACKOFF": "0.01",
        "LOG_FORMAT": "json",
    }


@pytest.fixture(scope="module")
def sdk(server):
    with openai.OpenAI(base_url=server.url + "/v1", api_key="client-key", max_retries=0, timeout=20) as sdk:
        yield sdk


@pytest.fixture
def gzipping(fake):
    """The fake compresses every answer, whatever the request's Accept-Encoding says."""
    fake.gzip = "always"
    yield fake
    fake.gzip = None


def usage_records(server) -> list[dict]:
    return [r for r in server.log_records() if r["logger"] == "service.usage"]


def usage_of(server, request_id: str) -> dict:
    """The usage record of one request, once written (after its answer went out)."""
    wait_until(lambda: any(r["request_id"] == request_id for r in usage_records(server)), timeout=5)
    return next(r for r in usage_records(server) if r["request_id"] == request_id)


def raw_stream(server, body: dict) -> bytes:
    """A streamed answer's bytes, as any SSE client reads them."""
    request = urllib.request.Request(
        server.url + "/v1/chat/completions",
        json.dumps(body).encode(),
        {"Content-Type": "application/json", "Authorization": "Bearer client-key"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read()


def stream_chat(sdk):
    return sdk.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Count"}], stream=True
    )


# --- a stream cut inside an event -----------------------------------------------------------------


def test_a_stream_the_upstream_closes_inside_an_event_raises_the_sdks_api_error(sdk, fake):
    fake.enqueue(Stream(["one", "two", "three"], close_after=2, partial=CUT))
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream_chat(sdk):
            received.append(chunk.choices[0].delta.content)
    # The whole events came through; the cut one did not become a JSON decoding error.
    assert received == ["", "one"]
    assert "closed the stream before its end" in caught.value.message
    assert not isinstance(caught.value, openai.APIStatusError)  # the status line said 200


def test_a_stream_that_stalls_inside_an_event_raises_the_sdks_api_error(sdk, fake):
    fake.enqueue(Stream(["one", "two"], close_after=2, partial=CUT, stall=30))
    started = time.monotonic()
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream_chat(sdk):
            received.append(chunk.choices[0].delta.content)
    assert received == ["", "one"]
    assert f"sent nothing for {TIMEOUT:g} seconds" in caught.value.message
    assert time.monotonic() - started < TIMEOUT + 5
    assert fake.wait_for_disconnect(timeout=5)  # the proxy let the stalled upstream go


def test_the_events_of_a_cut_stream_end_on_an_event_boundary(server, fake):
    # What any SSE client reads: whole events, the last one the proxy's error, nothing of the cut one.
    fake.enqueue(Stream(["one", "two"], close_after=2, partial=CUT))
    body = raw_stream(server, {"model": "gpt-4o-mini", "messages": [], "stream": True})
    events = body.split(b"\n\n")
    assert events[-1] == b""  # ends with a blank line
    data = [json.loads(event.removeprefix(b"data: ")) for event in events[:-1]]
    assert [d["object"] for d in data[:2]] == ["chat.completion.chunk"] * 2
    assert data[-1]["error"]["code"] == "upstream_unreachable"
    assert b'"obj' not in body.replace(b'"object"', b"")


def test_a_client_that_did_not_ask_for_usage_gets_none_of_it(server, fake):
    # The proxy asks for usage (to record it) and removes it again: the usage chunk and the
    # `"usage": null` an upstream adds to every other chunk once it was asked.
    body = raw_stream(server, {"model": "gpt-4o-mini", "messages": [], "stream": True})
    assert b"usage" not in body
    chunks = [json.loads(event.removeprefix(b"data: ")) for event in body.split(b"\n\n")[:-2]]
    # Every chunk but the usage one, whole: the role, the content, the finish.
    assert [chunk["choices"][0]["finish_reason"] for chunk in chunks][-1] == "stop"
    assert all(chunk["object"] == "chat.completion.chunk" and chunk["choices"] for chunk in chunks)
    assert body.endswith(b"data: [DONE]\n\n")
    assert fake.requests[-1].body["stream_options"] == {"include_usage": True}


# --- what one upstream read brings, in one write --------------------------------------------------


def chunk_event(n: int) -> bytes:
    delta = b'{"index":0,"delta":{"content":"%d"}}' % n
    return b'data: {"object":"chat.completion.chunk","choices":[' + delta + b"]}\n\n"


def in_chunks(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def three_then_a_partial(connection: RawConnection) -> None:
    """Three events and the start of a fourth in one write; the rest 0.5 s later."""
    connection.read_request()
    connection.send(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    fourth = chunk_event(4)
    time.sleep(0.1)
    first = b"".join(in_chunks(chunk_event(n)) for n in (1, 2, 3)) + in_chunks(fourth[:20])
    connection.send(first, in_chunks(fourth[20:] + b"data: [DONE]\n\n") + b"0\r\n\r\n", pause=0.5)


def client_chunks(url: str) -> list[tuple[float, bytes]]:
    """The chunks of a streamed answer's chunked framing, as they reach a raw-socket client."""
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps({"model": "gpt-4o-mini", "messages": [], "stream": True}).encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, data = data.split(b"\r\n\r\n", 1)
        assert b"transfer-encoding: chunked" in head.lower()
        chunks = []
        while True:
            while b"\r\n" not in data:
                data += sock.recv(65536)
            size_line, data = data.split(b"\r\n", 1)
            size = int(size_line, 16)
            while len(data) < size + 2:
                data += sock.recv(65536)
            if not size:
                return chunks
            chunks.append((time.monotonic(), data[:size]))
            data = data[size + 2 :]


def test_the_events_of_one_upstream_read_reach_the_client_in_one_chunk_and_a_partial_one_waits():
    with (
        RawServer(three_then_a_partial) as upstream,
        running_server({"OPENAI_BASE_URL": upstream.url + "/v1", "OPENAI_API_KEY": KEY}) as server,
    ):
        chunks = client_chunks(server.url)
    # One write to the client per upstream read: the three whole events together, then the fourth
    # once its end arrived (with what came in the same read), never a piece of an event.
    assert [data for _, data in chunks] == [
        chunk_event(1) + chunk_event(2) + chunk_event(3),
        chunk_event(4) + b"data: [DONE]\n\n",
    ]
    assert chunks[1][0] - chunks[0][0] > 0.3  # the first went out before the rest had come
    assert upstream.errors == []


# --- compressed answers ------------------------------------------------------------------------


def test_the_proxy_asks_for_plain_answers_and_gets_them(sdk, fake):
    fake.gzip = "asked"  # an upstream that compresses whenever it is allowed to
    try:
        completion = sdk.chat.completions.create(model="gpt-4o-mini", messages=[])
    finally:
        fake.gzip = None
    assert completion.choices[0].message.content
    assert fake.requests[-1].headers["accept-encoding"] == "identity"
    # The same fake does compress for a client that allows it.
    fake.gzip = "asked"
    try:
        request = urllib.request.Request(
            fake.url + "/models", headers={"Authorization": f"Bearer {KEY}", "Accept-Encoding": "gzip"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.headers["Content-Encoding"] == "gzip"
            assert json.loads(gzip.decompress(response.read()))["object"] == "list"
    finally:
        fake.gzip = None


def test_a_gzipping_upstream_gives_a_normal_answer_with_its_usage_recorded(sdk, gzipping, server):
    gzipping.enqueue(Reply(["Compressed, then decoded."]))
    raw = sdk.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "three words here"}]
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "Compressed, then decoded."
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (4, 3)  # role too
    record = usage_of(server, raw.headers["x-request-id"])
    assert (record["prompt_tokens"], record["completion_tokens"], record["total_tokens"]) == (4, 3, 7)
    assert "estimated" not in record and "error" not in record

    raw = sdk.embeddings.with_raw_response.create(
        model="text-embedding-3-small", input=["a", "b"], encoding_format="float"
    )
    assert [len(item.embedding) for item in raw.parse().data] == [8, 8]
    assert usage_of(server, raw.headers["x-request-id"])["prompt_tokens"] == 2


def test_a_gzipped_stream_arrives_event_by_event_with_its_usage(sdk, gzipping, server):
    gzipping.enqueue(Stream(["Com", "pres", "sed"], pause=0.2))
    stream = sdk.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "two words"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    arrivals = [(time.monotonic(), chunk) for chunk in stream]
    request_id = stream.response.headers["x-request-id"]
    chunks = [chunk for _, chunk in arrivals]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Compressed"
    assert chunks[-1].usage.total_tokens == 6
    # Six pauses of 0.2 s: the first chunk was relayed long before the upstream's last.
    assert arrivals[-1][0] - arrivals[0][0] > 0.8
    record = usage_of(server, request_id)
    assert (record["prompt_tokens"], record["completion_tokens"]) == (3, 3)
    assert "estimated" not in record


def test_the_provider_key_is_blanked_out_of_a_compressed_body(sdk, gzipping, server):
    gzipping.enqueue(Reply(body={"object": "chat.completion", "echo": f"you sent {KEY}", "choices": []}))
    answer = sdk.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=[])
    assert answer.http_response.headers.get("content-encoding") is None
    assert json.loads(answer.content)["echo"] == "you sent [FILTERED]"

    gzipping.enqueue(Fail(400, f"The key {KEY} may not use this model"))
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model="gpt-4o-mini", messages=[])
    assert caught.value.message.endswith("The key [FILTERED] may not use this model")
    assert KEY not in server.log()
