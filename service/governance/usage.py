"""Usage records: one structured log line per call to a provider, on the logger `service.usage`.

Every route that calls a provider (relayed requests and streams, Bedrock chats, grading, model
lists, the legacy routes) measures the call with one `ProviderCall`, which writes its record
exactly once, however the call ends, and adds what it used to the request's totals
(`service.core.request_state`), which the limits and the access line read.

Fields (top-level keys in JSON format): request_id, client, route, model, deployment, status,
stream, upstream_ms, latency_ms, first_token_ms (streams), prompt_tokens, completion_tokens,
total_tokens, cost_usd (when the model has a price), estimated (true when the tokens are an
estimate: a stream cut before the provider reported usage, or audio timed from its size), error
(what went wrong, if anything), for the media routes images, audio_seconds, characters or
batch_id (what the cost was counted from),
and purpose (`safety` for a call the proxy made to check the request: `service.safety`; such a
call's tokens and cost count against the client, but the request's model stays the one it asked),
and cache ("miss" when the answer cache was looked at). An answer from the cache
(`service.edge.caching`) has a record of its own, with cache "hit", cost_usd 0 and saved_usd, what
the answer cost when it was asked first (`cached_answer`).
A request that names an end user adds end_user (their keyed hash, never their id:
service.governance.end_users) and attributes (the token's configured claims: feature, lesson...).

Which model served, in full: `model_asked` (the request's `model`: an alias, a prefixed name),
`deployment` (`<provider>/<model id>`, what was sent) and `served_model` (the model the provider's
answer names, when it names one). `credential` is the name of the secret that paid for the call
(a client's own, or the upstream's; never its value), and `region` the request's, when known.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from service.core import request_state, shutdown
from service.core.errors import ProxyError, ServerStopping
from service.ops import lines

log = logging.getLogger("service.usage")

_USAGE_KEY = b'"usage"'
_MODEL_KEY = b'"model"'
_decoder = json.JSONDecoder()
# Why the proxy itself makes the calls in progress (None: the client asked for them).
_purpose: ContextVar[str | None] = ContextVar("aiproxy_usage_purpose", default=None)


@contextmanager
def purpose(name: str) -> Iterator[None]:
    """Calls made within are recorded with `purpose: name` (the safety checks')."""
    token = _purpose.set(name)
    try:
        yield
    finally:
        _purpose.reset(token)


def normalise_usage(usage: Any) -> dict[str, int] | None:
    """Token counts under the chat names; the Responses API's input/output names are mapped."""
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
    completion = usage.get("completion_tokens", usage.get("output_tokens"))
    total = usage.get("total_tokens")
    found = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}
    counts = {k: v for k, v in found.items() if isinstance(v, int) and not isinstance(v, bool)}
    details = usage.get("prompt_tokens_details", usage.get("input_tokens_details"))
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    if counts and isinstance(cached, int) and not isinstance(cached, bool) and cached > 0:
        counts["cached_tokens"] = cached
    return counts or None


def usage_in(data: bytes) -> dict[str, int] | None:
    """The token counts in a JSON body, found without parsing all of it (embeddings are large).

    Inside a JSON string every quote is escaped, so an unescaped `"usage"` followed by a colon is
    always a key; the last one wins because usage follows the content in every OpenAI answer.
    """
    end = len(data)
    while True:
        at = data.rfind(_USAGE_KEY, 0, end)
        if at < 0:
            return None
        rest = data[at + len(_USAGE_KEY) :].lstrip()
        if rest.startswith(b":"):
            try:
                value, _ = _decoder.raw_decode(rest[1:].lstrip().decode("utf-8", "replace"))
            except ValueError:
                value = None
            counts = normalise_usage(value)
            if counts:
                return counts
        end = at


def model_in(data: bytes) -> str | None:
    """The model an answer names (its first `"model"` key: OpenAI answers name it before their
    content), found without parsing the whole body."""
    at = data.find(_MODEL_KEY)
    while at >= 0:
        rest = data[at + len(_MODEL_KEY) : at + len(_MODEL_KEY) + 300].lstrip()
        if rest.startswith(b":"):
            try:
                value, _ = _decoder.raw_decode(rest[1:].lstrip().decode("utf-8", "replace"))
            except ValueError:
                value = None
            return value if isinstance(value, str) else None
        at = data.find(_MODEL_KEY, at + 1)
    return None


