"""The upstream client against the fake OpenAI upstream: retries, backoff, Retry-After, errors."""

from __future__ import annotations

import json
import re
import socket
import ssl
import threading
import time
import zlib
from email.utils import formatdate

import pytest
import trustme

from service.core.errors import ProviderError, error_answer
from service.gateway.providers.openai import OpenAICompatible
from service.gateway.providers.openai.errors import upstream_message
from service.gateway.providers.openai.headers import parse_retry_after
from service.governance.usage import ProviderCall
from testbed.openai_upstream import Fail, FakeOpenAI, Hang, Reply, Stream
from testbed.server import free_port
from tests.support.raw_http import RawConnection, RawServer

KEY = "sk-provider-key-0123456789"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}


class SleepLog:
    """Sleeps for real (briefly, backoffs are small here) and remembers each delay."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        time.sleep(seconds)


class Client(OpenAICompatible):
    """The upstream client, with a chat call that relays CHAT as a client's request would be."""

    def chat_completion(self, body: dict, *, api_key: str | None = None) -> dict:
        return self.request(
            "POST", "/chat/completions", body=json.dumps(body).encode(), api_key=api_key
        ).json()


def make_client(url: str, sleep: SleepLog | None = None, **options) -> Client:
    values = {"retries": 2, "backoff": 0.01, "backoff_max": 1.0, "timeout": 5.0, "connect_timeout": 2.0}
    values.update(options)
    return Client(name="openai", base_url=url, key_provider=lambda: KEY, sleep=sleep or SleepLog(), **values)


def events(stream):
    """An open upstream stream as the relay reads it: per upstream read, its whole events."""
    return stream.chunks(ProviderCall(None, stream=True), strip_usage=False)


def test_chat_completion_returns_the_answer_and_sends_the_provider_key(fake_openai):
    fake_openai.enqueue(Reply(["first", "second"]))
    answer = make_client(fake_openai.url).chat_completion(CHAT)
    assert [c["message"]["content"] for c in answer["choices"]] == ["first", "second"]
    sent = fake_openai.requests[-1]
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.body == CHAT


def test_a_callers_key_replaces_the_configured_one(fake_openai):
    make_client(fake_openai.url).chat_completion(CHAT, api_key="sk-callers-own")
    assert fake_openai.requests[-1].headers["authorization"] == "Bearer sk-callers-own"


def test_retries_server_errors_and_429_then_succeeds(fake_openai):
    fake_openai.enqueue(Fail(500), Fail(429, "busy"))
    sleep = SleepLog()
    answer = make_client(fake_openai.url, sleep).chat_completion(CHAT)
    assert answer["object"] == "chat.completion"
    assert len(fake_openai.requests) == 3
    assert len(sleep.delays) == 2


def test_backoff_doubles_with_jitter(fake_openai):
    fake_openai.enqueue(Fail(503), Fail(503), Fail(503), Fail(503))
    sleep = SleepLog()
    with pytest.raises(ProviderError) as caught:
        make_client(fake_openai.url, sleep, retries=3, backoff=0.02).chat_completion(CHAT)
    assert caught.value.kind == "http" and caught.value.status == 503
    assert len(fake_openai.requests) == 4
    # Retry k waits between half and all of backoff * 2**(k-1).
    for k, delay in enumerate(sleep.delays, start=1):
        ceiling = 0.02 * 2 ** (k - 1)
        assert ceiling / 2 <= delay <= ceiling


def test_retry_after_is_honoured(fake_openai):
    fake_openai.enqueue(Fail(429, "slow down", headers={"Retry-After": "0.3"}))
    sleep = SleepLog()
    make_client(fake_openai.url, sleep).chat_completion(CHAT)
    assert sleep.delays == [0.3]
    assert len(fake_openai.requests) == 2


def test_a_retry_after_longer_than_the_backoff_limit_is_answered_at_once(fake_openai):
    fake_openai.enqueue(Fail(429, "Rate limit reached", headers={"Retry-After": "30"}))
    sleep = SleepLog()
    with pytest.raises(ProviderError) as caught:
        make_client(fake_openai.url, sleep, backoff_max=2).chat_completion(CHAT)
    assert caught.value.status == 429
    assert caught.value.retry_after == 30 and caught.value.headers["Retry-After"] == "30"
    assert caught.value.message == "Rate limit reached"
    assert sleep.delays == []
    assert len(fake_openai.requests) == 1


