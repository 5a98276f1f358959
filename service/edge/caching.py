"""The answer cache at the edge: a request answered from it, or its answer kept for the next one.

`through_cache` is the one way a route uses the cache (`service.cache`): the relayed `/v1` routes
(`CachedRelay`, around `service.edge.routes.openai_api.RelayRoute`), `POST /assessment`, and any
route that asks a provider a question whose answer depends only on the question (the safety
checks' model calls, through `check_cache`: `kind="safety:<check>"`).

It does nothing for a client whose key store entry has no `cache`. For one that has: a hit is
answered from the entry, with `x-aiproxy-cache: hit` and `Age`, a usage record saying what it saved
(`service.governance.usage.cached_answer`) and nothing charged: the request was admitted as any
other (it counts in `rpm` and holds its in-flight slot), and settles with no tokens and no cost,
which frees the tokens admission reserved. A miss says `x-aiproxy-cache: miss`; its answer, when it is
finished (`service.cache.policy`) and small enough, is kept: a whole answer before it goes out, a
stream once it has (it goes to the client as it comes, copied on the way).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from service.cache.entries import AnswerCache, Entry, deployments_key
from service.cache.policy import finished_stream, finished_whole, plan, sampled
from service.cache.recording import CACHE_HEADER, MISS, Recording, replay
from service.cache.settings import CacheSettings
from service.core import request_state
from service.core.request_state import RequestState
from service.core.responses import ClientResponse, JsonRoute
from service.edge.routes.openai_api import DEPLOYMENT_HEADER, RelayRoute
from service.governance.usage import cached_answer, usage_in

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

    from service.store.connections import Along

# In a request's environ: the entry read `CachedRelay.read_ahead` had sent with the admission.
READ_AHEAD = "aiproxy.cache_read_ahead"


def question_key(
    cache: AnswerCache, state: RequestState, kind: str, model: str, body: Any, variant: str
) -> str:
    settings = state.cache_settings
    assert settings is not None
    # `variant`: what else decides the answer (the client's safety policy), so it is in the key too.
    return cache.key(settings.owner(state.client), f"{kind} {variant}" if variant else kind, model, body)


def through_cache(
    cache: AnswerCache | None,
    *,
    kind: str,
    model: str,
    body: Any,
    is_sampled: bool,
    cache_control: str | None,
    ask: Callable[[], ClientResponse],
    variant: str = "",
    ahead: tuple[str, Along | None] | None = None,
) -> ClientResponse:
    """The answer to `body` (a `kind` of question for `model`): from the cache when the client's
    entry turns it on and it has a usable entry, else `ask()`'s, kept when it may be. `ahead`:
    the key and the entry's read already sent with the admission (`CachedRelay.read_ahead`)."""
    state = request_state.current()
    settings: CacheSettings | None = state.cache_settings if state is not None else None
    if cache is None or state is None or settings is None:
        return ask()
    wanted = plan(settings, cache_control, is_sampled=is_sampled)
    key, along = ahead or (question_key(cache, state, kind, model, body, variant), None)
    if wanted.read:
        entry = cache.lookup(key, max_age=wanted.max_age, along=along)
        if entry is not None:
            prices = state.prices  # what the answer would cost now (service.config.prices)
            names = [entry.deployment, entry.model]
            tokens = (entry.prompt_tokens, entry.completion_tokens, entry.cached_tokens)
            saved = prices.cost(names, *tokens) if prices is not None else None
            cached_answer(
                entry.model,
                entry.deployment,
                stream=entry.stream,
                prompt_tokens=entry.prompt_tokens,
                completion_tokens=entry.completion_tokens,
                saved_usd=saved,
            )
            return replay(entry, entry.age(cache.clock()), DEPLOYMENT_HEADER)
    state.cache = MISS
    answer = ask()
    answer.headers.append((CACHE_HEADER, MISS))
    if wanted.write and answer.status == 200 and not answer.header("Content-Encoding"):
        _keep_when_sent(cache, key, kind, model, settings, state, answer)
    return answer


def check_cache(cache: AnswerCache) -> Callable[[str, str, Mapping[str, Any], Callable[[], bytes]], bytes]:
    """The cache as the safety checks use it (`service.safety.check.CheckCache`): a check's model
    call through `through_cache`, deterministic (`is_sampled=False`), whatever the request's
    `Cache-Control` says of its own answer. A check's hit or miss is its own: it writes its usage
    record (a hit's says what it saved), but does not make the request's answer a hit or a miss."""

    def cached(kind: str, model: str, body: Mapping[str, Any], ask: Callable[[], bytes]) -> bytes:
        state = request_state.current()
        if state is None or state.cache_settings is None:
            return ask()  # the common case: a client without a cache
        own = state.cache, state.saved_usd
        try:
            answer = through_cache(
                cache,
                kind=kind,
                model=model,
                body=body,
                is_sampled=False,
                cache_control=None,
                ask=lambda: ClientResponse.of_bytes(200, ask(), "application/json"),
            )
        finally:
            state.cache, state.saved_usd = own
        return answer.content()

    return cached


