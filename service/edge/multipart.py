"""`multipart/form-data` bodies read as they pass through: parts, fields and file sizes noted,
bounds enforced, nothing rewritten and no file held.

`MultipartReader` is fed the body's bytes in whatever pieces they arrive and keeps only what it
has not yet scanned (less than a boundary's length between pieces), the headers of the part it is
in and the values of plain fields (bounded: a prompt, a model name). A body that breaks the
format or a bound is a `RequestRejected` 400 naming what is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from werkzeug.http import parse_options_header

from service.core.errors import RequestRejected

_PREAMBLE_LIMIT = 1024  # bytes before the first boundary (clients send none)


@dataclass(frozen=True)
class MultipartLimits:
    max_fields: int = 100
    max_files: int = 20  # an image edit takes up to 16 images and a mask
    max_field_bytes: int = 256 * 1024  # one field's value (a prompt is at most 32,000 characters)
    max_header_bytes: int = 16 * 1024  # one part's headers


@dataclass
class Part:
    name: str
    filename: str | None  # set for a file, even when empty
    content_type: str | None
    start: int  # where its content starts in the body (a byte offset)
    size: int = 0
    value: bytearray = field(default_factory=bytearray)  # a field's value (not kept for files)

    @property
    def is_file(self) -> bool:
        return self.filename is not None


def malformed(what: str) -> RequestRejected:
    return RequestRejected(f"The multipart body is malformed: {what}.", code="invalid_multipart")


def boundary_of(content_type: str) -> bytes:
    """The boundary a `multipart/form-data` Content-Type declares; 400 for any other type."""
    kind, options = parse_options_header(content_type)
    if kind != "multipart/form-data":
        shown = kind or "none"
        raise RequestRejected(
            f"This route takes a multipart/form-data body, not Content-Type {shown!r}.",
            code="invalid_multipart",
        )
    boundary = options.get("boundary", "")
    if not 1 <= len(boundary) <= 70 or not boundary.isascii():
        raise malformed("its Content-Type has no boundary of 1 to 70 ASCII characters")
    return boundary.encode("ascii")


class MultipartReader:
    """Reads one multipart body fed piece by piece; `fields` holds each plain field's first value."""

    def __init__(self, boundary: bytes, limits: MultipartLimits | None = None) -> None:
        self._limits = limits or MultipartLimits()
        self._dash = b"--" + boundary
        self._separator = b"\r\n--" + boundary  # ends a part's content
        self._buffer = bytearray()
        self._offset = 0  # the body offset of the buffer's first byte
        self._state = "preamble"
        self.parts: list[Part] = []
        self.fields: dict[str, str] = {}
        self.files = 0
        self.done = False  # the closing boundary was read

    @property
    def current(self) -> Part | None:
        """The part whose content is being read, if any."""
        return self.parts[-1] if self._state == "content" else None

    def feed(self, data: bytes) -> None:
        self._buffer += data
        while self._step():
            pass

    def finish(self) -> None:
        """The body ended: 400 unless it ended with its closing boundary."""
        if not self.done:
            raise malformed("it ended before its closing boundary")
        if not self.parts:
            raise malformed("it holds no parts")

    def field_span(self, name: str) -> tuple[int, int] | None:
        """Where the first value of field `name` lies in the body (start, end), once read whole."""
        if name not in self.fields:
            return None
        part = next(p for p in self.parts if p.name == name and not p.is_file)
        return part.start, part.start + part.size

    # --- the states ----------------------------------------------------------------------------

    def _consume(self, count: int) -> None:
        del self._buffer[:count]
        self._offset += count

    def _step(self) -> bool:
        """Read what the buffer allows in the current state; whether the state changed."""
        buffer = self._buffer
        if self._state == "preamble":
            at = 0 if buffer.startswith(self._dash) else buffer.find(b"\r\n" + self._dash)
            if at < 0:
                if len(buffer) > _PREAMBLE_LIMIT:
                    raise malformed("it does not start with the boundary its Content-Type declares")
                return False
            self._consume(at + (0 if at == 0 and buffer.startswith(self._dash) else 2) + len(self._dash))
            self._state = "boundary"
            return True
        if self._state == "boundary":
            if len(buffer) < 2:
                return False
            if buffer.startswith(b"--"):
                self._consume(2)
                self._state, self.done = "epilogue", True
                return True
            end = buffer.find(b"\r\n")
            if end < 0 or buffer[:end].strip(b" \t"):
                if end >= 0 or len(buffer) > 256:
                    raise malformed("a boundary line holds more than the boundary")
                return False
            self._consume(end + 2)
            self._state = "headers"
            return True
        if self._state == "headers":
            end = 0 if buffer.startswith(b"\r\n") else buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > self._limits.max_header_bytes:
                    raise malformed(f"a part's headers are longer than {self._limits.max_header_bytes} bytes")
                return False
            head = bytes(buffer[:end])
            self._consume(end + (2 if end == 0 else 4))
            self._start_part(head)
            self._state = "content"
            return True
        if self._state == "content":
            end = buffer.find(self._separator)
            if end < 0:
                keep = len(self._separator) - 1
                if len(buffer) > keep:
                    self._content(len(buffer) - keep)
                return False
            self._content(end)
            self._consume(len(self._separator))
            part = self.parts[-1]
            if not part.is_file:
                self.fields.setdefault(part.name, part.value.decode("utf-8", "replace"))
            self._state = "boundary"
            return True
        self._consume(len(buffer))  # the epilogue: ignored
        return False

    def _content(self, count: int) -> None:
        part = self.parts[-1]
        part.size += count
        if not part.is_file:
            if part.size > self._limits.max_field_bytes:
                raise malformed(f"field {part.name!r} is longer than {self._limits.max_field_bytes} bytes")
            part.value += self._buffer[:count]
        self._consume(count)

    def _start_part(self, head: bytes) -> None:
        headers: dict[str, str] = {}
        for line in head.split(b"\r\n") if head else []:
            header, colon, value = line.partition(b":")
            if not colon or not header.strip():
                raise malformed("a part's header line is not 'Name: value'")
            headers[header.strip().decode("latin-1").lower()] = value.strip().decode("utf-8", "replace")
        disposition, options = parse_options_header(headers.get("content-disposition", ""))
        name = options.get("name")
        if disposition != "form-data" or not name:
            raise malformed("a part has no 'Content-Disposition: form-data' header with a name")
        filename = options.get("filename")
        if filename is not None:
            self.files += 1
            if self.files > self._limits.max_files:
                raise malformed(f"it holds more than {self._limits.max_files} files")
        elif len(self.parts) - self.files + 1 > self._limits.max_fields:
            raise malformed(f"it holds more than {self._limits.max_fields} fields")
        self.parts.append(Part(name, filename, headers.get("content-type"), self._offset))