def test_client_errors_are_not_retried_and_carry_the_upstream_message_and_body(fake_openai):
    fake_openai.enqueue(Fail(400, "The model `nope` does not exist", code="model_not_found"))
    with pytest.raises(ProviderError) as caught:
        make_client(fake_openai.url).chat_completion(CHAT)
    error = caught.value
    assert (error.kind, error.status, error.message) == ("http", 400, "The model `nope` does not exist")
    assert json.loads(error.provider_body)["error"]["code"] == "model_not_found"
    assert len(fake_openai.requests) == 1


def test_no_retries_when_the_count_is_zero(fake_openai):
    fake_openai.enqueue(Fail(502))
    with pytest.raises(ProviderError):
        make_client(fake_openai.url, retries=0).chat_completion(CHAT)
    assert len(fake_openai.requests) == 1


def test_an_unreachable_upstream_is_retried_then_reported():
    sleep = SleepLog()
    with pytest.raises(ProviderError) as caught:
        make_client(f"http://127.0.0.1:{free_port()}/v1", sleep).chat_completion(CHAT)
    assert caught.value.kind == "unreachable"
    assert len(sleep.delays) == 2


def test_a_slow_upstream_times_out_without_a_retry(fake_openai):
    fake_openai.enqueue(Hang(5))
    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        make_client(fake_openai.url, timeout=0.3).chat_completion(CHAT)
    assert caught.value.kind == "timeout"
    assert "0.3 seconds" in caught.value.message
    assert time.monotonic() - started < 2
    assert len(fake_openai.requests) == 1


def test_no_key_makes_no_request(fake_openai):
    client = Client(name="openai", base_url=fake_openai.url, key_provider=lambda: None)
    with pytest.raises(ProviderError) as caught:
        client.chat_completion(CHAT)
    assert caught.value.kind == "no_key"
    assert "OPENAI_API_KEY" in caught.value.message
    assert fake_openai.requests == []


def test_an_upstream_that_echoes_the_key_gets_it_blanked_out(fake_openai):
    fake_openai.enqueue(Fail(400, f"Your key {KEY} cannot use this model"))
    with pytest.raises(ProviderError) as caught:
        make_client(fake_openai.url).chat_completion(CHAT)
    assert KEY not in caught.value.message
    assert KEY.encode() not in caught.value.provider_body
    assert "[FILTERED]" in caught.value.message


def test_a_refused_configured_key_is_the_operators_problem_and_never_quoted(fake_openai):
    fake_openai.enqueue(Fail(401, f"Incorrect API key provided: {KEY[:6]}...{KEY[-4:]}"))
    with pytest.raises(ProviderError) as caught:
        make_client(fake_openai.url).chat_completion(CHAT)
    assert (caught.value.status, caught.value.kind) == (502, "auth_failed")
    answered = error_answer(caught.value).content().decode()
    assert "Incorrect API key" not in answered and KEY[-4:] not in answered
    assert "credentials" in json.loads(answered)["error"]["message"]


def test_a_stream_yields_chunks_as_they_arrive(fake_openai):
    fake_openai.enqueue(Stream(["a", "b", "c"], pause=0.2))
    stream = make_client(fake_openai.url).stream("POST", "/chat/completions", body=b'{"stream": true}')
    arrivals = []
    try:
        for chunk in events(stream):
            arrivals.append((time.monotonic(), chunk))
    finally:
        stream.close()
    data = b"".join(chunk for _, chunk in arrivals)
    assert data.endswith(b"data: [DONE]\n\n")
    # The first chunk came well before the last: nothing waited for the whole stream.
    assert arrivals[-1][0] - arrivals[0][0] > 0.5


def test_a_stream_is_retried_while_opening(fake_openai):
    fake_openai.enqueue(Fail(503), Stream(["ok"]))
    stream = make_client(fake_openai.url).stream("POST", "/chat/completions", body=b'{"stream": true}')
    try:
        assert b'"ok"' in b"".join(events(stream))
    finally:
        stream.close()
    assert len(fake_openai.requests) == 2


