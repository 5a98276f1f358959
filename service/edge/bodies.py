"""Request bodies: read whole within a size and a time limit, parsed as a JSON object, and sized up
in tokens before the provider call (for the client's tokens-per-minute limit); or, on the upload
routes, read as they arrive and sent on (`UploadInput`), never held whole.
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from gunicorn.http import errors as http_errors
from werkzeug.wsgi import get_content_length

from service.core.errors import REQUEST_TOO_LARGE_MESSAGE, RequestRejected
from service.core.sockets import gevent_drives

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

# A token is about four bytes of English text; a body also holds JSON punctuation and field names,
# so this estimate of a prompt's tokens errs on the high side, which is the safe side for a limit.
BYTES_PER_TOKEN = 4
_OUTPUT_LIMIT_FIELDS = ("max_completion_tokens", "max_tokens", "max_output_tokens")
# More output than any limit allows: a larger `max_tokens` is counted as this much, so an estimate
# stays a number the limits store and an error message can hold (a JSON integer may have 4,300 digits).
MOST_OUTPUT_TOKENS = 10**12
RAW_BODY = "aiproxy.body"  # where the body read here is kept in the WSGI environ
UPLOAD = "aiproxy.upload"  # where an upload route finds its UploadInput in the WSGI environ
UPLOAD_BLOCK = 65536  # bytes of an upload read (and sent on) at a time


def read_body(environ: WSGIEnvironment, limit: int, timeout: float) -> bytes:
    """The whole request body; RequestRejected 413 over `limit` bytes, 408 when the client takes
    longer than `timeout` seconds to send it, 400 when the server cannot read its chunked framing
    (in both cases its connection is then closed).

    Afterwards the body is in `environ` again (with its Content-Length), so Flask's routes read it
    as they would have; a chunked body reaches them whole and with a length like any other.
    """
    chunked = "HTTP_TRANSFER_ENCODING" in environ and not environ.get("CONTENT_LENGTH")
    length = None if chunked else (get_content_length(environ) or 0)
    if length is not None and length > limit:
        raise RequestRejected(REQUEST_TOO_LARGE_MESSAGE, status=413)  # said up front: nothing is read
    if length == 0:
        return b""
    stream = environ["wsgi.input"]
    deadline = _deadline(timeout)
    try:
        # A chunked body is ended by the server (wsgi.input_terminated): read one byte past the limit.
        raw: bytes = stream.read(limit + 1) if length is None else stream.read(length)
    except (http_errors.ParseException, http_errors.NoMoreData) as error:
        # The server reads a chunked body's framing as it goes: where that is broken, the rest
        # of the connection cannot be told apart from the body, so it is not read any further.
        _stop_reading(environ)
        raise RequestRejected(f"The request's chunked body is not valid: {_framing_fault(error)}.") from None
    except BaseException as error:
        if deadline is None or error is not deadline:
            raise
        _stop_reading(environ)
        raise RequestRejected(
            f"The request body did not arrive within {timeout:g} seconds.", status=408, code="request_timeout"
        ) from None
    finally:
        if deadline is not None:
            deadline.close()
    if len(raw) > limit:
        raise RequestRejected(REQUEST_TOO_LARGE_MESSAGE, status=413)
    if length is not None and len(raw) < length:
        _stop_reading(environ)
        raise RequestRejected("The request body ended before its Content-Length.")
    environ[RAW_BODY] = raw
    environ["wsgi.input"] = io.BytesIO(raw)  # the body, read again from memory
    environ["CONTENT_LENGTH"] = str(len(raw))
    environ.pop("HTTP_TRANSFER_ENCODING", None)  # no longer chunked (werkzeug would ignore the length)
    return raw


class UploadInput:
    """The body of an upload route, read as it arrives rather than whole: its chunks (at most
    UPLOAD_BLOCK bytes each) are handed on and dropped, so a worker holds a block of it at a time.

    Bounded like `read_body`: 413 over `limit` bytes (up front when Content-Length says so), 408
    when the client takes longer than `timeout` seconds for the whole of it, 400 when its chunked
    framing is broken or it ends before its Content-Length. Raised from `chunks()`, which the
    route's provider call is consuming: the call stops, the error is the answer.
    """

    def __init__(self, environ: WSGIEnvironment, limit: int, timeout: float) -> None:
        chunked = "HTTP_TRANSFER_ENCODING" in environ and not environ.get("CONTENT_LENGTH")
        self.length = None if chunked else (get_content_length(environ) or 0)
        if self.length is not None and self.length > limit:
            raise RequestRejected(_upload_too_large(limit), status=413)
        self.content_type = environ.get("CONTENT_TYPE", "")
        self.received = 0
        self._environ = environ
        self._limit = limit
        self._timeout = timeout
        self._ends_at = time.monotonic() + timeout

    def chunks(self) -> Iterator[bytes]:
        stream = self._environ["wsgi.input"]
        while True:
            want = UPLOAD_BLOCK if self.length is None else min(UPLOAD_BLOCK, self.length - self.received)
            if want <= 0:
                return
            data = self._read(stream, want)
            if not data:
                if self.length is not None:
                    _stop_reading(self._environ)
                    raise RequestRejected("The request body ended before its Content-Length.")
                return
            self.received += len(data)
            if self.received > self._limit:
                raise RequestRejected(_upload_too_large(self._limit), status=413)
            yield data

    def _read(self, stream: Any, size: int) -> bytes:
        deadline = _deadline(max(0.001, self._ends_at - time.monotonic()))
        try:
            data: bytes = stream.read(size)  # the server's wsgi.input (untyped)
            return data
        except (http_errors.ParseException, http_errors.NoMoreData) as error:
            _stop_reading(self._environ)
            fault = _framing_fault(error)
            raise RequestRejected(f"The request's chunked body is not valid: {fault}.") from None
        except BaseException as error:
            if deadline is None or error is not deadline:
                raise
            _stop_reading(self._environ)
            raise RequestRejected(
                f"The request body did not arrive within {self._timeout:g} seconds.",
                status=408,
                code="request_timeout",
            ) from None
        finally:
            if deadline is not None:
                deadline.close()


def _upload_too_large(limit: int) -> str:
    return f"The upload is larger than {limit:,} bytes, the most accepted (AIPROXY_MAX_UPLOAD_BYTES)."


# What gunicorn's chunked reader found wrong, from the most specific kind (the first that matches).
_FRAMING_FAULTS = (
    (http_errors.InvalidChunkSize, "a chunk size is not a hexadecimal number on a line of its own"),
    (http_errors.InvalidChunkExtension, "a chunk extension is malformed"),
    (http_errors.ChunkMissingTerminator, "a chunk is not followed by CRLF where its size says it ends"),
    (http_errors.NoMoreData, "it ended before its last (zero-size) chunk"),
    (http_errors.LimitRequestHeaders, "its trailer section is too large"),
)


def _framing_fault(error: Exception) -> str:
    for kind, fault in _FRAMING_FAULTS:
        if isinstance(error, kind):
            return fault
    return "its trailer fields are malformed"  # any other parser error here is in the trailers


def _deadline(seconds: float) -> Any:
    """A started gevent.Timeout bounding a blocking read in the server, or None elsewhere (Flask's
    test client and tools read bodies from memory: nothing to bound)."""
    if not gevent_drives():
        return None
    import gevent

    return gevent.Timeout.start_new(seconds)


def _stop_reading(environ: WSGIEnvironment) -> None:
    """Close the read side of the client's connection: the rest of a body that never came is not
    waited for, and the connection ends once the answer is sent."""
    sock = environ.get("gunicorn.socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RD)


def json_object(raw: bytes) -> dict[str, Any]:
    """The JSON object in `raw`; RequestRejected 400 naming what is wrong."""
    if not raw.strip():
        raise RequestRejected("The request body is empty; send a JSON object.")
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as error:
        raise RequestRejected(
            f"The request body is not valid JSON ({error.msg} at character {error.pos})."
        ) from None
    except UnicodeDecodeError:  # bytes that are not UTF-8 (or UTF-16/32) text
        raise RequestRejected("The request body is not valid JSON (it is not UTF-8 text).") from None
    except ValueError:  # the parser's one other error: an integer longer than Python converts
        raise RequestRejected(
            f"The request body holds a number too long to read: an integer of more than "
            f"{sys.get_int_max_str_digits():,} digits."
        ) from None
    except RecursionError:
        raise RequestRejected("The request body is nested too deeply to be read as JSON.") from None
    if not isinstance(body, dict):
        raise RequestRejected(f"The request body must be a JSON object, not {json_kind(body)}.")
    return body


def json_kind(value: object) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null", dict: "an object"}.get(
        type(value), "a number"
    )


def estimate_tokens(body: dict[str, Any] | None, body_bytes: int, output_estimate: int) -> int:
    """Tokens a request may use, before it is sent: its prompt (from the body's size) plus its
    output (the `max_tokens` it asks for, else `output_estimate`), times the choices it asks for."""
    prompt = body_bytes // BYTES_PER_TOKEN
    output = output_estimate
    choices = 1
    if body is not None:
        for name in _OUTPUT_LIMIT_FIELDS:
            value = body.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                output = min(value, MOST_OUTPUT_TOKENS)
                break
        n = body.get("n")
        if isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 128:
            choices = n
    return prompt + output * choices
