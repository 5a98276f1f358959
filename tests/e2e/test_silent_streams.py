"""Streams whose provider sent one chunk and then went silent (a model thinking for minutes), in the
real server process with JSON logs.

At shutdown (SIGTERM, a grace period of 3 s): the worker used to be killed at the end of the grace
period with such streams still open, so their clients saw the connection drop with no `[DONE]` and
no error event, and the requests left no access line and no usage record. Now each client gets an
error event in the OpenAI shape before the connection closes and each request writes both lines,
while a stream that ends within the grace period ends as usual.

A client that leaves such a stream: the proxy notices at once, not when the provider speaks
again, and closes its request to the provider.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import closing

import pytest

from testbed.openai_upstream import FakeOpenAI, Recorded, Stream
from testbed.proxy import proxy_with_fake_openai
from testbed.server import RunningServer, running_server
from tests.support.waiting import wait_until

SILENT = 4  # streams whose provider goes silent after one chunk
GRACE = 3  # AIPROXY_GRACEFUL_TIMEOUT


def provider(request: Recorded) -> Stream:
    """Silent after its first chunk when asked to think; else four chunks in under a second."""
    said = request.body["messages"][0]["content"] if isinstance(request.body, dict) else ""
    if said == "think for a long time":
        return Stream(["Thinking"], pause=600)  # its first chunk (the role), then silence
    # Seven events 0.1 s apart: done long before the streams are cut (1.5 s after SIGTERM).
    return Stream(["One", " two", " three", " four"], pause=0.1, usage=True)


class StreamClient(threading.Thread):
    """One streamed chat over a raw socket; keeps every byte until the server closes."""

    def __init__(self, url: str, request_id: str, content: str) -> None:
        super().__init__(daemon=True)
        self.request_id = request_id
        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        body = json.dumps(
            {
                "model": "gpt-4o-mini",
                "stream": True,
                "stream_options": {"include_usage": True},
                "messages": [{"role": "user", "content": content}],
            }
        ).encode()
        self.sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\n"
            + f"X-Request-Id: {request_id}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        self.received = b""
        self.closed_at: float | None = None

    def run(self) -> None:
        with closing(self.sock):
            while True:
                try:
                    chunk = self.sock.recv(65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    self.closed_at = time.monotonic()
                    return
                self.received += chunk

    def events(self) -> list[bytes]:
        """The `data:` payloads of the stream, in order (the chunked framing removed)."""
        head, _, body = self.received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        return [line[6:] for line in b"".join(_chunks(body)).split(b"\n") if line.startswith(b"data: ")]


def _chunks(body: bytes) -> Iterator[bytes]:
    """The chunks of a chunked body, up to where it stops (it may be cut short)."""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            return
        yield rest[:size]
        body = rest[size + 2 :]


@pytest.fixture(scope="module")
def stopped_server() -> Iterator[tuple[RunningServer, list[StreamClient], StreamClient, float]]:
    settings = {
        "OPENAI_API_KEY": "sk-provider-key-0123456789",
        "LOG_FORMAT": "json",
        "AIPROXY_GRACEFUL_TIMEOUT": str(GRACE),
        "AIPROXY_WORKERS": "1",
    }
    with FakeOpenAI(api_key=settings["OPENAI_API_KEY"]) as fake:
        fake.responder = provider
        with running_server({"OPENAI_BASE_URL": fake.url, **settings}) as server:
            silent = [StreamClient(server.url, f"silent-{n}", "think for a long time") for n in range(SILENT)]
            for client in silent:
                client.start()
            # Every silent stream has its first chunk; then one that ends within the grace period.
            wait_until(lambda: all(b'"role"' in c.received for c in silent), timeout=30)
            finishing = StreamClient(server.url, "finishing", "count to four")
            finishing.start()
            wait_until(lambda: len(fake.requests) == SILENT + 1, timeout=30)
            stopped = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            for client in [*silent, finishing]:
                client.join(timeout=GRACE + 10)
            assert server.process.wait(timeout=GRACE + 10) == 0
            yield server, silent, finishing, stopped


def test_streams_cut_at_shutdown_end_with_an_error_event(stopped_server):
    _, silent, _, stopped = stopped_server
    for client in silent:
        assert client.closed_at is not None, f"{client.request_id} was never closed"
        assert client.closed_at - stopped < GRACE + 1
        events = client.events()
        assert json.loads(events[0])["choices"][0]["delta"]["role"] == "assistant"  # the one chunk
        assert events[-1] != b"[DONE]"
        error = json.loads(events[-1])["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert (error["type"], error["code"]) == ("service_unavailable", "server_shutting_down")
        assert "shutting down" in error["message"]


def test_streams_cut_at_shutdown_write_their_access_line_and_usage_record(stopped_server):
    server, silent, _, _ = stopped_server
    records = server.log_records()
    for client in silent:
        mine = [r for r in records if r.get("request_id") == client.request_id]
        (access,) = [r for r in mine if r["logger"] == "service.access"]
        assert access["message"] == "POST /v1/chat/completions 200"
        (usage,) = [r for r in mine if r["logger"] == "service.usage"]
        assert (usage["error"], usage["stream"], usage["status"]) == ("shutdown", True, 200)
        assert usage["completion_tokens"] >= 1 and usage["estimated"] is True


def test_a_stream_that_ends_within_the_grace_period_is_unaffected(stopped_server):
    server, _, finishing, _ = stopped_server
    events = finishing.events()
    assert events[-1] == b"[DONE]"
    assert not any(b'"error"' in event for event in events)
    assert "".join(
        json.loads(e)["choices"][0]["delta"].get("content", "")
        for e in events[:-1]
        if json.loads(e)["choices"]
    ) == ("One two three four")
    records = [r for r in server.log_records() if r.get("request_id") == "finishing"]
    (usage,) = [r for r in records if r["logger"] == "service.usage"]
    assert "error" not in usage and "estimated" not in usage
    assert usage["completion_tokens"] == 4
    assert [r["message"] for r in records if r["logger"] == "service.access"] == [
        "POST /v1/chat/completions 200"
    ]


def test_a_client_that_leaves_a_silent_stream_frees_it_at_once():
    settings = {"OPENAI_API_KEY": "sk-provider-key-0123456789", "LOG_FORMAT": "json"}
    with proxy_with_fake_openai(settings) as (fake, server):
        fake.responder = provider
        client = StreamClient(server.url, "leaves", "think for a long time")
        client.start()
        wait_until(lambda: b'"role"' in client.received, timeout=30)
        client.sock.shutdown(socket.SHUT_RDWR)  # the client goes away; the provider stays silent
        assert fake.wait_for_disconnect(timeout=5), "the proxy kept waiting on the silent provider"
        wait_until(lambda: any(r.get("request_id") == "leaves" for r in _usage(server)), timeout=5)
        (usage,) = [r for r in _usage(server) if r.get("request_id") == "leaves"]
        assert usage["error"] == "client_disconnected"


def _usage(server: RunningServer) -> list[dict]:
    return [r for r in server.log_records() if r["logger"] == "service.usage"]