def test_a_stream_cut_off_midway_raises_unreachable(fake_openai):
    fake_openai.enqueue(Stream(["a", "b", "c", "d"], close_after=2))
    stream = make_client(fake_openai.url).stream("POST", "/chat/completions", body=b'{"stream": true}')
    with pytest.raises(ProviderError) as caught:
        for _ in events(stream):
            pass
    stream.close()
    assert caught.value.kind == "unreachable"
    assert len(fake_openai.requests) == 1  # never retried once bytes flowed


def test_a_stream_that_stalls_raises_timeout(fake_openai):
    fake_openai.enqueue(Stream(["a", "b"], pause=3))
    stream = make_client(fake_openai.url, timeout=0.3).stream("POST", "/chat/completions", body=b"{}")
    with pytest.raises(ProviderError) as caught:
        for _ in events(stream):
            pass
    stream.close()
    assert caught.value.kind == "timeout"


def test_closing_a_stream_early_closes_the_upstream_connection(fake_openai):
    fake_openai.enqueue(Stream(["a"] * 50, pause=0.1))
    stream = make_client(fake_openai.url).stream("POST", "/chat/completions", body=b"{}")
    next(iter(events(stream)))
    stream.close()
    assert fake_openai.wait_for_disconnect(timeout=5)


def test_retry_after_forms():
    assert parse_retry_after({"retry-after": "2"}) == 2
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    in_a_minute = parse_retry_after({"retry-after": formatdate(time.time() + 60, usegmt=True)})
    assert 55 < in_a_minute <= 60
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


def test_upstream_messages_from_various_bodies():
    assert upstream_message(b'{"error": {"message": "bad"}}', 400) == "bad"
    assert upstream_message(b'{"error": "plain"}', 400) == "plain"
    assert upstream_message(b'{"detail": "vllm says no"}', 400) == "vllm says no"
    assert upstream_message(b"model overloaded", 503) == "model overloaded"
    assert upstream_message(b"<html>Bad Gateway</html>", 502) == "The upstream answered HTTP 502."
    assert upstream_message(b"", 500) == "The upstream answered HTTP 500."


# --- the connection pool (service/gateway/providers/http_pool.py) ---------------------------------------


def test_the_connection_is_kept_and_reused(fake_openai):
    client = make_client(fake_openai.url)
    for _ in range(3):
        client.chat_completion(CHAT)
    assert len({request.peer for request in fake_openai.requests}) == 1


def read_request_head(connection: socket.socket) -> tuple[bytes, bytes]:
    """Read until the end of a request's head; the head and whatever body came with it."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += connection.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


def test_a_connection_the_upstream_closed_while_idle_is_replaced_without_a_retry():
    # A raw server that promises keep-alive, then closes each connection once it has answered:
    # what an upstream (or a load balancer in front of it) does to connections left idle.
    listener = socket.create_server(("127.0.0.1", 0))
    closed = threading.Semaphore(0)

    def serve() -> None:
        for _ in range(2):
            connection, _ = listener.accept()
            with connection:
                head, body = read_request_head(connection)
                length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))
                while len(body) < length:
                    body += connection.recv(65536)
                answer = json.dumps({"object": "chat.completion", "choices": []}).encode()
                connection.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(answer)}\r\n\r\n".encode()
                    + answer
                )
            closed.release()

    threading.Thread(target=serve, daemon=True).start()
    sleep = SleepLog()
    client = make_client(f"http://127.0.0.1:{listener.getsockname()[1]}/v1", sleep)
    try:
        client.chat_completion(CHAT)
        assert closed.acquire(timeout=5)
        time.sleep(0.05)  # the close reaches the client's pooled socket
        assert client.chat_completion(CHAT)["object"] == "chat.completion"
        assert sleep.delays == []  # a fresh connection, not a failed attempt and a retry
    finally:
        listener.close()


def raw_upstream(answer: bytes) -> str:
    """A server that reads one request, sends `answer` as it is and closes; its base URL."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with listener, listener.accept()[0] as connection:
            read_request_head(connection)
            connection.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}/v1"


BROKEN_ANSWERS = {
    "body shorter than its length": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789",
    "chunked body cut off": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    "not HTTP": b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    "closed without a byte": b"",
}


