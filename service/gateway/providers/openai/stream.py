"""An open streaming answer, relayed as it arrives: usage noted on the call (and hidden from a
client that did not ask for it), the provider key blanked out, a compressed stream decoded.

The read path, per upstream read: `_read` takes whatever has arrived (`read_available`, decoded
when compressed); the whole events in it, after what the reads before left of an event, are
handled together (`_relayable` when usage is mentioned, then the key's redactor) and go to the
client as one piece; an event not yet complete waits for the next read. A read is split into its
events only when it mentions usage or the redactor may have to hold an event back.
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
from service.gateway.providers.openai.decoding import Decoder, plain
from service.gateway.redaction import redactor
from service.governance.usage import ProviderCall, event_usage, model_in

log = logging.getLogger(__name__)

# The paths whose streams report usage only when asked (`stream_options.include_usage`).
USAGE_ON_REQUEST = ("/chat/completions", "/completions")
# `"usage":null` as a key of a chunk, which upstreams add to every chunk once usage was asked for.
_NULL_USAGE = re.compile(rb',\s*"usage"\s*:\s*null(?=\s*[,}])|"usage"\s*:\s*null\s*,')
# A chunk's usage object, the only usage worth reading (a string holding `"usage": {` is escaped).
_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')


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
        self._ended = False

    def chunks(self, call: ProviderCall, *, strip_usage: bool) -> Iterator[bytes]:
        """Per upstream read, its whole events in one piece, redacted; usage noted on `call` (and
        hidden when `strip_usage`).

        Raises ProviderError when the upstream stalls or breaks mid-stream; an event it cut short
        is dropped, so what the client got so far ends on an event boundary.
        """
        redacting = redactor(self.key)
        # The key split across events is caught here: its pieces are held back until it completes.
        events = redacting.stream() if redacting else None
        pending = b""
        while True:
            try:
                data = self._read()
            except ProviderError:
                if events is not None and (held := events.flush()):
                    yield b"".join(held)
                raise
            if not data:
                if pending.strip():
                    log.info("The upstream ended its stream inside an event; the partial event was dropped")
                if events is not None and (held := events.flush()):
                    yield b"".join(held)
                return
            if pending:
                data = pending + data
            end = sse.whole_events_end(data)
            if end != len(data):
                data, pending = data[:end], data[end:]
                if not data:
                    continue
            else:
                pending = b""
            if call.served_model is None:
                call.saw_model(model_in(data))  # the first event naming it: the usage record's served_model
            if b'"usage"' in data:
                data = self._relayable(data, call, strip_usage)
            if events is not None:
                data = events.feed_events(data)
            if data:
                yield data

    def _read(self) -> bytes:
        """What the upstream sent since the last read, decoded; b"" at the end."""
        decoder = self._decoder
        while True:
            try:
                data = self._answer.read_available()
            except ReadTimeout:
                raise ProviderTimeout(
                    f"The upstream sent nothing for {self.timeout:g} seconds mid-stream.",
                    provider=self.provider,
                ) from None
            except TransportError:
                raise ProviderUnreachable(
                    "The upstream closed the stream before its end.", provider=self.provider
                ) from None
            if decoder is None:
                return data
            if not data:
                if self._ended:
                    return b""
                self._ended = True
                return decoder.end()
            # A server streaming compressed events flushes after each, so what arrived decodes
            # whole; a piece that decodes to nothing yet (the gzip header) needs the next read.
            decoded = decoder.feed(data)
            if decoded:
                return decoded

    def _relayable(self, data: bytes, call: ProviderCall, strip_usage: bool) -> bytes:
        """`data`'s events (some mention usage) as the client gets them; usage noted on `call`.

        Only the events that mention usage are looked at (found where the mention is, without
        splitting the others apart); every other byte goes out as it came.
        """
        if not strip_usage:
            # The client asked for usage: every byte is relayed as it came; only usage objects are read.
            position = 0
            while found := _USAGE_OBJECT.search(data, position):
                start, position = sse.event_at(data, found.start())
                self._usage_event(data[start:position], call, strip_usage)
            return data
        # `"usage":null` in every chunk (the upstream's answer to the proxy asking): dropped in
        # place, every other byte as it came.
        data = _NULL_USAGE.sub(b"", data)
        kept = []
        position = 0
        while (mention := data.find(b'"usage"', position)) != -1:
            start, end = sse.event_at(data, mention)
            kept.append(data[position:start])
            noted = self._usage_event(data[start:end], call, strip_usage)
            if noted is not None:
                kept.append(noted)
            position = end
        if not kept:
            return data
        kept.append(data[position:])
        return b"".join(kept)

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
