"""The upstream client against the fake OpenAI upstream: retries, backoff, Retry-After, errors."""

from __future__ import annotations

import json
import time
from email.utils import formatdate

import pytest

from service.upstream import UpstreamClient, UpstreamError, parse_retry_after, upstream_message
from tests.fakes.openai_upstream import Fail, Hang, Reply, Stream
from tests.support.server import free_port

KEY = "sk-provider-key-0123456789"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}


class SleepLog:
    """Sleeps for real (briefly, backoffs are small here) and remembers each delay."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        time.sleep(seconds)


def make_client(url: str, sleep: SleepLog | None = None, **options) -> UpstreamClient:
    values = {"retries": 2, "backoff": 0.01, "backoff_max": 1.0, "timeout": 5.0, "connect_timeout": 2.0}
    values.update(options)
    return UpstreamClient(base_url=url, key_provider=lambda: KEY, sleep=sleep or SleepLog(), **values)


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
    with pytest.raises(UpstreamError) as caught:
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
    with pytest.raises(UpstreamError) as caught:
        make_client(fake_openai.url, sleep, backoff_max=2).chat_completion(CHAT)
    assert caught.value.status == 429
    assert caught.value.retry_after == "30"
    assert caught.value.message == "Rate limit reached"
    assert sleep.delays == []
    assert len(fake_openai.requests) == 1


def test_client_errors_are_not_retried_and_carry_the_upstream_message_and_body(fake_openai):
    fake_openai.enqueue(Fail(400, "The model `nope` does not exist", code="model_not_found"))
    with pytest.raises(UpstreamError) as caught:
        make_client(fake_openai.url).chat_completion(CHAT)
    error = caught.value
    assert (error.kind, error.status, error.message) == ("http", 400, "The model `nope` does not exist")
    assert json.loads(error.body)["error"]["code"] == "model_not_found"
    assert len(fake_openai.requests) == 1


def test_no_retries_when_the_count_is_zero(fake_openai):
    fake_openai.enqueue(Fail(502))
    with pytest.raises(UpstreamError):
        make_client(fake_openai.url, retries=0).chat_completion(CHAT)
    assert len(fake_openai.requests) == 1


def test_an_unreachable_upstream_is_retried_then_reported():
    sleep = SleepLog()
    with pytest.raises(UpstreamError) as caught:
        make_client(f"http://127.0.0.1:{free_port()}/v1", sleep).chat_completion(CHAT)
    assert caught.value.kind == "unreachable"
    assert len(sleep.delays) == 2


def test_a_slow_upstream_times_out_without_a_retry(fake_openai):
    fake_openai.enqueue(Hang(5))
    started = time.monotonic()
    with pytest.raises(UpstreamError) as caught:
        make_client(fake_openai.url, timeout=0.3).chat_completion(CHAT)
    assert caught.value.kind == "timeout"
    assert "0.3 seconds" in caught.value.message
    assert time.monotonic() - started < 2
    assert len(fake_openai.requests) == 1


def test_no_key_makes_no_request(fake_openai):
    client = UpstreamClient(base_url=fake_openai.url, key_provider=lambda: None)
    with pytest.raises(UpstreamError) as caught:
        client.chat_completion(CHAT)
    assert caught.value.kind == "no_key"
    assert "OPENAI_API_KEY" in caught.value.message
    assert fake_openai.requests == []


def test_an_upstream_that_echoes_the_key_gets_it_blanked_out(fake_openai):
    fake_openai.enqueue(Fail(401, f"Incorrect API key provided: {KEY}"))
    with pytest.raises(UpstreamError) as caught:
        make_client(fake_openai.url).chat_completion(CHAT)
    assert KEY not in caught.value.message
    assert KEY.encode() not in caught.value.body
    assert "[FILTERED]" in caught.value.message


def test_a_stream_yields_chunks_as_they_arrive(fake_openai):
    fake_openai.enqueue(Stream(["a", "b", "c"], pause=0.2))
    stream = make_client(fake_openai.url).stream("POST", "/chat/completions", body=b'{"stream": true}')
    arrivals = []
    try:
        for chunk in stream:
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
        assert b'"ok"' in b"".join(stream)
    finally:
        stream.close()
    assert len(fake_openai.requests) == 2


def test_a_stream_cut_off_midway_raises_unreachable(fake_openai):
    fake_openai.enqueue(Stream(["a", "b", "c", "d"], close_after=2))
    stream = make_client(fake_openai.url).stream("POST", "/chat/completions", body=b'{"stream": true}')
    with pytest.raises(UpstreamError) as caught:
        for _ in stream:
            pass
    stream.close()
    assert caught.value.kind == "unreachable"
    assert len(fake_openai.requests) == 1  # never retried once bytes flowed


def test_a_stream_that_stalls_raises_timeout(fake_openai):
    fake_openai.enqueue(Stream(["a", "b"], pause=3))
    stream = make_client(fake_openai.url, timeout=0.3).stream("POST", "/chat/completions", body=b"{}")
    with pytest.raises(UpstreamError) as caught:
        for _ in stream:
            pass
    stream.close()
    assert caught.value.kind == "timeout"


def test_closing_a_stream_early_closes_the_upstream_connection(fake_openai):
    fake_openai.enqueue(Stream(["a"] * 50, pause=0.1))
    stream = make_client(fake_openai.url).stream("POST", "/chat/completions", body=b"{}")
    next(iter(stream))
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
