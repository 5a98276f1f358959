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
