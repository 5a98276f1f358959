"""Server-sent events: how every streamed answer is framed, relayed, and ended when it fails.

One helper serves every streaming route, whichever provider streams:

- Providers hand over whole events only, one or several in a piece (an OpenAI-compatible
  upstream's stream: the whole events of one upstream read, cut at the last blank line; a partial
  event waits for the next read), so when an upstream dies in the middle of an event, the partial
  event is dropped and the error event that follows starts on an event boundary: every SDK then
  raises its API error class, never a JSON decoding error.
- `relay_events` yields each piece in one write, writes an error event (`data: {"error": ...}`) when the
  provider fails mid-stream, and always closes the provider's stream and records the call
  (`service.governance.usage.ProviderCall`), whether the stream ended, failed, or the client went away.

In the server, a stream also notices at once when its client disconnects, even while the provider
is silent (a model thinking for minutes): the client's socket is watched, and the wait on the
provider is interrupted, freeing the client's slot and the provider's connection. And when the
server shuts down, `cut_streams` ends the streams still waiting on their provider with an error
event before the graceful timeout runs out.
"""

from __future__ import annotations

import json
import logging
import re
import socket
from collections.abc import Callable, Iterator
from typing import Any

import gevent
import orjson

from service.core import request_state, shutdown
from service.core.errors import ProxyError, ServerStopping
from service.core.responses import json_bytes
from service.core.sockets import gevent_drives
from service.governance.usage import ProviderCall

log = logging.getLogger(__name__)

DONE = b"data: [DONE]\n\n"
# Streamed answers must reach the client as they are written: no caching, and no buffering by a
# proxy in front (nginx honours X-Accel-Buffering).
STREAM_HEADERS = (("Cache-Control", "no-cache"), ("X-Accel-Buffering", "no"))
EVENT_STREAM = "text/event-stream; charset=utf-8"
_CUT_MESSAGE = "The server is shutting down and ended this stream before its end; send the request again."
# A blank line ends an event; lines end with LF or CRLF.
_EVENT_END = re.compile(rb"\n\r?\n")


def event(data: dict[str, Any]) -> bytes:
    return b"data: " + json_bytes(data) + b"\n\n"


def error_event(error: ProxyError) -> bytes:
    """The event that ends a failed stream: the OpenAI error shape, which SDKs raise as an API error."""
    return event(error.body())


def event_data(frame: bytes) -> dict[str, Any] | None:
    """The JSON object an event's `data:` lines carry, or None (`[DONE]`, not JSON, not an object)."""
    data = b"".join(line[5:] for line in frame.splitlines() if line.startswith(b"data:")).strip()
    try:
        value = orjson.loads(data)  # a stream's usage event is parsed on every stream
    except orjson.JSONDecodeError:
        try:  # what orjson refuses and Python's parser takes (NaN, integers beyond 64 bits, UTF-16)
            value = json.loads(data)
        except (ValueError, RecursionError):
            return None
    return value if isinstance(value, dict) else None


def whole_events_end(data: bytes) -> int:
    """Where the whole events at the start of `data` end (after its last blank line); 0 if none."""
    lf = data.rfind(b"\n\n")
    crlf = data.rfind(b"\n\r\n")
    return max(lf + 2 if lf >= 0 else 0, crlf + 3 if crlf >= 0 else 0)


def event_at(data: bytes, position: int) -> tuple[int, int]:
    """Where the event of `data` (whole events) holding `position` starts and ends (with its blank line)."""
    lf = data.rfind(b"\n\n", 0, position)
    crlf = data.rfind(b"\n\r\n", 0, position)
    start = max(lf + 2 if lf >= 0 else 0, crlf + 3 if crlf >= 0 else 0)
    end = _EVENT_END.search(data, position)
    return start, end.end() if end else len(data)


def split_events(data: bytes) -> list[bytes]:
    """The events of `data` (whole events), each with its blank line."""
    events = []
    start = 0
    for end in _EVENT_END.finditer(data):
        events.append(data[start : end.end()])
        start = end.end()
    if start < len(data):
        events.append(data[start:])
    return events


def event_count(data: bytes) -> int:
    """How many events `data` (whole events) holds."""
    events = data.count(b"\n\n")
    return events + data.count(b"\n\r\n") if b"\r" in data else events


class ClientGone(Exception):
    """The client closed its connection while its stream waited on the provider."""


# Greenlets of the streams waiting on their provider right now (not while writing to a client).
_waiting: set[gevent.Greenlet] = set()


def cut_streams() -> None:
    """End every stream still waiting on its provider with an error event (server shutdown)."""
    for greenlet in list(_waiting):
        shutdown.interrupt(greenlet, _waiting, shutdown.Cut())


def relay_events(
    frames: Iterator[bytes],
    call: ProviderCall,
    close: Callable[[], None],
) -> Iterator[bytes]:
    """Yield `frames` (each one or more whole events) to the client, each in one write, ending a
    failed stream with an error event.

    However the stream ends, `close()` runs and the call is recorded once: complete, failed (with
    the error's kind) or cut by the client.
    """
    problem = None
    greenlet = gevent.getcurrent()
    watcher = _watch_client(greenlet)
    try:
        while True:
            if watcher is not None and watcher.gone:
                raise ClientGone
            _waiting.add(greenlet)
            try:
                frame = next(frames)
            except StopIteration:
                break
            finally:
                _waiting.discard(greenlet)
            call.sent_bytes()
            call.content_events += event_count(frame)
            yield frame
    except ProxyError as error:
        # The status line has gone out already; an error event tells SDKs the stream failed
        # (the openai client raises APIError on it) instead of ending it as if it were complete.
        problem = error.kind
        log.warning("%s stream failed: %s", call.deployment or "provider", error.message)
        yield error_event(error)
    except shutdown.Cut:
        problem = "shutdown"
        yield error_event(ServerStopping(_CUT_MESSAGE))
    except ClientGone:
        problem = "client_disconnected"
    except GeneratorExit:
        problem = "client_disconnected"  # closing below closes the provider's stream too
        raise
    except BaseException:
        problem = "cut"  # the server stopped the request (its worker's final stop)
        raise
    finally:
        if watcher is not None:
            watcher.close()
        try:
            close()
        finally:
            call.finish(200, error=problem)


class _ClientWatch:
    """Watches the client's socket while its stream runs (in the gevent server only): when the
    client leaves, `gone` is set, and a wait on the provider in progress is interrupted."""

    def __init__(self, sock: socket.socket, greenlet: gevent.Greenlet) -> None:
        self.sock = sock
        self.greenlet = greenlet
        self.gone = False
        # Readable: the client closed its connection (or, rarely, sent more data).
        self._io = gevent.get_hub().loop.io(sock.fileno(), 1)
        self._io.start(self._readable)

    def _readable(self) -> None:
        self._io.stop()
        gevent.spawn(self._check)  # the loop's callback must not wait: look from a greenlet

    def _check(self) -> None:
        try:
            self.gone = self.sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            self.gone = True
        if self.gone and self.greenlet in _waiting:
            shutdown.interrupt(self.greenlet, _waiting, ClientGone())

    def close(self) -> None:
        self._io.stop()


def _watch_client(greenlet: gevent.Greenlet) -> _ClientWatch | None:
    state = request_state.current()
    sock = state.client_socket if state is not None else None
    if sock is None or not gevent_drives():
        return None
    return _ClientWatch(sock, greenlet)
