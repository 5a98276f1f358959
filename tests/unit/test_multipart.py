"""Multipart bodies read as they pass (service/edge/multipart.py, service/edge/uploads.py): parts
and fields found in pieces of any size, bounds enforced, bytes passed on unchanged but for a
renamed model."""

from __future__ import annotations

import io

import pytest

from service.core.errors import RequestRejected
from service.edge.bodies import UploadInput
from service.edge.multipart import MultipartLimits, MultipartReader, boundary_of
from service.edge.uploads import MultipartUpload

BOUNDARY = b"b0undary"
FILE = b"\r\n--b0und" + bytes(range(256)) * 300  # bytes that look like a boundary's start


def body(*parts: tuple[str, bytes, str | None]) -> bytes:
    out = b""
    for name, value, filename in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += b"--" + BOUNDARY + f"\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"
    return out + b"--" + BOUNDARY + b"--\r\n"


SAMPLE = body(("model", b"whisper-1", None), ("file", FILE, "a.mp3"), ("language", b"en", None))


def read(data: bytes, size: int, limits: MultipartLimits | None = None) -> MultipartReader:
    reader = MultipartReader(BOUNDARY, limits)
    for at in range(0, len(data), size):
        reader.feed(data[at : at + size])
    reader.finish()
    return reader


@pytest.mark.parametrize("size", [1, 3, 17, 4096, 1 << 20])
def test_fields_and_file_sizes_are_found_in_pieces_of_any_size(size):
    reader = read(SAMPLE, size)
    assert reader.fields == {"model": "whisper-1", "language": "en"}
    (file,) = [part for part in reader.parts if part.is_file]
    assert (file.filename, file.size) == ("a.mp3", len(FILE))
    assert SAMPLE[file.start : file.start + file.size] == FILE


@pytest.mark.parametrize(
    ("data", "limits", "fault"),
    [
        (SAMPLE[:-30], None, "ended before its closing boundary"),
        (b"x" * 2000, None, "does not start with the boundary"),
        (body(("a", b"1", None), ("b", b"2", None)), MultipartLimits(max_fields=1), "more than 1 fields"),
        (body(("f", b"1", "x"), ("g", b"2", "y")), MultipartLimits(max_files=1), "more than 1 files"),
        (body(("prompt", b"x" * 100, None)), MultipartLimits(max_field_bytes=50), "longer than 50 bytes"),
        (b"--b0undary\r\nContent-Type: text/plain\r\n\r\nx\r\n--b0undary--", None, "no 'Content-Disposition"),
    ],
)
def test_a_malformed_or_unbounded_body_is_a_400_naming_the_fault(data, limits, fault):
    with pytest.raises(RequestRejected) as caught:
        read(data, 7, limits)
    assert caught.value.status == 400 and fault in caught.value.message


def test_another_content_type_is_a_400_naming_it():
    with pytest.raises(RequestRejected, match="not Content-Type 'application/json'"):
        boundary_of("application/json")


def upload(data: bytes) -> MultipartUpload:
    environ = {
        "wsgi.input": io.BytesIO(data),
        "CONTENT_LENGTH": str(len(data)),
        "CONTENT_TYPE": f"multipart/form-data; boundary={BOUNDARY.decode()}",
    }
    return MultipartUpload(UploadInput(environ, limit=10 << 20, timeout=5))


def test_the_body_is_passed_on_byte_for_byte_and_only_what_its_fields_need_is_read_first():
    sent = upload(SAMPLE)
    assert sent.read_fields("model") == {"model": "whisper-1"}
    assert sent.upload.received < 70_000  # one block, not the file
    assert b"".join(sent.chunks()) == SAMPLE and sent.length({}) == len(SAMPLE)


def test_a_renamed_model_is_the_one_rewrite_even_when_the_file_comes_first():
    data = body(("file", FILE, "a.mp3"), ("model", b"openai/whisper-1", None))
    sent = upload(data)
    assert sent.read_fields("model")["model"] == "openai/whisper-1"
    out = b"".join(sent.chunks({"model": "whisper-1"}))
    assert out == data.replace(b"openai/whisper-1", b"whisper-1")
    assert sent.length({"model": "whisper-1"}) == len(out)


def test_an_upload_over_its_limit_is_a_413_before_anything_is_read():
    environ = {"wsgi.input": io.BytesIO(b""), "CONTENT_LENGTH": str(30 << 20), "CONTENT_TYPE": "x"}
    with pytest.raises(RequestRejected) as caught:
        UploadInput(environ, limit=25 << 20, timeout=5)
    assert caught.value.status == 413 and "AIPROXY_MAX_UPLOAD_BYTES" in caught.value.message
