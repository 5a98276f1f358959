"""`POST /v1/chat/completions` for `bedrock/...` models, which the relay route hands over here.

The answer has the OpenAI shape (translated by `service.bedrock`); with `"stream": true` the
chunks go out as Server-Sent Events as ConverseStream delivers them, ending with `data: [DONE]`.
Each request writes one usage record with Bedrock's token counts, as the relayed routes do.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator

from flask import Response, jsonify

from service.bedrock import BedrockStream, bedrock_client
from service.errors import ApiError, error_body
from service.routes import STREAM_HEADERS
from service.usage import UsageRecord

log = logging.getLogger(__name__)


def chat_completion(body: dict) -> Response:
    """Serve `body` (whose `model` is `bedrock/...`, aliases already resolved) with Bedrock."""
    model = body["model"]
    streamed = body.get("stream") is True
    record = UsageRecord(model=model, stream=streamed)
    client = bedrock_client()
    started = time.perf_counter()
    try:
        if streamed:
            stream = client.open_stream(body)
        else:
            answer = client.chat(body)
    except ApiError as error:
        problem = getattr(error, "aws_code", None) or error.code or "bedrock"
        record.emit(error.status, upstream_seconds=time.perf_counter() - started, error=str(problem))
        raise
    if not streamed:
        record.emit(200, upstream_seconds=time.perf_counter() - started, usage=answer["usage"])
        return jsonify(answer)
    response = Response(
        _events(stream, record, started),
        status=200,
        content_type="text/event-stream; charset=utf-8",
        headers=STREAM_HEADERS,
    )
    # Also when the events generator never starts (closing twice is harmless).
    response.call_on_close(stream.close)
    return response


def _events(stream: BedrockStream, record: UsageRecord, started: float) -> Iterator[bytes]:
    """Server-Sent Events of the chunks; runs after the route returned (no app context)."""
    problem = None
    try:
        for chunk in stream:
            yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"
    except ApiError as error:
        # The status line has gone out already; an error event tells SDKs the stream failed
        # (the openai client raises APIError on it) instead of ending it as if it were complete.
        problem = getattr(error, "aws_code", None) or "bedrock"
        context = {"request_id": record.request_id, "client": record.client}  # no app context here
        log.warning("Bedrock stream failed: %s", error.message, extra=context)
        yield (
            b"data: "
            + json.dumps(error_body(error.status, error.message, code=error.code)).encode()
            + b"\n\n"
        )
    except GeneratorExit:
        problem = "client_disconnected"  # closing the stream below drops the Bedrock connection
        raise
    finally:
        stream.close()
        record.emit(200, upstream_seconds=time.perf_counter() - started, usage=stream.usage, error=problem)
