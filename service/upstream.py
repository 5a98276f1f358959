"""The one client of the OpenAI-compatible provider: base URL, key, timeouts, retries, errors.

Routes never build provider requests themselves; they call `upstream_client()` and get either a
response or an `UpstreamError` whose `kind` says what went wrong:

- `"http"`: the upstream answered 4xx/5xx (`status`, raw `body`, upstream `message`);
- `"unreachable"`: no connection could be made, or it broke before an answer;
- `"timeout"`: the upstream took longer than AIPROXY_UPSTREAM_TIMEOUT (or could not be connected
  to within AIPROXY_UPSTREAM_CONNECT_TIMEOUT);
- `"no_key"`: no provider key is configured and the caller gave none.

Non-streaming requests are retried on 429/500/502/503/504 and on connection errors, with
exponential backoff and jitter, honouring `Retry-After`. A stream is retried only while opening
(before the first byte reaches the client), never afterwards. Read timeouts are not retried: the
caller has already waited the whole timeout once.

Connections are pooled per process (`service.http_pool`, on gevent sockets), up to
AIPROXY_WORKER_CONNECTIONS open to the upstream at once.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from service.http_pool import Answer, OriginPool, TransportError

log = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
_FILTERED = b"[FILTERED]"
_RATE_LIMIT_HEADERS = ("retry-after", "x-ratelimit")
_EXTENSION = "aiproxy.upstream"
# What an HTTP header value may hold (no CR, LF or other control characters).
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")


class UpstreamError(Exception):
    """The upstream could not give an answer; `kind` is http, unreachable, timeout or no_key."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        body: bytes | None = None,
        retry_after: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.message = message
        self.body = body
        self.retry_after = retry_after
        self.headers = dict(headers or {})

    def __repr__(self) -> str:
        return f"UpstreamError(kind={self.kind!r}, status={self.status!r}, message={self.message!r})"