def event_usage(event: dict[str, Any]) -> dict[str, int] | None:
    """The token counts a streamed event carries: a chat or completion chunk's `usage`, or the
    `response.usage` of a Responses API event."""
    usage = normalise_usage(event.get("usage"))
    if usage is None and isinstance(event.get("response"), dict):
        usage = normalise_usage(event["response"].get("usage"))
    return usage


class ProviderCall:
    """One call to a provider, from the request the proxy sent to the end of the answer.

    Made while a request is handled (it reads the request's state then). `finish()` writes the
    usage record; only its first call counts, so every exit path may call it.
    """

    def __init__(
        self,
        model: str | None,
        *,
        deployment: str | None = None,
        stream: bool = False,
        prompt_estimate: int = 0,
    ) -> None:
        self.model = model
        self.deployment = deployment
        self.stream = stream
        self.prompt_estimate = prompt_estimate
        self.state = request_state.current()
        self.started = time.perf_counter()
        self.first_sent: float | None = None
        self.usage: dict[str, int] | None = None
        self.content_events = 0  # streamed events seen, the estimate of a cut stream's output
        self.finished = False
        self.purpose = _purpose.get()
        self.credential: str | None = None  # the secret that paid (note_credential)
        self.served_model: str | None = None  # the model the answer names

    def sent_bytes(self) -> None:
        """Some of the answer has gone to the client (the first time: time to first token)."""
        if self.first_sent is None:
            self.first_sent = time.perf_counter()

    def saw_usage(self, usage: dict[str, int] | None) -> None:
        if usage:
            self.usage = usage

    def saw_model(self, model: Any) -> None:
        """The model the provider says served (a stream names it in every chunk: the first counts)."""
        if self.served_model is None and isinstance(model, str):
            self.served_model = model[:200]

    def finish(
        self,
        status: int,
        *,
        usage: dict[str, int] | None = None,
        error: str | None = None,
        served_model: str | None = None,
        cost: float | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Write the record. `cost` is the call's price when it is not counted in tokens (images,
        audio, a batch); `details` are fields the record adds (images, audio_seconds, batch_id...)."""
        if self.finished:
            return
        self.saw_model(served_model)
        self.finished = True
        now = time.perf_counter()
        usage = usage or self.usage
        estimated = False
        if usage is None and self.stream and (self.content_events or error == "client_disconnected"):
            # Cut before the provider reported usage: charge what is known, never nothing. Chat
            # streams carry about one token per content event.
            usage = {"prompt_tokens": self.prompt_estimate, "completion_tokens": self.content_events}
            estimated = True
        state = self.state
        fields: dict[str, Any] = {
            "request_id": state.id if state else "-",
            "client": state.client if state else request_state.ANONYMOUS,
            "route": state.route_name if state else "-",
            "model": self.model,
            "model_asked": state.model_asked if state else None,
            "deployment": self.deployment,
            "served_model": self.served_model,
            "status": status,
            "stream": self.stream,
            "upstream_ms": round((now - self.started) * 1000, 1),
            "latency_ms": round((now - (state.started if state else self.started)) * 1000, 1),
        }
        if self.first_sent is not None:
            fields["first_token_ms"] = round(
                (self.first_sent - (state.started if state else self.started)) * 1000, 1
            )
        prompt = completion = 0
        if usage:
            prompt = usage.get("prompt_tokens", 0)
            completion = usage.get("completion_tokens", 0)
            fields["prompt_tokens"] = prompt
            fields["completion_tokens"] = completion
            fields["total_tokens"] = usage.get("total_tokens", prompt + completion)
            if estimated:
                fields["estimated"] = True
        prices = state.prices if state is not None else None  # the app's price table (service.config.prices)
        if cost is not None:
            fields["cost_usd"] = cost
        elif prices is not None and usage:
            names = [self.deployment, self.model]
            cost = prices.cost(names, prompt, completion, usage.get("cached_tokens", 0))
            if cost is not None:
                fields["cost_usd"] = cost
        if details:
            fields.update(details)
        if error:
            fields["error"] = error
        if self.purpose:
            fields["purpose"] = self.purpose
        if state is not None and state.cache:
            fields["cache"] = state.cache
        end_user = state.end_user if state is not None else None
        if end_user is not None:
            fields["end_user"] = end_user.hashed
            if end_user.attributes:
                fields["attributes"] = dict(end_user.attributes)
        if self.credential is not None:
            fields["credential"] = self.credential
        if state is not None and state.region is not None:
            fields["region"] = state.region
        if state is not None:
            self._add_to(state.used, fields, prompt, completion, cost, error)
        lines.write(log, "usage %s %s %s", (fields["route"], self.model or "-", status), fields)

    def _add_to(
        self,
        used: request_state.Usage,
        fields: dict[str, Any],
        prompt: int,
        completion: int,
        cost: float | None,
        error: str | None,
    ) -> None:
        used.calls += 1
        used.model = self.model or used.model
        used.deployment = self.deployment or used.deployment
        used.credential = self.credential or used.credential
        used.prompt_tokens += prompt
        used.completion_tokens += completion
        if cost is not None:
            used.cost_usd = (used.cost_usd or 0.0) + cost
        elif prompt or completion:
            used.unpriced = True
        used.upstream_ms = (used.upstream_ms or 0.0) + fields["upstream_ms"]
        if self.purpose:
            return  # a check's call: the request's model, first token and outcome are its own call's
        used.model = self.model or used.model
        used.deployment = self.deployment or used.deployment
        if "first_token_ms" in fields and used.first_token_ms is None:
            used.first_token_ms = fields["first_token_ms"]
        used.error = error


def cached_answer(
    model: str | None,
    deployment: str | None,
    *,
    stream: bool,
    prompt_tokens: int,
    completion_tokens: int,
    saved_usd: float | None,
) -> None:
    """The usage record of an answer from the cache: no provider call, nothing charged (the
    request's totals, which limits and budgets read, stay at zero, and so do its tokens here, so
    records add up to what was used); saved_tokens and saved_usd are what the first answer used."""
    state = request_state.current()
    fields: dict[str, Any] = {
        "request_id": state.id if state else "-",
        "client": state.client if state else request_state.ANONYMOUS,
        "route": state.route_name if state else "-",
        "model": model,
        "deployment": deployment,
        "status": 200,
        "stream": stream,
        "cache": "hit",
        "latency_ms": state.elapsed_ms() if state else 0.0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "total_tokens": 0,
        "cost_usd": 0.0,
        "saved_tokens": prompt_tokens + completion_tokens,
    }
    if saved_usd is not None:
        fields["saved_usd"] = saved_usd
    if state is not None:
        state.cache = "hit"
        state.saved_usd = saved_usd
    log.info("usage %s %s 200 cache hit", fields["route"], model or "-", extra=fields)


# The provider call being measured in this greenlet (`measured`), for `note_credential`.
_measuring: ContextVar[ProviderCall | None] = ContextVar("aiproxy_provider_call", default=None)


def note_credential(name: str) -> None:
    """Name the credential (a secret's name) that pays for the provider call being measured."""
    call = _measuring.get()
    if call is not None:
        call.credential = name


class measured:  # used as `with measured(call):`, like a function
    """Run a provider call; a ProviderError (or anything else) finishes its record as failed. A
    call cut by the server's shutdown (`service.core.shutdown`) raises ServerStopping, a 503.

    A class rather than a generator: it runs on every provider call, and a generator-based context
    manager costs several times as much to enter and leave."""

    __slots__ = ("_call", "_greenlet", "_token")

    def __init__(self, call: ProviderCall) -> None:
        self._call = call

    def __enter__(self) -> ProviderCall:
        self._token = _measuring.set(self._call)
        try:
            self._greenlet = shutdown.begin_provider_wait()
        except shutdown.Cut:
            _measuring.reset(self._token)
            raise self._stopped() from None
        return self._call

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: Any) -> None:
        shutdown.end_provider_wait(self._greenlet)
        _measuring.reset(self._token)
        if error is None:
            return
        if isinstance(error, shutdown.Cut):
            raise self._stopped() from None
        if isinstance(error, ProxyError):
            self._call.finish(error.status, error=error.kind)
        else:
            self._call.finish(500, error="exception")
        # Returning None: the error goes on as it was raised.

    def _stopped(self) -> ServerStopping:
        stopping = ServerStopping()
        self._call.finish(stopping.status, error=stopping.kind)
        return stopping