@pytest.mark.parametrize("answer", BROKEN_ANSWERS.values(), ids=BROKEN_ANSWERS.keys())
@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
def test_a_broken_answer_is_unreachable_at_once_never_a_hang(answer, streamed):
    client = make_client(raw_upstream(answer), retries=0, timeout=10)
    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        if streamed:
            stream = client.stream("POST", "/chat/completions", body=b"{}")
            try:
                b"".join(events(stream))
            finally:
                stream.close()
        else:
            client.chat_completion(CHAT)
    assert caught.value.kind == "unreachable"
    assert "(" not in caught.value.message.split("(", 1)[-1]  # a plain reason, no parser internals
    assert time.monotonic() - started < 2


def compressed_answer(body: bytes, encoding: str, wbits: int, stream: bool = False) -> bytes:
    compressor = zlib.compressobj(wbits=wbits)
    data = compressor.compress(body) + compressor.flush()
    kind = b"text/event-stream" if stream else b"application/json"
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: "
        + kind
        + b"\r\nContent-Encoding: "
        + encoding.encode()
        + f"\r\nContent-Length: {len(data)}\r\n\r\n".encode()
        + data
    )


# (Content-Encoding, zlib's wbits): gzip, deflate as the RFC says (zlib) and as some servers send it (raw).
ENCODINGS = {"gzip": ("gzip", 31), "deflate": ("deflate", 15), "raw deflate": ("deflate", -15)}


@pytest.mark.parametrize(("encoding", "wbits"), ENCODINGS.values(), ids=ENCODINGS.keys())
def test_a_compressed_answer_is_decoded_and_redacted(encoding, wbits):
    body = json.dumps({"object": "chat.completion", "echo": KEY, "choices": []}).encode()
    client = make_client(raw_upstream(compressed_answer(body, encoding, wbits)), retries=0)
    assert client.chat_completion(CHAT)["echo"] == "[FILTERED]"


@pytest.mark.parametrize(("encoding", "wbits"), ENCODINGS.values(), ids=ENCODINGS.keys())
def test_a_compressed_stream_is_decoded_into_whole_events(encoding, wbits):
    body = b'data: {"n": 1}\n\ndata: {"key": "' + KEY.encode() + b'"}\n\ndata: [DONE]\n\n'
    client = make_client(raw_upstream(compressed_answer(body, encoding, wbits, stream=True)), retries=0)
    stream = client.stream("POST", "/chat/completions", body=b"{}")
    try:
        assert b"".join(events(stream)) == (
            b'data: {"n": 1}\n\ndata: {"key": "[FILTERED]"}\n\ndata: [DONE]\n\n'
        )
    finally:
        stream.close()


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 4\r\n\r\n\x0b\x01\x80{",
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 9\r\n\r\nnot gzip!",
    ],
    ids=["unknown encoding", "not what it says"],
)
def test_an_answer_the_proxy_cannot_decode_is_a_bad_answer_never_relayed(answer, streamed):
    client = make_client(raw_upstream(answer), retries=0)
    with pytest.raises(ProviderError) as caught:
        if streamed:
            stream = client.stream("POST", "/chat/completions", body=b"{}")
            try:
                list(events(stream))
            finally:
                stream.close()
        else:
            client.chat_completion(CHAT)
    assert (caught.value.status, caught.value.provider) == (502, "openai")
    assert "br" in caught.value.message or "could not be decoded" in caught.value.message


