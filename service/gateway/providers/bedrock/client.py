"""The Amazon Bedrock runtime provider: Converse and ConverseStream behind OpenAI chat completions.

Region, credentials and endpoint come from the standard AWS chain (the task role in ECS;
AWS_REGION, AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL_BEDROCK_RUNTIME and friends elsewhere); the same
variables in config.txt are honoured too (`service.config.aws`). Timeouts are the upstream ones
(AIPROXY_UPSTREAM_*).

Retries are botocore's own (standard mode: throttling, 5xx and connection errors, with backoff),
set to AIPROXY_UPSTREAM_RETRIES; the proxy adds no retry loop of its own on top, so one failing
request costs at most 1 + AIPROXY_UPSTREAM_RETRIES calls.

Every failure is a `service.core.errors.ProviderError` with the status the client should see and an
OpenAI-shaped message (never a 500).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from service.config import aws
from service.core.errors import (
    ProviderAuthFailed,
    ProviderError,
    ProviderKeyMissing,
    ProviderStatusError,
    ProviderThrottled,
    ProviderTimeout,
    ProviderUnreachable,
    RequestRejected,
)
from service.core.responses import ClientResponse
from service.gateway import sse
from service.gateway.providers import RelayRequest
from service.gateway.providers.bedrock.stream import ChoiceStream, ChunkWriter
from service.gateway.providers.bedrock.translate import (
    add_usage,
    chat_completion,
    choice_count,
    completion_id,
    converse_request,
)
from service.governance.usage import ProviderCall, measured

log = logging.getLogger(__name__)

NAME = "bedrock"
PREFIX = "bedrock/"
CONVERSE = "Converse"
CONVERSE_STREAM = "ConverseStream"
# The IAM action each operation needs (named in 403 answers).
PERMISSIONS = {CONVERSE: "bedrock:InvokeModel", CONVERSE_STREAM: "bedrock:InvokeModelWithResponseStream"}

# Bedrock error code -> status the proxy answers with. Codes in stream exception events start
# lower-case (`throttlingException`); they are capitalised before the lookup.
STATUSES = {
    "ValidationException": 400,
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "ThrottlingException": 429,
    "ServiceQuotaExceededException": 429,
    "ModelNotReadyException": 503,
    "ServiceUnavailableException": 503,
    "ModelTimeoutException": 504,
    "InternalServerException": 502,
    "ModelErrorException": 502,
    "ModelStreamErrorException": 502,
}
# The proxy's own AWS credentials are wrong: like a missing provider key, not the caller's fault.
_CREDENTIAL_ERRORS = ("UnrecognizedClientException", "InvalidSignatureException", "ExpiredTokenException")


def boto_client(
    source: Mapping[str, str],
    *,
    connect_timeout: float,
    read_timeout: float,
    retries: int,
    max_pool_connections: int = 50,
) -> Any:
    """A `bedrock-runtime` client; explicit AWS_* values in `source` win over boto3's own chain."""
    from botocore.config import Config

    config = Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"total_max_attempts": retries + 1, "mode": "standard"},
        # Gevent workers hold many requests at once; keep their connections for reuse.
        max_pool_connections=max_pool_connections,
    )
    return aws.client(source, "bedrock-runtime", config=config, endpoint_url=_endpoint(source))


def _endpoint(source: Mapping[str, str]) -> str | None:
    """The Bedrock runtime endpoint the settings name, if any (else boto3 derives it from the region)."""
    return source.get("AWS_ENDPOINT_URL_BEDROCK_RUNTIME") or source.get("AWS_ENDPOINT_URL") or None


