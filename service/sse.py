"""Server-sent events: how every streamed answer is framed, relayed, and ended when it fails.

One helper serves every streaming route, whichever provider streams:

- Providers hand over whole events only (an OpenAI-compatible upstream's stream is read line by
  line and cut into events at blank lines), so when an upstream dies in the middle of an event, the
  partial event is dropped and the error event that follows starts on an event boundary: every SDK
  then raises its API error class, never a JSON decoding error.
- `relay_events` yields the events, writes an error event (`data: {"error": ...}`) when the
  provider fails mid-stream, and always closes the provider's stream and records the call
  (`service.usage.ProviderCall`), whether the stream ended, failed, or the client went away.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator

from service.errors import ProviderError, ProxyError
from service.usage import ProviderCall

log = logging.getLogger(__name__)

DONE = b"data: [DONE]\n\n"
# Streamed answers must reach the client as they are written: no caching, and no buffering by a
# proxy in front (nginx honours X-Accel-Buffering).
STREAM_HEADERS = (("Cache-Control", "no-cache"), ("X-Accel-Buffering", "no"))
EVENT_STREAM = "text/event-stream; charset=utf-8"


def event(data: dict) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


def error_event(error: ProxyError) -> bytes:
    """The event that ends a failed stream: the OpenAI error shape, which SDKs raise as an API error."""
    return event(error.body())


def event_data(frame: bytes) -> dict | None:
    """The JSON object an event's `data:` lines carry, or None (`[DONE]`, not JSON, not an object)."""
    data = b"".join(line[5:] for line in frame.splitlines() if line.startswith(b"data:")).strip()
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def relay_events(
    frames: Iterator[bytes],
    call: ProviderCall,
    close: Callable[[], None],
    *,
    watch: Callable[[bytes], None] | None = None,
) -> Iterator[bytes]:
    """Yield `frames` (whole events) to the client, ending a failed stream with an error event.

    `watch` sees every frame sent (usage, content). However the stream ends, `close()` runs and
    the call is recorded once: complete, failed (with the error's kind) or cut by the client.
    """
    problem = None
    try:
        for frame in frames:
            if watch is not None:
                watch(frame)
            call.sent_bytes()
            call.content_events += 1
            yield frame
    except ProviderError as error:
        # The status line has gone out already; an error event tells SDKs the stream failed
        # (the openai client raises APIError on it) instead of ending it as if it were complete.
        problem = error.kind
        log.warning("%s stream failed: %s", call.deployment or "provider", error.message)
        yield error_event(error)
    except GeneratorExit:
        problem = "client_disconnected"  # closing below closes the provider's stream too
        raise
    finally:
        try:
            close()
        finally:
            call.finish(200, error=problem)
