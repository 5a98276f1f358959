"""An answer's bytes kept as they go to the client, and an entry answered again.

`Recording` wraps an answer's chunks: the client gets each chunk as it comes (a stream is not held
back), and a copy is kept up to the client's `max_answer_bytes`. Once the answer is closed,
`kept()` is the whole answer, or None when it was larger, or did not run to its end (the client
went away, the provider failed).

`replay` answers an entry: the same bytes, the same content type; a stream as the events it was,
in order (`text/event-stream`, which SDKs read as a stream).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from service.cache.entries import Entry
from service.core.responses import ClientResponse

CACHE_HEADER = "x-aiproxy-cache"
HIT = "hit"
MISS = "miss"
# What a replayed stream says besides its content type, as a relayed one does (service.gateway.sse).
_STREAM_HEADERS = (("Cache-Control", "no-cache"), ("X-Accel-Buffering", "no"))


class Recording:
    def __init__(self, chunks: Iterable[bytes], max_bytes: int) -> None:
        self._chunks = chunks
        self._next: Iterator[bytes] | None = None
        self._max_bytes = max_bytes
        self._kept: list[bytes] | None = []
        self._size = 0
        self._ended = False  # the chunks ran out by themselves

    def __iter__(self) -> Iterator[bytes]:
        if self._next is None:  # iterated again: the same chunks, once
            self._next = iter(self._chunks)
        return self

    def __next__(self) -> bytes:
        assert self._next is not None
        try:
            chunk = next(self._next)
        except StopIteration:
            self._ended = True
            raise
        if self._kept is not None:
            self._size += len(chunk)
            if self._size > self._max_bytes:
                self._kept = None  # too large to keep: stop copying
            else:
                self._kept.append(chunk)
        return chunk

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()

    def kept(self) -> bytes | None:
        if not self._ended or self._kept is None:
            return None
        return b"".join(self._kept)


def replay(entry: Entry, age: float, deployment_header: str) -> ClientResponse:
    """The entry as an answer, saying it is a hit and how old it is (`Age`, whole seconds)."""
    headers = [(CACHE_HEADER, HIT), ("Age", str(int(age)))]
    if entry.deployment:
        headers.append((deployment_header, entry.deployment))
    if entry.stream:
        headers[:0] = _STREAM_HEADERS
    return ClientResponse.of_bytes(entry.status, entry.body, entry.content_type, headers=headers)
