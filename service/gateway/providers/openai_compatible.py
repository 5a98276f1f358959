"""An OpenAI-compatible upstream: base URL, key, timeouts, retries, and relaying to it.

Routes never build provider requests themselves; they hand a `RelayRequest` to `relay()` (the
client's body goes upstream byte for byte, the answer comes back unchanged, a stream event by
event) or a composed chat to `complete()`. Every failure is a `service.core.errors.ProviderError`.

Non-streaming requests are retried on 429/500/502/503/504 and on connection errors, with
exponential backoff and jitter, honouring `Retry-After`. A stream is retried only while opening
(before the first byte reaches the client), never afterwards. Read timeouts are not retried: the
caller has already waited the whole timeout once.

What the client sees of the upstream is filtered: only an allow-list of its answer headers, and
the provider key blanked out of bodies, events and header values, in case an upstream echoes it
(`service.gateway.redaction`: in any JSON spelling, and split across stream events). Everything read from
an upstream is redacted before anything parses it, so grading, error messages and log lines
built from it never hold the key either.
The proxy asks for uncompressed answers (`Accept-Encoding: identity`) and decodes gzip or deflate
itself should an upstream compress anyway (a stream as it arrives), so clients, usage and
redaction always see plain JSON.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from service.core import request_state
from service.core.errors import (
    ProviderAuthFailed,
    ProviderBadAnswer,
    ProviderError,
    ProviderKeyMissing,
    ProviderStatusError,
    ProviderThrottled,
    ProviderTimeout,
    ProviderUnreachable,
)
from service.core.responses import JSON, ClientResponse, json_bytes
from service.gateway import sse
from service.gateway.providers import RelayRequest
from service.gateway.providers.http_pool import OriginPool, TransportError, UpstreamResponse
from service.gateway.redaction import redactor
from service.governance.usage import ProviderCall, event_usage, measured, normalise_usage, usage_in

log = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
# What an HTTP header value may hold (no CR, LF or other control characters).
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
# Upstream answer headers a client gets (lower case). Its request id is renamed so ours stays in
# X-Request-Id; everything else (cookies, organisation names, internal routing) stays here.
RELAYED_HEADERS = frozenset(
    {
        "retry-after",
        "retry-after-ms",
        "openai-processing-ms",
        "openai-version",
        "x-ratelimit-limit-requests",
        "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-requests",
        "x-ratelimit-reset-tokens",
    }
)
# The paths whose streams report usage only when asked (`stream_options.include_usage`).
USAGE_ON_REQUEST = ("/chat/completions", "/completions")
# `"usage":null` as a key of a chunk, which upstreams add to every chunk once usage was asked for.
_NULL_USAGE = re.compile(rb',\s*"usage"\s*:\s*null(?=\s*[,}])|"usage"\s*:\s*null\s*,')


@dataclass
class _Response:
    """A successful (2xx/3xx) non-streaming answer, its body plain and redacted."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    body_key: str | None = None

    def json(self) -> Any:
        return json.loads(self.body)

    def usage(self) -> dict[str, int] | None:
        return usage_in(self.body)


def usable_key(key: str) -> bool:
    """Whether `key` can go into an Authorization header: one word of printable ASCII."""
    return key.isascii() and key.isprintable() and " " not in key


def upstream_message(body: bytes | None, status: int) -> str:
    """The human-readable message inside an upstream error body (OpenAI shape or otherwise)."""
    default = f"The upstream answered HTTP {status}."
    if not body:
        return default
    try:
        data = json.loads(body)
    except ValueError:
        text = body.decode("utf-8", "replace").strip()
        return text[:500] if text and not text.startswith("<") else default
    if isinstance(data, dict):
        error = data.get("error", data)
        if isinstance(error, str):
            return error[:500]
        if isinstance(error, dict):
            for key in ("message", "detail", "msg"):
                if isinstance(error.get(key), str) and error[key]:
                    return error[key][:500]
    return default