def map_error(
    error: Exception, operation: str, model_id: str, read_timeout: float, *, relayed: bool = True
) -> ProviderError | RequestRejected:
    """The provider error for anything boto3 raised while calling `operation` on `model_id`.

    `relayed`: the caller's own request (its refusals keep Bedrock's status); else the proxy
    composed it (grading), and a refusal is a 400, a failure a 502.
    """
    from botocore import exceptions as boto
    from urllib3 import exceptions as http

    if isinstance(error, ProviderError | RequestRejected):
        return error
    if isinstance(error, boto.ClientError):
        details = error.response.get("Error", {})
        code = str(details.get("Code") or "")
        code = code[:1].upper() + code[1:]
        message = str(details.get("Message") or code or "no details")
        log.warning("Amazon Bedrock %s on %s failed: %s: %s", operation, model_id, code, message)
        if code in _CREDENTIAL_ERRORS:
            return ProviderAuthFailed(
                "Amazon Bedrock rejected the proxy's AWS credentials",
                status=503,
                provider=NAME,
                code=code,
                kind=code,
            )
        status = STATUSES.get(code)
        if status is None:
            http_status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 502
            status = http_status if 400 <= http_status < 500 else 502
        text = _client_error_message(status, code, message, operation, model_id)
        if status == 429:
            return ProviderThrottled(text, relayed=relayed, provider=NAME, code=code, kind=code)
        return ProviderStatusError(
            text, provider_status=status, relayed=relayed, provider=NAME, code=code, kind=code or "bedrock"
        )
    if isinstance(error, boto.ParamValidationError):
        return ProviderStatusError(
            f"Amazon Bedrock rejected the request: {error}",
            provider_status=400,
            relayed=relayed,
            provider=NAME,
            code="ValidationException",
            kind="ValidationException",
        )
    if isinstance(error, boto.ReadTimeoutError | http.ReadTimeoutError):
        return ProviderTimeout(
            f"Amazon Bedrock did not answer within {read_timeout:g} seconds", provider=NAME
        )
    if isinstance(error, boto.NoRegionError):
        return ProviderKeyMissing(
            "Amazon Bedrock is not configured: set AWS_REGION to the region to use", provider=NAME
        )
    if isinstance(error, boto.NoCredentialsError | boto.PartialCredentialsError):
        return ProviderKeyMissing(
            "Amazon Bedrock is not configured: no AWS credentials were found", provider=NAME
        )
    if isinstance(error, boto.ConnectionError | boto.HTTPClientError | http.HTTPError):
        log.warning("Amazon Bedrock %s on %s failed: %s", operation, model_id, error)
        return ProviderUnreachable("Could not reach Amazon Bedrock; try again", provider=NAME)
    raise error  # a bug, not a Bedrock failure: let it be reported


def _client_error_message(status: int, code: str, message: str, operation: str, model_id: str) -> str:
    if status == 403 and code == "AccessDeniedException":
        # AWS's own message names the account and role; the log has it, the caller gets the fix.
        return (
            f"Amazon Bedrock denied access to model '{model_id}': the proxy's AWS role needs the "
            f"permission {PERMISSIONS[operation]} on this model or inference profile, and access to "
            "the model must be enabled in the Bedrock console"
        )
    if status == 429:
        return f"Amazon Bedrock is throttling requests to model '{model_id}': {message}"
    if code == "ServiceUnavailableException":
        return f"Amazon Bedrock is unavailable right now; try again shortly: {message}"
    if code == "ModelNotReadyException":
        return f"Amazon Bedrock model '{model_id}' is not ready yet; try again shortly: {message}"
    if status == 504:
        return f"Amazon Bedrock model '{model_id}' took too long to answer: {message}"
    if status == 404:
        return f"Amazon Bedrock has no model '{model_id}' here: {message}"
    if status < 500:
        return f"Amazon Bedrock rejected the request: {message}"
    return f"Amazon Bedrock failed ({code}): {message}"


class BedrockStream:
    """The chunks of a streamed chat completion; `usage` is set once the stream has ended."""

    def __init__(
        self, streams: list[Any], writer: ChunkWriter, map_error: Callable[[Exception], Exception]
    ) -> None:
        self.usage: dict[str, int] | None = None
        self._streams = streams
        self._chunks = self._relay(writer, map_error)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self._chunks

    def close(self) -> None:
        """Stop reading from Bedrock (the client went away); safe to call more than once."""
        self._chunks.close()
        _close_all(self._streams)

    def _relay(
        self, writer: ChunkWriter, map_error: Callable[[Exception], Exception]
    ) -> Generator[dict[str, Any]]:
        total: dict[str, int] = {}
        try:
            # The n choices are relayed one after the other; OpenAI clients key them by index.
            for index, events in enumerate(self._streams):
                choice = ChoiceStream(writer, index)
                try:
                    for event in events:
                        yield from choice.chunks(event)
                except Exception as error:
                    raise map_error(error) from error
                total = add_usage(total, choice.usage or {})
            self.usage = total
            if writer.include_usage:
                yield writer.usage_chunk(total)
        finally:
            _close_all(self._streams)