@dataclass
class UpstreamResponse:
    """A successful (2xx/3xx) non-streaming answer."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    latency: float  # seconds spent on the upstream, every attempt and backoff included
    attempts: int

    def json(self) -> Any:
        return json.loads(self.body)


class UpstreamStream:
    """An open streaming answer. Iterate for the bytes as they arrive; always `close()` it.

    Iteration raises `UpstreamError` (timeout or unreachable) when the upstream stalls or breaks
    mid-stream. Closing before the end closes the upstream connection, so the upstream sees the
    request go away (a client that disconnects stops the generation it asked for).
    """

    def __init__(self, answer: Answer, started: float, timeout: float) -> None:
        self._answer = answer
        self._timeout = timeout
        self.status = answer.status
        self.headers = answer.headers
        self.started = started
        self.opened = time.perf_counter()  # when the upstream's headers arrived
        self.finished: float | None = None
        self.complete = False

    def read_chunk(self) -> bytes:
        """The next bytes the upstream sent (waiting for them); b"" at the end of the stream.

        A plain method rather than a generator: thousands of streams wait in here at once, and
        each generator layer would add to every waiting greenlet's saved stack.
        """
        try:
            chunk = self._answer.read_available()
        except TransportError as error:
            self.finished = time.perf_counter()
            if error.kind == "timeout":
                raise UpstreamError(
                    "timeout", f"The upstream sent nothing for {self._timeout:g} seconds mid-stream."
                ) from None
            raise UpstreamError("unreachable", "The upstream closed the stream before its end.") from None
        if not chunk:
            self.complete = True
            self.finished = time.perf_counter()
        return chunk

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read_chunk():
            yield chunk

    def close(self) -> None:
        """Fully read: the connection goes back to the pool. Unread data left: the connection is
        closed, which is what tells the upstream to stop (closing twice is fine)."""
        if self.finished is None:
            self.finished = time.perf_counter()
        self._answer.close()


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
            return error
        if isinstance(error, dict):
            for key in ("message", "detail", "msg"):
                if isinstance(error.get(key), str) and error[key]:
                    return error[key]
    return default


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the upstream asked us to wait (`retry-after-ms`, `Retry-After` seconds or date)."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


class UpstreamClient:
    """Talks to one OpenAI-compatible base URL. Safe to share between threads and greenlets."""

    def __init__(
        self,
        *,
        base_url: str,
        key_provider: Callable[[], str | None],
        missing_key_message: str = "No provider key is configured; set OPENAI_API_KEY.",
        connect_timeout: float = 10,
        timeout: float = 300,
        retries: int = 2,
        backoff: float = 0.5,
        backoff_max: float = 8,
        pool_size: int = 100,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._key_provider = key_provider
        self._missing_key_message = missing_key_message
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

    def chat_completion(self, body: dict, *, api_key: str | None = None) -> dict:
        """Non-streaming POST /chat/completions (with retries); the parsed answer."""
        response = self.request("POST", "/chat/completions", body=json.dumps(body).encode(), api_key=api_key)
        return self._json_object(response)

    def list_models(self, *, api_key: str | None = None) -> dict:
        """GET /models: `{"object": "list", "data": [...]}`."""
        return self._json_object(self.request("GET", "/models", api_key=api_key))

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        query: str = "",
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> UpstreamResponse:
        """Send one request (retrying what may be retried) and return a 2xx/3xx answer.

        Raises `UpstreamError` for anything else; an http error carries the upstream's status,
        body (with the provider key blanked out) and message.
        """
        answer, data, started, attempts, key = self._open(
            method, path, body=body, query=query, api_key=api_key, headers=headers, read_body=True
        )
        return UpstreamResponse(
            answer.status, answer.headers, self.redact(data, key), time.perf_counter() - started, attempts
        )

    def stream(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        query: str = "",
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> UpstreamStream:
        """Open a streaming request. Retries while opening only; nothing has been relayed yet."""
        answer, _, started, _, _ = self._open(
            method, path, body=body, query=query, api_key=api_key, headers=headers, read_body=False
        )
        return UpstreamStream(answer, started, self.timeout)

    def _open(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None,
        query: str,
        api_key: str | None,
        headers: Mapping[str, str] | None,
        read_body: bool,
    ) -> tuple[Answer, bytes, float, int, str]:
        """Send the request until a 2xx/3xx answer opens, retrying what may be retried.

        Returns the answer, its body (read with `read_body`; otherwise b"", the body left unread
        for the caller), when the first attempt started, the number of attempts and the provider
        key used. An error answer's body is always read here.
        """
        key = self.provider_key(api_key)
        target = self._url(path, query)
        request_headers = self._headers(key, headers)
        started = time.perf_counter()
        attempt = 0
        while True:
            attempt += 1
            try:
                answer = self._pool.request(method, target, request_headers, body)
                data = answer.read() if read_body or answer.status >= 400 else b""
            except TransportError as error:
                failure = self._connection_error(error)
                # A read timeout is not retried: the caller has already waited the whole timeout.
                if error.kind != "timeout" and self._wait_before_retry(attempt, None, failure):
                    continue
                raise failure from None
            if answer.status < 400:
                return answer, data, started, attempt, key
            failure = self._http_error(answer.status, answer.headers, data, key)
            if answer.status in RETRYABLE_STATUSES and self._wait_before_retry(
                attempt, parse_retry_after(answer.headers), failure
            ):
                continue
            raise failure

    # --- helpers ---------------------------------------------------------------------------

    def provider_key(self, api_key: str | None = None) -> str:
        """The caller's key when given, else the configured one; UpstreamError(no_key) if none."""
        key = api_key or self._key_provider()
        if not key:
            raise UpstreamError("no_key", self._missing_key_message)
        if not usable_key(key):
            whose = "sent with the request" if api_key else "configured"
            raise UpstreamError(
                "no_key", f"The provider key {whose} has spaces or control characters; it cannot be sent."
            )
        return key

    def redact(self, data: bytes, key: str | None) -> bytes:
        """Blank the provider key out of `data`, in case an upstream echoes it back."""
        if key and len(key) >= 8:
            encoded = key.encode()
            if encoded in data:
                return data.replace(encoded, _FILTERED)
        return data

    def _url(self, path: str, query: str) -> str:
        """The request target on the upstream host: the base URL's path, `path`, the query."""
        url = self._base_path + path
        return f"{url}?{query}" if query else url

    @staticmethod
    def _headers(key: str, extra: Mapping[str, str] | None) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            "User-Agent": "aiproxy",
        }
        if extra:
            # A value with CR or LF would let a caller add headers (or requests) of its own.
            headers.update((name, value) for name, value in extra.items() if _HEADER_VALUE.fullmatch(value))
        headers["Authorization"] = f"Bearer {key}"  # last: nothing the caller passes replaces it
        return headers

    def _json_object(self, response: UpstreamResponse) -> dict:
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise UpstreamError(
                "http", "The upstream answered with something other than a JSON object.", status=502
            )
        return data

    def _http_error(self, status: int, headers: Mapping[str, str], data: bytes, key: str) -> UpstreamError:
        data = self.redact(data or b"", key)
        message = upstream_message(data, status)
        return UpstreamError(
            "http",
            message,
            status=status,
            body=data,
            retry_after=headers.get("retry-after"),
            headers={k: v for k, v in headers.items() if k.lower().startswith(_RATE_LIMIT_HEADERS)},
        )

    def _connection_error(self, error: TransportError) -> UpstreamError:
        if error.kind == "connect_timeout":
            return UpstreamError(
                "timeout", f"Could not connect to the upstream within {self.connect_timeout:g} seconds."
            )
        if error.kind == "timeout":
            return UpstreamError("timeout", f"The upstream did not answer within {self.timeout:g} seconds.")
        if error.kind == "connect":
            return UpstreamError("unreachable", f"Could not reach the upstream ({error.reason}).")
        return UpstreamError("unreachable", f"The upstream broke the connection ({error.reason}).")

    def _wait_before_retry(self, attempt: int, retry_after: float | None, failure: UpstreamError) -> bool:
        """Sleep before retry number `attempt` and return True, or False when out of retries."""
        if attempt > self.retries:
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
            f"HTTP {failure.status}" if failure.kind == "http" else failure.kind,
            extra={"attempt": attempt + 1},
        )
        self._sleep(delay)
        return True


def build_client(settings: Any, secrets: Any) -> UpstreamClient:
    """An UpstreamClient for the app's settings and secret store."""
    from service.secrets import OPENAI_API_KEY, env_variable

    where = env_variable(OPENAI_API_KEY)
    if secrets.uses_aws:
        where += f" or the secret {secrets.source_of(OPENAI_API_KEY)}"
    return UpstreamClient(
        base_url=settings.openai_base_url,
        key_provider=lambda: secrets.get(OPENAI_API_KEY),
        missing_key_message=f"No provider key is configured; set {where}.",
        connect_timeout=settings.upstream_connect_timeout,
        timeout=settings.upstream_timeout,
        retries=settings.upstream_retries,
        backoff=settings.upstream_backoff,
        backoff_max=settings.upstream_backoff_max,
        pool_size=settings.worker_connections,
    )


def upstream_client() -> UpstreamClient:
    """The current app's client (inside a request or app context); made on first use."""
    from service import runtime

    return runtime.app_scoped(_EXTENSION, lambda current: build_client(current.settings, current.secrets))