def _keep_when_sent(
    cache: AnswerCache,
    key: str,
    kind: str,
    model: str,
    settings: CacheSettings,
    state: RequestState,
    answer: ClientResponse,
) -> None:
    """Keep the answer if it may be: a whole answer (in memory) before it goes out, so the next
    request finds it even when it arrives at once; a stream copied as it goes out and kept once it
    is closed (after its usage record, which says what it cost)."""
    content_type = answer.header("Content-Type") or "application/json"
    stream = content_type.startswith("text/event-stream")

    def keep(data: bytes | None) -> None:
        if data is None or not (finished_stream(data) if stream else finished_whole(kind, data)):
            return
        deployment = answer.header(DEPLOYMENT_HEADER)  # `<provider>/<model>`, when a relay answered
        # The tokens the answer used: a whole answer says so in its body (the assessment in its
        # metadata); a stream's were counted by its usage record, written before this runs.
        used = usage_in(data) if not stream else None
        if used is None:
            counted = state.used
            used = {"prompt_tokens": counted.prompt_tokens, "completion_tokens": counted.completion_tokens}
        entry = Entry(
            body=data,
            content_type=content_type,
            stored_at=cache.clock(),
            stream=stream,
            model=deployment.partition("/")[2] if deployment else model,
            deployment=deployment,
            prompt_tokens=used.get("prompt_tokens", 0),
            completion_tokens=used.get("completion_tokens", 0),
            cached_tokens=used.get("cached_tokens", 0),
        )
        cache.keep(key, entry, settings.ttl_s)

    if isinstance(answer.body, list | tuple):
        data = b"".join(answer.body)
        keep(data if len(data) <= settings.max_answer_bytes else None)
        return
    recording = Recording(answer.body, settings.max_answer_bytes)
    answer.body = recording
    answer.also_on_close(lambda: keep(recording.kept()))


def resolved_model(route: RelayRoute, model: Any) -> str:
    """What `model` routes to (`deployments_key`)."""
    if not isinstance(model, str) or not model:
        return ""
    return deployments_key(deployment.name for deployment in route.router.deployments(model))


class CachedRelay(JsonRoute):
    """A relayed `/v1` route through the answer cache (a Responses API request only when it is not
    stored by the provider, `"store": false`: a stored one has a life of its own upstream)."""

    def __init__(self, route: RelayRoute, cache: AnswerCache) -> None:
        self.route = route
        self.cache = cache
        self.generates = route.generates
        self.kind = "/v1" + route.path

    def __call__(self, body: dict[str, Any], raw: bytes, environ: WSGIEnvironment) -> ClientResponse:
        state = request_state.current()
        if state is None or state.cache_settings is None:
            return self.route(body, raw, environ)  # the common case: a client without a cache
        if not self._cacheable(body):
            return self.route(body, raw, environ)
        return through_cache(
            self.cache,
            kind=self.kind,
            model=resolved_model(self.route, body.get("model")),
            body=body,
            is_sampled=sampled(body),
            cache_control=environ.get("HTTP_CACHE_CONTROL"),
            ask=lambda: self.route(body, raw, environ),
            variant=self._variant(),
            ahead=environ.get(READ_AHEAD),
        )

    def read_ahead(self, body: dict[str, Any], environ: dict[str, Any]) -> Along | None:
        """The entry's read, sent with the request's admission when the limits share the cache's
        store: a hit then waits for one round trip, not two."""
        state = request_state.current()
        if state is None or state.cache_settings is None or not self._cacheable(body):
            return None
        cache_control = environ.get("HTTP_CACHE_CONTROL")
        if not plan(state.cache_settings, cache_control, is_sampled=sampled(body)).read:
            return None
        model = resolved_model(self.route, body.get("model"))
        key = question_key(self.cache, state, self.kind, model, body, self._variant())
        along = self.cache.along(key)
        environ[READ_AHEAD] = (key, along)
        return along

    def _cacheable(self, body: dict[str, Any]) -> bool:
        return self.route.path != "/responses" or body.get("store") is False

    def _variant(self) -> str:
        return self.route.safety.fingerprint() if self.route.safety is not None else ""
