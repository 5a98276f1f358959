"""`OpenAICompatible`: one OpenAI-compatible base URL, the calls routes make, and the loop that
sends a request until an answer opens, retrying what may be retried (see the package's docstring)."""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from service.core.errors import (
    ProviderBadAnswer,
    ProviderError,
    ProviderKeyMissing,
    ProviderStatusError,
    ProviderThrottled,
)
from service.core.responses import JSON, ClientResponse, json_bytes
from service.gateway import sse
from service.gateway.providers import RelayRequest
from service.gateway.providers.http_pool import OriginPool, ReadTimeout, TransportError, UpstreamResponse
from service.gateway.providers.openai.decoding import decoded
from service.gateway.providers.openai.errors import connection_error, status_error
from service.gateway.providers.openai.headers import relayed_headers, request_headers, usable_key
from service.gateway.providers.openai.stream import UpstreamStream, asking_for_usage
from service.gateway.redaction import redactor
from service.governance.usage import ProviderCall, measured, model_in, normalise_usage, usage_in

log = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


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
        headers = relayed_headers(response.headers, response.body_key)
        usage = response.usage

        def record() -> None:
            # Once the answer has gone out: reading the usage and logging it is not the client's wait.
            call.finish(response.status, usage=usage(), served_model=model_in(response.body))

        content_type = response.headers.get("content-type", JSON)
        return ClientResponse.of_bytes(
            response.status, response.body, content_type, headers=headers, on_close=record
        )

    def complete(
        self, body: dict[str, Any], *, api_key: str | None = None, retries: int | None = None
    ) -> dict[str, Any]:
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
        call.finish(response.status, usage=normalise_usage(data.get("usage")), served_model=data.get("model"))
        return data

    def models(self) -> list[dict[str, Any]]:
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
        return _Response(answer.status, answer.headers, self.read_answer(answer, key), key)

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
            return UpstreamStream(answer, key, provider=self.name, timeout=self.timeout)
        except ProviderError:
            answer.close()  # an encoding it cannot read: nothing of it is relayed
            raise

    def open(
        self,
        method: str,
        path: str,
        *,
        body: bytes | Iterable[bytes] | None = None,
        length: int | None = None,
        query: str = "",
        headers: Mapping[str, str] | None = None,
        retries: int | None = None,
    ) -> tuple[UpstreamResponse, str]:
        """Send a client's request whose answer the caller reads itself (uploads, audio, files):
        the 2xx/3xx answer, its body unread, and the provider key used (to blank out of it).

        `body` may be chunks relayed as they arrive (`length` bytes when known): such a body
        can be sent once only, so it is never retried.
        """
        if body is not None and not isinstance(body, bytes):
            retries = 0
        return self._open(method, path, body, query, None, headers, True, retries, length=length)

    def read_answer(self, answer: UpstreamResponse, key: str) -> bytes:
        """The whole body of an answer `open` returned, decoded and the key blanked out."""
        try:
            data = answer.read()
        except TransportError as error:
            raise self._connection_error(error) from None
        return self.redact(decoded(data, answer.headers.get("content-encoding", ""), self.name), key)

    def _relay_stream(self, request: RelayRequest) -> ClientResponse:
        raw, strip_usage = asking_for_usage(request, self.stream_usage)
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
            *relayed_headers(stream.headers, stream.key),
        ]
        chunks = stream.chunks(call, strip_usage=strip_usage)
        body = sse.relay_events(chunks, call, stream.close)
        # Closing also when the events never start (a client gone at once); closing twice is fine.
        return ClientResponse(stream.status, headers, body, stream.close)

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

    def _open(
        self,
        method: str,
        path: str,
        body: bytes | Iterable[bytes] | None,
        query: str,
        api_key: str | None,
        headers: Mapping[str, str] | None,
        relayed: bool,
        retries: int | None,
        *,
        length: int | None = None,
    ) -> tuple[UpstreamResponse, str]:
        """Send the request until a 2xx/3xx answer opens, retrying what may be retried; the
        answer (body unread) and the provider key used. An error answer's body is read here."""
        key = self.provider_key(api_key)
        target = self._target(path, query)
        sent_headers = request_headers(key, self._key_header, headers, self._extra_headers)
        attempt = 0
        while True:
            attempt += 1
            try:
                answer = self._pool.request(method, target, sent_headers, body, length=length)
                if answer.status < 400:
                    return answer, key
                data = decoded(answer.read(), answer.headers.get("content-encoding", ""), self.name)
            except ReadTimeout as error:
                # Not retried: the caller has already waited the whole timeout.
                raise self._connection_error(error) from None
            except TransportError as error:
                failure = self._connection_error(error)
                if self._wait_before_retry(attempt, None, failure, retries):
                    continue
                raise failure from None
            failure = status_error(self.name, answer.status, answer.headers, data, key, api_key, relayed)
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

    def _json_object(self, response: _Response) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ProviderBadAnswer(
                "The upstream answered with something other than a JSON object.", provider=self.name
            )
        return data

    def _connection_error(self, error: TransportError) -> ProviderError:
        return connection_error(self.name, error, connect_timeout=self.connect_timeout, timeout=self.timeout)

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
