"""An upload route's multipart body on its way to the provider: the fields the route needs read
first, then everything sent on as it arrives, byte for byte, and read on the way for its bounds.

Clients put their fields before their files (the OpenAI SDKs do), so reading up to `model` holds
a few hundred bytes. A body whose file comes first (`curl -F file=@... -F model=...`) is held up
to its `model` field: in memory up to HELD_IN_MEMORY, past that in a temporary file, never more
than AIPROXY_MAX_UPLOAD_BYTES. Only a `model` that routing renamed (and a prompt whose personal
data a safety policy redacted) is rewritten on the way.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator, Mapping

from service.edge.bodies import UPLOAD_BLOCK, UploadInput
from service.edge.multipart import MultipartLimits, MultipartReader, boundary_of

HELD_IN_MEMORY = 1024 * 1024


class MultipartUpload:
    def __init__(self, upload: UploadInput, limits: MultipartLimits | None = None) -> None:
        self.reader = MultipartReader(boundary_of(upload.content_type), limits)
        self.upload = upload
        self._source = upload.chunks()
        # Closed once sent on (`chunks`), or by the garbage collector when the request failed first.
        self._held = tempfile.SpooledTemporaryFile(max_size=HELD_IN_MEMORY)  # noqa: SIM115
        self._ended = False

    def read_fields(self, *names: str) -> Mapping[str, str]:
        """Read until each field of `names` is read whole and a file has started (or the body
        ended: then it is checked whole); the fields read so far."""
        reader = self.reader
        while not self._ended:
            current = reader.current
            if all(name in reader.fields for name in names) and current is not None and current.is_file:
                break
            chunk = next(self._source, None)
            if chunk is None:
                self._ended = True
                reader.finish()
                break
            reader.feed(chunk)
            self._held.write(chunk)
        return reader.fields

    def length(self, replace: Mapping[str, str]) -> int | None:
        """The Content-Length of what `chunks(replace)` sends, when the client said its own."""
        if self.upload.length is None:
            return None
        change = 0
        for name, value in replace.items():
            span = self.reader.field_span(name)
            if span is not None:
                change += len(value.encode()) - (span[1] - span[0])
        return self.upload.length + change

    def chunks(self, replace: Mapping[str, str] | None = None) -> Iterator[bytes]:
        """The body as the client sent it, with the values of the fields in `replace` (already
        read) replaced; what was held first, then the rest as it arrives."""
        spans = []
        for name, value in (replace or {}).items():
            span = self.reader.field_span(name)
            if span is not None:
                spans.append((span[0], span[1], value.encode()))
        self._held.seek(0)
        held = iter(lambda: self._held.read(UPLOAD_BLOCK), b"")
        yield from _spliced(held, sorted(spans))
        self._held.close()
        if self._ended:
            return
        for chunk in self._source:
            self.reader.feed(chunk)
            yield chunk
        self._ended = True
        self.reader.finish()


def _spliced(blocks: Iterable[bytes], spans: list[tuple[int, int, bytes]]) -> Iterator[bytes]:
    """`blocks` with each (start, end) byte range of `spans` replaced by its bytes."""
    offset = 0  # where the current block starts
    pending: list[tuple[int, int, bytes | None]] = list(spans)
    for block in blocks:
        at = 0
        while at < len(block):
            if pending and pending[0][0] <= offset + at:
                start, end, new = pending[0]
                if new is not None:
                    yield new
                    pending[0] = (start, end, None)
                at = max(at, min(len(block), end - offset))
                if end - offset <= len(block):
                    pending.pop(0)
                continue
            stop = len(block) if not pending else min(len(block), pending[0][0] - offset)
            yield block[at:stop]
            at = stop
        offset += len(block)
    for _, _, new in pending:  # a range at the very end of the body
        if new is not None:
            yield new
