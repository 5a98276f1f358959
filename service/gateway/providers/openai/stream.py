"""An open streaming answer, read as whole events: usage noted on the call (and hidden from a
client that did not ask for it), the provider key blanked out, a compressed stream decoded.

The read path, per event: `_read_line` (plain, or `_decoded_line` for a compressed stream) until
a blank line ends the event, `_usage_event` when it mentions usage, then the key's redactor.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

from service.core.errors import ProviderError, ProviderTimeout, ProviderUnreachable
from service.core.responses import json_bytes
from service.gateway import sse
from service.gateway.providers import RelayRequest
from service.gateway.providers.http_pool import ReadTimeout, TransportError, UpstreamResponse
from service.gateway.providers.openai.decoding import FLUSH_MARK, Decoder, plain
from service.gateway.redaction import redactor
from service.governance.usage import ProviderCall, event_usage

log = logging.getLogger(__name__)

# The paths whose streams report usage only when asked (`stream_options.include_usage`).
USAGE_ON_REQUEST = ("/chat/completions", "/completions")
# `"usage":null` as a key of a chunk, which upstreams add to every chunk once usage was asked for.
_NULL_USAGE = re.compile(rb',\s*"usage"\s*:\s*null(?=\s*[,}])|"usage"\s*:\s*null\s*,')


def asking_for_usage(request: RelayRequest, stream_usage: bool) -> tuple[bytes | None, bool]:
    """The body to send, and whether the stream's usage must be hidden from the client.

    A stream reports its tokens only when asked; when the client did not ask, the proxy asks
    for it (if the upstream takes `stream_options`: `stream_usage`) and removes it again, so the
    client sees exactly the stream it asked for.
    """
    body = request.body
    if not (stream_usage and request.path in USAGE_ON_REQUEST and isinstance(body, dict)):
        return request.raw, False
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        return request.raw, False
    if options is not None and not isinstance(options, dict):
        return request.raw, False  # the upstream will say what is wrong with it
    asked = {**body, "stream_options": {**(options or {}), "include_usage": True}}
    return json_bytes(asked), True


class UpstreamStream:
    """An open streaming answer; always `close()` it.

    Closing before the end closes the upstream connection, so the upstream sees the request go
    away (a client that disconnects stops the generation it asked for).
    """

    def __init__(self, answer: UpstreamResponse, key: str, *, provider: str, timeout: float) -> None:
        self._answer = answer
        self.key = key
        self.provider = provider
        self.timeout = timeout  # the read timeout, for the message when it passes mid-stream
        self.status = answer.status
        self.headers = answer.headers
        self.closed = False
        # A compressed stream (asked for none) is decoded here: clients get plain events, and
        # usage and redaction read them.
        encoding = answer.headers.get("content-encoding", "")
        self._decoder = None if plain(encoding) else Decoder(encoding, provider)
        self._decoded = bytearray()
        self._ended = False

    def frames(self, call: ProviderCall, *, strip_usage: bool) -> Iterator[bytes]:
        """The stream's whole events, redacted; usage noted on `call` (and hidden when `strip_usage`).

        Raises ProviderError when the upstream stalls or breaks mid-stream; an event it cut short
        is dropped, so what the client got so far ends on an event boundary.
        """
        redacting = redactor(self.key)
        # The key split across events is caught here: its pieces are held back until it completes.
        events = redacting.stream() if redacting else None
        lines: list[bytes] = []
        while True:
            try:
                line = self._read_line()
            except ProviderError:
                if events is not None:
                    yield from events.flush()
                raise
            if not line:
                if lines:
                    log.info("The upstream ended its stream inside an event; the partial event was dropped")
                if events is not None:
                    yield from events.flush()
                return
            if line not in (b"\n", b"\r\n"):
                lines.append(line)
                continue
            lines.append(line)
            frame = b"".join(lines)
            lines.clear()
            if b'"usage"' in frame:
                with_usage = self._usage_event(frame, call, strip_usage)
                if with_usage is None:
                    continue
                frame = with_usage
            elif strip_usage and b"null" in frame:
                frame = _NULL_USAGE.sub(b"", frame)
            if events is None:
                yield frame
            else:
                yield from events.feed(frame)

    def _read_line(self) -> bytes:
        try:
            return self._answer.read_line() if self._decoder is None else self._decoded_line()
        except ReadTimeout:
            raise ProviderTimeout(
                f"The upstream sent nothing for {self.timeout:g} seconds mid-stream.", provider=self.provider
            ) from None
        except TransportError:
            raise ProviderUnreachable(
                "The upstream closed the stream before its end.", provider=self.provider
            ) from None

    def _decoded_line(self) -> bytes:
        """The next line of a compressed stream, decoded; b"" at the end."""
        assert self._decoder is not None
        pending = self._decoded
        while True:
            end = pending.find(b"\n") + 1
            if end:
                line = bytes(pending[:end])
                del pending[:end]
                return line
            if self._ended:
                line = bytes(pending)
                pending.clear()
                return line
            # A server streaming compressed events flushes after each: read to the flush, so an
            # event is relayed when it arrives, not when more data pushes it out.
            piece = self._answer.read_until(FLUSH_MARK)
            if piece:
                pending += self._decoder.feed(piece)
            else:
                pending += self._decoder.end()
                self._ended = True

    @staticmethod
    def _usage_event(frame: bytes, call: ProviderCall, strip_usage: bool) -> bytes | None:
        """Note the usage an event carries; the event to relay, or None to leave it out."""
        chunk = sse.event_data(frame)
        if chunk is None:
            return frame
        call.saw_usage(event_usage(chunk))
        if not strip_usage or "usage" not in chunk:
            return frame
        if chunk.get("choices") == [] and chunk.get("usage") is not None:
            return None  # the usage chunk the proxy asked for; the client did not
        del chunk["usage"]
        return sse.event(chunk)

    def close(self) -> None:
        """Fully read: the connection goes back to the pool. Unread data left: the connection is
        closed, which is what tells the upstream to stop (closing twice is fine)."""
        if not self.closed:
            self.closed = True
            self._answer.close()
