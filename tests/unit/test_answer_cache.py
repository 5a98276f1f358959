"""The answer cache's parts without a server: keys, Cache-Control, what is kept, the local store.
The cache through a real server and a real Redis: tests/e2e/test_answer_cache_server.py."""

from __future__ import annotations

import pytest

from service.cache.entries import AnswerCache, Entry, cache_key
from service.cache.policy import Plan, directives, finished_stream, finished_whole, plan, sampled
from service.cache.recording import Recording
from service.cache.settings import CacheSettings
from service.store.answers import LocalAnswers


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_key_ignores_key_order_and_names_owner_route_and_model():
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}
    same = {"temperature": 0, "messages": [{"content": "hi", "role": "user"}], "model": "m"}
    key = cache_key("client:web", "/v1/chat/completions", "openai/m", body)
    assert key == cache_key("client:web", "/v1/chat/completions", "openai/m", same)
    assert key.startswith("aiproxy:answer:") and len(key) == len("aiproxy:answer:") + 64
    for other in (
        ("client:batch", "/v1/chat/completions", "openai/m", body),
        ("client:web", "/v1/completions", "openai/m", body),
        ("client:web", "/v1/chat/completions", "openai/n", body),
        ("client:web", "/v1/chat/completions", "openai/m", {**body, "temperature": 0.5}),
        # Parts are length-prefixed: moving a character from one part to the next is another key.
        ("client:we", "b/v1/chat/completions", "openai/m", body),
    ):
        assert cache_key(*other) != key


@pytest.mark.parametrize(
    ("header", "read", "write", "max_age"),
    [
        (None, True, True, None),
        ("no-cache", False, True, None),
        ("no-store", False, False, None),
        ("max-age=30", True, True, 30),
        ("No-Cache, max-age=5", False, True, 5),
        ("max-age=soon", True, True, None),  # malformed: ignored
    ],
)
def test_cache_control_decides_what_is_read_and_written(header, read, write, max_age):
    assert plan(CacheSettings(), header, is_sampled=False) == Plan(read, write, max_age)
    assert directives(header).no_store is (header == "no-store")


def test_sampled_requests_need_max_age_or_the_entrys_consent():
    assert sampled({"temperature": 0.7}) and sampled({"n": 2}) and sampled({"temperature": 1, "n": 1})
    assert not sampled({"temperature": 0}) and not sampled({}) and not sampled({"temperature": True})
    assert plan(CacheSettings(), None, is_sampled=True).read is False
    assert plan(CacheSettings(), None, is_sampled=True).write is False
    assert plan(CacheSettings(), "max-age=60", is_sampled=True).read is True
    assert plan(CacheSettings(nondeterministic=True), None, is_sampled=True).write is True


def test_only_finished_answers_are_kept():
    stop = b'{"choices":[{"finish_reason":"stop"},{"finish_reason":"tool_calls"}]}'
    assert finished_whole("/v1/chat/completions", stop)
    assert not finished_whole("/v1/chat/completions", b'{"choices":[{"finish_reason":"length"}]}')
    assert not finished_whole("/v1/completions", b'{"choices":[{"finish_reason":"content_filter"}]}')
    assert finished_whole("/v1/responses", b'{"object":"response","status":"completed"}')
    assert not finished_whole("/v1/responses", b'{"object":"response","status":"incomplete"}')
    assert finished_whole("/v1/embeddings", b"anything a 200 embeddings answer says")


def test_only_streams_that_ran_to_their_end_are_kept():
    chunk = b'data: {"choices":[{"delta":{"content":"Hi"},"finish_reason":null}]}\n\n'
    end = b'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
    assert finished_stream(chunk + end)
    assert not finished_stream(chunk)  # cut before its end
    assert not finished_stream(chunk + b'data: {"choices":[{"finish_reason":"length"}]}\n\ndata: [DONE]\n\n')
    assert not finished_stream(chunk + b'data: {"error":{"message":"upstream failed"}}\n\n')
    completed = b'event: response.completed\ndata: {"type":"response.completed","response":{}}\n\n'
    assert finished_stream(b'event: response.created\ndata: {"type":"response.created"}\n\n' + completed)
    assert not finished_stream(b'data: {"type":"response.incomplete"}\n\n' + completed)


def test_an_entry_round_trips_and_max_age_refuses_an_old_one():
    clock = Clock()
    cache = AnswerCache(LocalAnswers(), clock)
    entry = Entry(body=b'{"a":1}\n\nsecond line', content_type="application/json", stored_at=clock.now)
    cache.keep("k", entry, ttl_s=60)
    clock.now += 10
    assert cache.lookup("k") == entry
    assert cache.lookup("k", max_age=10) == entry
    assert cache.lookup("k", max_age=9) is None
    assert Entry.decode(b"not an entry") is None and Entry.decode(b'{"unknown": 1}\nbody') is None


def test_the_local_store_expires_and_evicts_the_least_recently_used():
    clock = Clock()
    store = LocalAnswers(max_bytes=30, clock=clock)
    store.put("a", b"x" * 10, ttl_s=5)
    store.put("b", b"y" * 10, ttl_s=100)
    store.put("c", b"z" * 10, ttl_s=100)
    assert store.get("a") == b"x" * 10  # a is now the most recently used
    store.put("d", b"w" * 10, ttl_s=100)  # over 30 bytes: b, the least recently used, goes
    assert store.get("b") is None and store.get("c") and store.get("d")
    assert store.size == 30
    clock.now += 5
    assert store.get("a") is None  # expired
    assert store.size == 20
    store.put("big", b"!" * 31, ttl_s=100)  # larger than the whole store: not kept
    assert store.get("big") is None and store.size == 20


def test_a_recording_keeps_a_copy_only_of_a_whole_answer_small_enough():
    whole = Recording(iter([b"ab", b"cd"]), max_bytes=4)
    assert list(whole) == [b"ab", b"cd"] and whole.kept() == b"abcd"
    large = Recording(iter([b"ab", b"cde"]), max_bytes=4)
    assert list(large) == [b"ab", b"cde"] and large.kept() is None  # the client still got it all
    cut = Recording(iter([b"ab", b"cd"]), max_bytes=10)
    next(iter(cut))
    cut.close()
    assert cut.kept() is None