class BedrockProvider:
    """Serves OpenAI chat-completions bodies with Bedrock's Converse API. Thread-safe.

    Models are Bedrock model ids or inference profiles (the `bedrock/` routing prefix removed).
    """

    name = NAME
    prefix = PREFIX
    agent = NAME

    def __init__(
        self,
        factory: Callable[[], Any],
        read_timeout: float,
        listed: tuple[str, ...] = (),
        location: str = "bedrock:default",
    ) -> None:
        self.location = location
        self._factory = factory
        self._read_timeout = read_timeout
        self._listed = listed
        self._client: Any = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Any) -> BedrockProvider:
        def factory() -> Any:
            return boto_client(
                settings.source,
                connect_timeout=settings.upstream_connect_timeout,
                read_timeout=settings.upstream_timeout,
                retries=settings.upstream_retries,
                # As many connections as the worker holds requests, like the upstream pool.
                max_pool_connections=settings.worker_connections,
            )

        where = _endpoint(settings.source) or aws.region(settings.source) or "default"
        return cls(factory, settings.upstream_timeout, settings.bedrock_models, f"bedrock:{where}")

    # --- the provider interface ----------------------------------------------------------------

    def relay(self, request: RelayRequest) -> ClientResponse:
        if request.path != "/chat/completions":
            raise RequestRejected(
                f"Amazon Bedrock models serve /v1/chat/completions only, not /v1{request.path}.",
                param="model",
            )
        body = {**(request.body or {}), "model": PREFIX + (request.model or "")}
        call = ProviderCall(
            PREFIX + (request.model or ""),
            deployment=f"{NAME}/{request.model}",
            stream=request.stream,
            prompt_estimate=request.prompt_estimate,
        )
        if not request.stream:
            with measured(call):
                answer = self.chat(body)
            # Bedrock's answers name no model: the one invoked is the one that served.
            call.finish(200, usage=answer["usage"], served_model=request.model)
            return ClientResponse.json(answer)
        with measured(call):
            stream = self.open_stream(body)
        frames = (sse.event(chunk) for chunk in stream)

        def close() -> None:
            stream.close()
            call.saw_usage(stream.usage)  # known once the stream ended (Bedrock's metadata events)
            call.saw_model(request.model)

        events = sse.relay_events(_then_done(frames), call, close)
        return ClientResponse(
            200, [("Content-Type", sse.EVENT_STREAM), *sse.STREAM_HEADERS], events, stream.close
        )

    def complete(
        self, body: dict[str, Any], *, api_key: str | None = None, retries: int | None = None
    ) -> dict[str, Any]:
        """A chat completion the proxy composed; `api-key` does not apply to Bedrock (AWS credentials
        do), and its retries are botocore's own."""
        call = ProviderCall(PREFIX + str(body.get("model")), deployment=f"{NAME}/{body.get('model')}")
        with measured(call):
            answer = self.chat(body, relayed=False)
        call.finish(200, usage=answer["usage"], served_model=_model_id(str(body.get("model"))))
        return answer

    def models(self) -> list[dict[str, Any]]:
        return [_model(PREFIX + model_id) for model_id in self._listed]

    # --- Converse ------------------------------------------------------------------------------

    def chat(self, body: dict[str, Any], *, relayed: bool = True) -> dict[str, Any]:
        """The OpenAI `chat.completion` for `body` (its `model` a Bedrock id, `bedrock/` before it or
        not: the answer names it as the body did); `n` choices come from `n` concurrent calls."""
        model_id = _model_id(body["model"])
        n = choice_count(body)
        request = converse_request(body, model_id)
        client = self._boto(CONVERSE, model_id)

        def converse(_: object) -> dict[str, Any]:
            return self._call(client.converse, request, CONVERSE, model_id, relayed)

        if n == 1:
            responses = [converse(None)]
        else:
            # Under gevent's monkey-patching these threads are greenlets: the calls overlap.
            with ThreadPoolExecutor(max_workers=n, thread_name_prefix="bedrock") as pool:
                responses = list(pool.map(converse, range(n)))
        return chat_completion(responses, body["model"])

    def open_stream(self, body: dict[str, Any]) -> BedrockStream:
        """Start a streamed chat completion for `body`.

        Every ConverseStream call is opened here, so a refusal (bad request, access denied,
        throttling) raises before the caller has sent a status line. Failures after that are
        raised while iterating.
        """
        model_id = _model_id(body["model"])
        n = choice_count(body)
        request = converse_request(body, model_id)
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        client = self._boto(CONVERSE_STREAM, model_id)
        streams: list[Any] = []
        try:
            for _ in range(n):
                response = self._call(client.converse_stream, request, CONVERSE_STREAM, model_id, True)
                streams.append(response["stream"])
        except BaseException:
            _close_all(streams)
            raise
        writer = ChunkWriter(completion_id(), body["model"], int(time.time()), include_usage)
        return BedrockStream(
            streams, writer, lambda error: map_error(error, CONVERSE_STREAM, model_id, self._read_timeout)
        )

    def _boto(self, operation: str, model_id: str) -> Any:
        with self._lock:  # creating boto3 clients is not thread-safe; using one is
            if self._client is None:
                try:
                    self._client = self._factory()
                except Exception as error:
                    raise map_error(error, operation, model_id, self._read_timeout) from error
            return self._client

    def _call(
        self,
        method: Callable[..., dict[str, Any]],
        request: dict[str, Any],
        operation: str,
        model_id: str,
        relayed: bool,
    ) -> dict[str, Any]:
        try:
            return method(**request)
        except Exception as error:
            raise map_error(error, operation, model_id, self._read_timeout, relayed=relayed) from error


def _model_id(model: str) -> str:
    return model.removeprefix(PREFIX)


def _then_done(frames: Iterator[bytes]) -> Iterator[bytes]:
    yield from frames
    yield sse.DONE


def _model(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "amazon-bedrock"}


def _close_all(streams: list[Any]) -> None:
    for stream in streams:
        # Closing a broken connection may fail; there is nothing left to do then.
        with contextlib.suppress(Exception):
            stream.close()