# The longest wait a client is told to come back after; an upstream asking for more is capped.
MAX_RETRY_AFTER = 600.0


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the upstream asked us to wait (`retry-after-ms`, `Retry-After` seconds or date),
    capped at MAX_RETRY_AFTER; None when it asked nothing usable."""
    millis = headers.get("retry-after-ms")
    seconds: float | None = None
    if millis:
        try:
            seconds = float(millis) / 1000
        except ValueError:
            seconds = None
    value = headers.get("retry-after")
    if seconds is None and value:
        try:
            seconds = float(value)
        except ValueError:
            try:
                seconds = parsedate_to_datetime(value).timestamp() - time.time()
            except (TypeError, ValueError, IndexError):
                seconds = None
    if seconds is None or seconds != seconds:  # NaN
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER)


# What a server that streams compressed data writes at each flush (zlib's Z_SYNC_FLUSH): the end
# of a piece that decodes to everything written before the flush.
_FLUSH_MARK = b"\x00\x00\xff\xff"


def _plain(encoding: str) -> bool:
    return encoding.strip().lower() in ("", "identity")


class _Decoder:
    """Undoes the Content-Encoding (gzip or deflate) an upstream used although asked for none,
    piece by piece as the body arrives."""

    def __init__(self, encoding: str, provider: str = "") -> None:
        self.encoding = encoding.strip().lower()
        self.provider = provider
        if self.encoding not in ("gzip", "x-gzip", "deflate"):
            raise ProviderBadAnswer(
                f"The upstream answered with an encoding the proxy cannot read ({self.encoding}).",
                provider=provider,
            )
        # 47: a gzip or a zlib header, either; raw deflate (as some servers send) is tried after.
        self._zlib = zlib.decompressobj(47)
        self._fed = False

    def feed(self, data: bytes) -> bytes:
        try:
            decoded = self._zlib.decompress(data)
        except zlib.error:
            if self._fed or self.encoding != "deflate":
                raise self.failure() from None
            self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
            try:
                decoded = self._zlib.decompress(data)
            except zlib.error:
                raise self.failure() from None
        self._fed = self._fed or bool(data)
        return decoded

    def end(self) -> bytes:
        """What is left once the body has ended."""
        return self._zlib.flush()

    @property
    def complete(self) -> bool:
        return self._zlib.eof

    def failure(self) -> ProviderBadAnswer:
        return ProviderBadAnswer(
            f"The upstream's {self.encoding} answer could not be decoded.", provider=self.provider
        )


def _decoded(body: bytes, encoding: str, provider: str = "") -> bytes:
    """`body` without the Content-Encoding an upstream used although asked for none."""
    if _plain(encoding):
        return body
    decoder = _Decoder(encoding, provider)
    data = decoder.feed(body) + decoder.end()
    if not decoder.complete:
        raise decoder.failure()  # cut short: part of the answer is missing
    return data


class OpenAICompatible:
    """One OpenAI-compatible base URL. Safe to share between threads and greenlets."""

    agent = "openai"

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        prefix: str = "",
        key_provider: Callable[[], str | None],
        missing_key_message: str = "No provider key is configured; set OPENAI_API_KEY.",
        key_header: str = "Authorization",
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
        stream_usage: bool = True,
        connect_timeout: float = 10,
        timeout: float = 300,
        retries: int = 2,
        backoff: float = 0.5,
        backoff_max: float = 8,
        pool_size: int = 100,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = name
        self.prefix = prefix
        self.base_url = self.location = base_url.rstrip("/")
        self._key_provider = key_provider
        self._missing_key_message = missing_key_message
        # `Authorization: Bearer <key>` (OpenAI and most) or the key alone in a header (`api-key`: Azure).
        self._key_header = key_header
        self._extra_headers = dict(headers or {})
        self._extra_query = urlencode(dict(query or {}))
        self.stream_usage = stream_usage
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.backoff_max = backoff_max
        self._sleep = sleep
        # Every request of a worker can hold one upstream connection at once (streams for long),
        # so the pool allows that many; more would wait for a free one.
        self._pool = OriginPool(
            self.base_url, connect_timeout=connect_timeout, read_timeout=timeout, size=pool_size
        )
        self._base_path = urlsplit(self.base_url).path.rstrip("/")

    # --- the calls routes make -------------------------------------------------------------

    def relay(self, request: RelayRequest) -> ClientResponse:
        if request.stream:
            return self._relay_stream(request)
        call = ProviderCall(request.model, deployment=f"{self.name}/{request.model}")
        with measured(call):
            response = self.request(
                request.method,
                request.path,
                body=request.raw,
                query=request.query,
                api_key=request.api_key,
                headers=request.headers,
                retries=request.retries,
            )
        headers = self.relayed_headers(response.headers, response.body_key)
        usage = response.usage

        def record() -> None:
            # Once the answer has gone out: reading the usage and logging it is not the client's wait.
            call.finish(response.status, usage=usage())

        content_type = response.headers.get("content-type", JSON)
        return ClientResponse.of_bytes(
            response.status, response.body, content_type, headers=headers, on_close=record
        )

    def complete(self, body: dict, *, api_key: str | None = None, retries: int | None = None) -> dict:
        """Non-streaming POST /chat/completions of a body the proxy composed; the parsed answer."""
        call = ProviderCall(body.get("model"), deployment=f"{self.name}/{body.get('model')}")
        with measured(call):
            try:
                response = self.request(
                    "POST",
                    "/chat/completions",
                    body=json_bytes(body),
                    api_key=api_key,
                    relayed=False,
                    retries=retries,
                )
            except ProviderKeyMissing as missing:
                # The routes that compose a chat take the caller's own key too.
                raise ProviderKeyMissing(
                    f"{missing.message} Or send 'api-key' with the request.",
                    provider=self.name,
                    param="api-key",
                ) from None
            data = self._json_object(response)
        call.finish(response.status, usage=normalise_usage(data.get("usage")))
        return data

    def models(self) -> list[dict]:
        """GET /models: the `data` list of model objects."""
        call = ProviderCall(None, deployment=self.name)
        with measured(call):
            data = self._json_object(self.request("GET", "/models", retries=0))
        call.finish(200)
        models = data.get("data")
        if not isinstance(models, list):
            raise ProviderBadAnswer("The upstream's model list has no 'data' array.", provider=self.name)
        return [model for model in models if isinstance(model, dict)]

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        query: str = "",
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        relayed: bool = True,
        retries: int | None = None,
    ) -> _Response:
        """Send one request (retrying what may be retried) and return a 2xx/3xx answer, read whole.

        Raises ProviderError for anything else; the provider's own error status carries its
        status, body (with the provider key blanked out) and message.
        """
        answer, key = self._open(method, path, body, query, api_key, headers, relayed, retries)
        try:
            data = answer.read()
        except TransportError as error:
            raise self._connection_error(error) from None
        data = _decoded(data, answer.headers.get("content-encoding", ""), self.name)
        return _Response(answer.status, answer.headers, self.redact(data, key), key)

    def stream(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        query: str = "",
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        retries: int | None = None,
    ) -> UpstreamStream:
        """Open a streaming request. Retries while opening only; nothing has been relayed yet."""
        answer, key = self._open(method, path, body, query, api_key, headers, True, retries)
        try:
            return UpstreamStream(self, answer, key)
        except ProviderError:
            answer.close()  # an encoding it cannot read: nothing of it is relayed
            raise

    # --- relaying a stream -------------------------------------------------------------------

    def _relay_stream(self, request: RelayRequest) -> ClientResponse:
        raw, strip_usage = self._asking_for_usage(request)
        call = ProviderCall(
            request.model,
            deployment=f"{self.name}/{request.model}",
            stream=True,
            prompt_estimate=request.prompt_estimate,
        )
        with measured(call):
            stream = self.stream(
                request.method,
                request.path,
                body=raw,
                query=request.query,
                api_key=request.api_key,
                headers=request.headers,
                retries=request.retries,
            )
        headers = [
            ("Content-Type", stream.headers.get("content-type", "text/event-stream")),
            *sse.STREAM_HEADERS,
            *self.relayed_headers(stream.headers, stream.key),
        ]
        frames = stream.frames(call, strip_usage=strip_usage)
        body = sse.relay_events(frames, call, stream.close)
        # Closing also when the events never start (a client gone at once); closing twice is fine.
        return ClientResponse(stream.status, headers, body, stream.close)

    def _asking_for_usage(self, request: RelayRequest) -> tuple[bytes | None, bool]:
        """The body to send, and whether the stream's usage must be hidden from the client.

        A stream reports its tokens only when asked; when the client did not ask, the proxy asks
        for it and removes it again, so the client sees exactly the stream it asked for.
        """
        body = request.body
        if not (self.stream_usage and request.path in USAGE_ON_REQUEST and isinstance(body, dict)):
            return request.raw, False
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage") is True:
            return request.raw, False
        if options is not None and not isinstance(options, dict):
            return request.raw, False  # the upstream will say what is wrong with it
        asked = {**body, "stream_options": {**(options or {}), "include_usage": True}}
        return json_bytes(asked), True

    # --- helpers ---------------------------------------------------------------------------

    def provider_key(self, api_key: str | None = None) -> str:
        """The caller's key when given, else the configured one; ProviderKeyMissing if none."""
        key = api_key or self._key_provider()
        if not key:
            raise ProviderKeyMissing(self._missing_key_message, provider=self.name)
        if not usable_key(key):
            whose = "sent with the request" if api_key else "configured"
            raise ProviderKeyMissing(
                f"The provider key {whose} has spaces or control characters; it cannot be sent.",
                provider=self.name,
            )
        return key

    @staticmethod
    def redact(data: bytes, key: str | None) -> bytes:
        """Blank the provider key out of `data`, in case an upstream echoes it back."""
        redacting = redactor(key) if key else None
        return redacting.bytes(data) if redacting else data

    @staticmethod
    def _redacted_value(value: str, key: str | None) -> str:
        redacting = redactor(key) if key else None
        return redacting.text(value) if redacting else value

    def relayed_headers(self, upstream_headers: Mapping[str, str], key: str | None) -> list[tuple[str, str]]:
        """The upstream's headers a client gets (RELAYED_HEADERS; its request id renamed)."""
        relayed = []
        for name, value in upstream_headers.items():
            if name == "retry-after":
                seconds = parse_retry_after({name: value})
                if seconds is not None:
                    relayed.append(("Retry-After", str(max(1, round(seconds)))))
            elif name in RELAYED_HEADERS:
                relayed.append((name, self._redacted_value(value, key)))
            elif name == "x-request-id":
                # Ours stays in X-Request-Id. Blanked before it is cut, so no piece of a key stays.
                relayed.append(("X-Upstream-Request-Id", self._redacted_value(value, key)[:200]))
        return relayed

    def _open(
        self,
        method: str,
        path: str,
        body: bytes | None,
        query: str,
        api_key: str | None,
        headers: Mapping[str, str] | None,
        relayed: bool,
        retries: int | None,
    ) -> tuple[UpstreamResponse, str]:
        """Send the request until a 2xx/3xx answer opens, retrying what may be retried; the
        answer (body unread) and the provider key used. An error answer's body is read here."""
        key = self.provider_key(api_key)
        target = self._target(path, query)
        request_headers = self._headers(key, headers)
        attempt = 0
        while True:
            attempt += 1
            try:
                answer = self._pool.request(method, target, request_headers, body)
                if answer.status < 400:
                    return answer, key
                data = _decoded(answer.read(), answer.headers.get("content-encoding", ""), self.name)
            except TransportError as error:
                failure = self._connection_error(error)
                # A read timeout is not retried: the caller has already waited the whole timeout.
                if error.kind != "timeout" and self._wait_before_retry(attempt, None, failure, retries):
                    continue
                raise failure from None
            failure = self._status_error(answer.status, answer.headers, data, key, api_key, relayed)
            retry_after = failure.retry_after if isinstance(failure, ProviderThrottled) else None
            if answer.status in RETRYABLE_STATUSES and self._wait_before_retry(
                attempt, retry_after, failure, retries
            ):
                continue
            raise failure

    def _target(self, path: str, query: str) -> str:
        """The request target on the upstream host: the base URL's path, `path`, the query."""
        query = "&".join(part for part in (query, self._extra_query) if part)
        url = self._base_path + path
        return f"{url}?{query}" if query else url

    def _headers(self, key: str, extra: Mapping[str, str] | None) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            # Plain bodies: usage, key redaction and event framing read them as they come.
            "Accept-Encoding": "identity",
            "User-Agent": "aiproxy",
        }
        if extra:
            # A value with CR or LF would let a caller add headers (or requests) of its own.
            headers.update((name, value) for name, value in extra.items() if _HEADER_VALUE.fullmatch(value))
        headers.update(self._extra_headers)
        # Last: nothing a caller passes replaces it.
        if self._key_header.lower() == "authorization":
            headers["Authorization"] = f"Bearer {key}"
        else:
            headers[self._key_header] = key
        return headers

    def _json_object(self, response: _Response) -> dict:
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ProviderBadAnswer(
                "The upstream answered with something other than a JSON object.", provider=self.name
            )
        return data

    def _status_error(
        self,
        status: int,
        headers: Mapping[str, str],
        data: bytes,
        key: str,
        caller_key: str | None,
        relayed: bool,
    ) -> ProviderError:
        data = self.redact(data or b"", key)
        message = upstream_message(data, status)
        if status == 401 and not caller_key:
            # The upstream refused the key this proxy holds. Its message may quote part of the key,
            # and SDKs would blame the caller's own key for a 401: neither reaches the client.
            log.error("The upstream %s refused the configured provider key (HTTP 401)", self.name)
            return ProviderAuthFailed(
                f"The model's provider refused this proxy's credentials (upstream '{self.name}', HTTP 401); "
                "the proxy's operators must fix its provider key.",
                provider=self.name,
            )
        if status == 403 and not caller_key and not relayed:
            return ProviderAuthFailed(
                f"The model's provider refused this proxy's credentials: {message}", provider=self.name
            )
        relayed_headers = dict(self.relayed_headers(headers, key))
        retry_after = parse_retry_after(headers)
        options: dict[str, Any] = {
            "provider_status": status,
            "body": data,
            "relayed": relayed,
            "provider": self.name,
            "headers": relayed_headers,
        }
        if status == 429:
            return ProviderThrottled(message, retry_after=retry_after, **options)
        return ProviderStatusError(message, **options)

    def _connection_error(self, error: TransportError) -> ProviderError:
        if error.kind == "connect_timeout":
            return ProviderTimeout(
                f"Could not connect to the upstream within {self.connect_timeout:g} seconds.",
                provider=self.name,
            )
        if error.kind == "timeout":
            return ProviderTimeout(
                f"The upstream did not answer within {self.timeout:g} seconds.", provider=self.name
            )
        if error.kind == "connect":
            return ProviderUnreachable(
                f"The upstream could not be reached ({error.reason}).", provider=self.name
            )
        return ProviderUnreachable(f"The upstream broke the connection ({error.reason}).", provider=self.name)

    def _wait_before_retry(
        self, attempt: int, retry_after: float | None, failure: ProviderError, retries: int | None
    ) -> bool:
        """Sleep before retry number `attempt` and return True, or False when out of retries."""
        if attempt > (self.retries if retries is None else retries):
            return False
        if retry_after is not None:
            if retry_after > self.backoff_max:
                return False  # waiting that long helps nobody; the caller gets the 429 now
            delay = retry_after
        else:
            ceiling = min(self.backoff_max, self.backoff * 2 ** (attempt - 1))
            delay = random.uniform(ceiling / 2, ceiling)  # jitter spreads out retry storms
        log.info(
            "Retrying upstream request in %.2fs after %s",
            delay,
            f"HTTP {failure.provider_status}" if isinstance(failure, ProviderStatusError) else failure.kind,
            extra={"attempt": attempt + 1, "deployment": self.name},
        )
        self._sleep(delay)
        return True


