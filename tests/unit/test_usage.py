"""Finding token counts in answers and streams."""

import json

from service.gateway.sse import event_data
from service.governance.usage import event_usage, usage_in


def test_usage_of_a_chat_answer():
    body = {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}}
    assert usage_in(json.dumps(body).encode()) == {
        "prompt_tokens": 5,
        "completion_tokens": 7,
        "total_tokens": 12,
    }


def test_a_usage_key_inside_content_is_not_mistaken_for_usage():
    content = 'He wrote {"usage": {"prompt_tokens": 999}} in his notes'
    body = {
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
        "choices": [{"message": {"content": content}}],
    }
    assert usage_in(json.dumps(body).encode())["prompt_tokens"] == 1


def test_responses_api_names_are_mapped():
    body = {"output": [], "usage": {"input_tokens": 4, "output_tokens": 6, "total_tokens": 10}}
    assert usage_in(json.dumps(body).encode()) == {
        "prompt_tokens": 4,
        "completion_tokens": 6,
        "total_tokens": 10,
    }


def test_embeddings_report_prompt_and_total_only():
    body = {"data": [{"embedding": [0.1] * 100}], "usage": {"prompt_tokens": 8, "total_tokens": 8}}
    assert usage_in(json.dumps(body).encode()) == {"prompt_tokens": 8, "total_tokens": 8}


def test_no_usage():
    assert usage_in(b'{"data": []}') is None
    assert usage_in(b'{"usage": null}') is None
    assert usage_in(b'not json with "usage": [1') is None


def stream_usage(events: bytes) -> dict | None:
    """The usage a stream reports: its last event that carries one."""
    found = None
    for frame in events.split(b"\n\n"):
        event = event_data(frame)
        found = (event_usage(event) if event else None) or found
    return found


def test_stream_usage_comes_from_the_event_that_carries_it():
    events = (
        b'data: {"choices": [{"delta": {"content": "hi"}}]}\n\n'
        b'data: {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}\n\n'
        b"data: [DONE]\n\n"
    )
    assert stream_usage(events) == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


def test_stream_without_usage():
    assert stream_usage(b'data: {"choices": [{"delta": {"content": "hi"}}]}\n\ndata: [DONE]\n\n') is None


def test_an_events_json_is_read_whatever_python_would_read():
    # orjson reads events first; what it refuses and Python's parser takes is read all the same.
    assert event_data(b'data: {"usage": {"prompt_tokens": 3}}\n\n') == {"usage": {"prompt_tokens": 3}}
    assert event_data(b'data: {"x": NaN}\n\n')["x"] != event_data(b'data: {"x": NaN}\n\n')["x"]  # NaN
    assert event_data(b'data: {"text": "\\ud800"}\n\n') == {"text": "\ud800"}
    # An integer beyond 64 bits is read as a float (orjson's reading): no token count, as no count
    # of tokens is that large.
    assert event_data(b'data: {"n": 123456789012345678901234567890}\n\n')["n"] == 1.2345678901234568e29
    assert event_usage(event_data(b'data: {"usage": {"prompt_tokens": 12345678901234567890123}}\n\n')) is None
    assert event_data(b'data: {"a":\ndata: 1}\n\n') == {"a": 1}  # a JSON object over two data lines
    assert event_data(b"data: [DONE]\n\n") is None
    assert event_data(b"data: [1, 2]\n\n") is None
    assert event_data(b"data: " + b"[" * 5000 + b"]" * 5000 + b"\n\n") is None  # too deep either way