def test_real_threads_share_one_client(fake_openai):
    # The accuracy lab grades with worker threads (no gevent monkey-patching): each thread gets
    # connections of its own from the same client.
    client = make_client(fake_openai.url)
    answers: list[dict] = []

    def grade() -> None:
        for _ in range(5):
            answers.append(client.chat_completion(CHAT))

    threads = [threading.Thread(target=grade) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert len(answers) == 20
    assert all(answer["object"] == "chat.completion" for answer in answers)


def test_a_header_value_with_a_line_break_is_not_forwarded(fake_openai):
    make_client(fake_openai.url).request(
        "GET", "/models", headers={"OpenAI-Beta": "assistants=v2\r\nX-Injected: yes", "X-Request-Id": "r-1"}
    )
    sent = fake_openai.requests[-1].headers
    assert "x-injected" not in sent and "openai-beta" not in sent
    assert sent["x-request-id"] == "r-1"


@pytest.mark.parametrize(
    "bad_key", ["sk-with space-0123", "sk-line-break\r\nX-Injected: 1", "sk-ünïcode-0123"]
)
def test_a_key_that_cannot_go_in_a_header_is_refused_without_being_shown(fake_openai, bad_key):
    with pytest.raises(ProviderError) as caught:
        make_client(fake_openai.url).chat_completion(CHAT, api_key=bad_key)
    assert caught.value.kind == "no_key"
    assert bad_key not in caught.value.message
    assert fake_openai.requests == []


# --- HTTPS upstreams --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate_authority():
    return trustme.CA()


@pytest.fixture
def ca_trusted(certificate_authority, tmp_path, monkeypatch):
    """The test CA added the way an operator adds a private one: SSL_CERT_FILE."""
    bundle = tmp_path / "ca.pem"
    certificate_authority.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    return certificate_authority


def tls_upstream(ca: trustme.CA, name: str) -> FakeOpenAI:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(context)
    return FakeOpenAI(tls=context)


def test_an_https_upstream_is_trusted_through_the_system_trust_store(ca_trusted):
    with tls_upstream(ca_trusted, "127.0.0.1") as upstream:
        assert upstream.url.startswith("https://")
        answer = make_client(upstream.url).chat_completion(CHAT)
        assert answer["object"] == "chat.completion"
        assert upstream.requests[-1].headers["authorization"] == f"Bearer {KEY}"


def test_an_https_upstream_with_an_untrusted_certificate_is_refused(certificate_authority, monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with tls_upstream(certificate_authority, "127.0.0.1") as upstream, pytest.raises(ProviderError) as caught:
        make_client(upstream.url, retries=0).chat_completion(CHAT)
    assert caught.value.kind == "unreachable"
    assert "certificate verify failed" in caught.value.message
    assert upstream.requests == []


def test_an_https_upstream_whose_certificate_names_another_host_is_refused(ca_trusted):
    with (
        tls_upstream(ca_trusted, "api.example.com") as upstream,
        pytest.raises(ProviderError) as caught,
    ):
        make_client(upstream.url, retries=0).chat_completion(CHAT)
    assert "certificate verify failed" in caught.value.message
    assert upstream.requests == []


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"], ids=["LF", "CRLF"])
@pytest.mark.parametrize("strip_usage", [False, True], ids=["client asked for usage", "proxy asked"])
def test_only_a_usage_object_is_read_and_null_usage_is_relayed_or_dropped(strip_usage, newline):
    # A content quoting `"usage": {` is an escaped string, not usage; `"usage": null` in every
    # chunk is relayed byte for byte when the client asked for usage, dropped when only the proxy did;
    # the usage object (spaced as some upstreams write it, in an event between others) is noted
    # either way.
    end = newline * 2
    quoting = b'data: {"choices":[{"delta":{"content":"say \\"usage\\": {"}}],"usage": null}' + end
    finish = b'data: {"choices":[{"delta":{},"finish_reason":"stop"}],"usage":null}' + end
    usage = (
        b"id: 7"
        + newline
        + b'data: {"choices":[],"usage" : {"prompt_tokens": 4, "completion_tokens": 2}}'
        + end
    )
    after = b'data: {"choices":[{"delta":{"content":"late"}}]}' + end
    body = quoting + finish + usage + after + b"data: [DONE]" + end

    def answer(connection: RawConnection) -> None:
        connection.read_request()
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %d\r\n\r\n"
        connection.send(head % len(body) + body)

    with RawServer(answer) as server:
        stream = make_client(server.url).stream("POST", "/chat/completions", body=b'{"stream": true}')
        call = ProviderCall("gpt-4o-mini", stream=True)
        relayed = b"".join(stream.chunks(call, strip_usage=strip_usage))
    assert call.usage == {"prompt_tokens": 4, "completion_tokens": 2}
    if strip_usage:
        assert relayed == (
            b'data: {"choices":[{"delta":{"content":"say \\"usage\\": {"}}]}'
            + end
            + b'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}'
            + end
            + after
            + b"data: [DONE]"
            + end
        )
    else:
        assert relayed == body