class UpstreamStream:
    """An open streaming answer; always `close()` it.

    Closing before the end closes the upstream connection, so the upstream sees the request go
    away (a client that disconnects stops the generation it asked for).
    """

    def __init__(self, upstream: OpenAICompatible, answer: UpstreamResponse, key: str) -> None:
        self._upstream = upstream
        self._answer = answer
        self.key = key
        self.status = answer.status
        self.headers = answer.headers
        self.closed = False
        # A compressed stream (asked for none) is decoded here: clients get plain events, and
        # usage and redaction read them.
        encoding = answer.headers.get("content-encoding", "")
        self._decoder = None if _plain(encoding) else _Decoder(encoding, upstream.name)
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
                frame = self._usage_event(frame, call, strip_usage)
                if frame is None:
                    continue
            elif strip_usage and b"null" in frame:
                frame = _NULL_USAGE.sub(b"", frame)
            if events is None:
                yield frame
            else:
                yield from events.feed(frame)

    def _read_line(self) -> bytes:
        try:
            return self._answer.read_line() if self._decoder is None else self._decoded_line()
        except TransportError as error:
            if error.kind == "timeout":
                raise ProviderTimeout(
                    f"The upstream sent nothing for {self._upstream.timeout:g} seconds mid-stream.",
                    provider=self._upstream.name,
                ) from None
            raise ProviderUnreachable(
                "The upstream closed the stream before its end.", provider=self._upstream.name
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
            piece = self._answer.read_until(_FLUSH_MARK)
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


def forwarded_headers(environ: Mapping[str, Any]) -> dict[str, str]:
    """The request headers that go upstream: the few a client may pass on, and our request id."""
    headers = {"OpenAI-Beta": environ["HTTP_OPENAI_BETA"]} if "HTTP_OPENAI_BETA" in environ else {}
    headers["X-Request-Id"] = request_state.current_id()
    return headers
