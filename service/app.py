"""The app factory: settings, secrets, logging, the runtime, the request pipeline and every route."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import HTTPException, InternalServerError

from service.cache.entries import AnswerCache
from service.config.prices import PriceTable, shipped_prices
from service.config.secrets import HONEYBADGER_API_KEY, REDIS_AUTH, SecretStore
from service.config.settings import Settings, load_settings
from service.core import request_state
from service.core.errors import SERVER_ERROR_MESSAGE, ProxyError, RequestRejected, error_answer
from service.core.responses import ClientResponse, JsonRoute
from service.edge import openapi
from service.edge.caching import CachedRelay, check_cache
from service.edge.pipeline import RequestPipeline
from service.edge.routes import (
    assessment,
    audio,
    batches,
    files,
    images,
    limits,
    metrics,
    models,
    openai_api,
    safety,
    signing_keys,
    status,
)
from service.edge.signing import AnswerSigner
from service.gateway.routing import build_router
from service.governance.auth import ClientGate, ClientKeys
from service.governance.end_users import EndUserHasher
from service.governance.limits import Limiter, LocalLimiter
from service.governance.ownership import build_ownership
from service.ops.metrics import RequestMetrics
from service.ops.observability import configure_logging, install_honeybadger
from service.runtime import Runtime
from service.safety.check import Services
from service.safety.gate import SafetyGate
from service.safety.policies import SafetyPolicies
from service.safety.screen import PolicyScreen

log = logging.getLogger(__name__)

# Messages of the statuses Flask itself answers (no route, wrong method, ...).
_MESSAGES = {404: "No route matches this URL.", 500: SERVER_ERROR_MESSAGE}


class ProxyApp(Flask):
    """The Flask app, holding the runtime it was built with."""

    runtime: Runtime


class _JSONProvider(DefaultJSONProvider):
    """Flask's JSON, with bodies kept in the order they were built (rubric rows, errors), and
    nesting too deep for Python's parser treated as invalid JSON (a 400), not a crash (a 500)."""

    sort_keys = False

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None


def create_app(settings: Settings | None = None, secrets: SecretStore | None = None) -> ProxyApp:
    """Build the app from `settings` (default: environment, then config.txt)."""
    settings = settings or load_settings()
    configure_logging(settings.log_level, settings.log_format)
    secrets = secrets or SecretStore(
        settings.source, settings.environment_type, settings.environment, ttl=settings.secrets_ttl
    )
    keys = ClientKeys(secrets, settings)
    key_store = keys.load_at_start(settings.environment_type)  # stops start-up when a store is required
    policies = SafetyPolicies(secrets)
    policies.load_at_start(key_store)  # stops start-up on a bad policy, or a client naming none defined
    store = None
    if settings.redis_url:
        # redis-py, a sizeable library, is imported only by a server that has a store to talk to.
        from service.store.client import store_client

        store = store_client(
            settings.redis_url, lambda: secrets.get(REDIS_AUTH), cluster=settings.redis_cluster
        )
    router = build_router(settings, secrets, store)
    answers = build_answer_cache(store)
    runtime = Runtime(
        settings=settings,
        secrets=secrets,
        keys=keys,
        limiter=build_limiter(settings, store),
        router=router,
        prices=PriceTable({**shipped_prices(), **settings.prices}),
        safety=SafetyGate(policies, Services(router, settings.source, check_cache(answers))),
        answers=answers,
    )

    app = ProxyApp(__name__)
    app.runtime = runtime
    app.json = _JSONProvider(app)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    # `//` in a path is not folded into a redirect whose Location would be built from the Host header.
    app.url_map.merge_slashes = False
    _register_error_handlers(app)
    install_honeybadger(
        app,
        lambda: secrets.get(HONEYBADGER_API_KEY),
        rotates=secrets.uses_aws,
        endpoint=settings.honeybadger_endpoint,
        environment=settings.environment_type or "local",
        known_secrets=lambda: [*secrets.known_values(), settings.metrics_key or ""],
        force_sync=settings.source.get("HONEYBADGER_FORCE_SYNC", "").lower() in ("1", "true"),
    )

    @app.before_request
    def _name_the_route() -> None:
        state = request_state.current()
        if state is not None and request.url_rule is not None:
            state.route = request.url_rule.rule  # usage records and metrics name the route, not the path

    app.register_blueprint(status.blueprint)
    app.register_blueprint(openapi.blueprint)
    app.register_blueprint(models.blueprint(runtime))
    app.register_blueprint(assessment.blueprint(runtime))
    app.register_blueprint(limits.blueprint(runtime))
    app.register_blueprint(metrics.blueprint(settings.metrics_key))
    signer = AnswerSigner(secrets)
    app.register_blueprint(signing_keys.blueprint(signer))
    ownership = build_ownership(store)  # who owns which file and batch
    screen = PolicyScreen(runtime.safety)  # a client's safety policy on the image and audio routes
    app.register_blueprint(files.blueprint(runtime.router, ownership))
    app.register_blueprint(batches.blueprint(runtime.router, ownership, runtime.prices))
    # Each relayed route through the answer cache, for the clients whose entry turns it on.
    relay_routes: dict[str, JsonRoute] = {
        "/v1" + path: CachedRelay(
            openai_api.RelayRoute(path, runtime.router, runtime.safety), runtime.answers
        )
        for path in openai_api.PATHS
    }
    relay_routes[safety.PATH] = safety.SafetyCheckRoute(runtime.safety)
    relay_routes.update(images.routes(runtime.router, runtime.prices, screen))
    relay_routes.update(audio.routes(runtime.router, runtime.prices, screen))
    relay_routes[files.PATH] = files.FileUpload(runtime.router, ownership)
    app.wsgi_app = RequestPipeline(  # type: ignore[method-assign]
        app.wsgi_app,
        gate=ClientGate(keys, EndUserHasher(secrets)),
        limiter=runtime.limiter,
        routes=relay_routes,
        max_body=settings.max_body_bytes,
        max_upload=settings.max_upload_bytes,
        body_timeout=settings.body_timeout,
        output_estimate=settings.output_tokens_estimate,
        metrics=RequestMetrics(
            environment=settings.environment,
            emf=settings.log_format == "json",
            known_models=_configured_models(settings),
            route_of=_route_finder(app, relay_routes),
            count=_prometheus_count(settings),
        ),
        prices=runtime.prices,
        generating_paths=frozenset({"/assessment", "/test/assessment", "/test/openai"}),
        unmetered_paths=frozenset({limits.PATH}),
        signer=signer,
        region_header=settings.region_header,
    )
    return app


def _prometheus_count(settings: Settings) -> Callable[[dict[str, Any]], None] | None:
    """What adds a request's figures to the Prometheus metrics, only when `GET /metrics` can serve
    them: prometheus_client is imported only then (service.ops.prometheus)."""
    if not settings.metrics_key:
        return None
    from service.ops.prometheus import count

    return count


def build_limiter(settings: Settings, store: Any) -> Limiter:
    """Client limits counted in the shared store (AIPROXY_REDIS_URL), or in this process."""
    if store is None:
        return LocalLimiter()
    from service.governance.shared_limits import SharedLimiter  # with its store (see create_app)

    return SharedLimiter(
        store,
        LocalLimiter(),
        on_store_error=settings.limits_on_store_error,
        lease_seconds=settings.limits_lease_seconds,
        where=urlsplit(settings.redis_url or "").hostname or "",
    )


def build_answer_cache(store: Any) -> AnswerCache:
    """The answer cache's entries in the shared store (AIPROXY_REDIS_URL), or in this process."""
    if store is None:
        from service.store.answers import LocalAnswers

        return AnswerCache(LocalAnswers())
    from service.store.shared_answers import SharedAnswers  # with its store (see create_app)

    return AnswerCache(SharedAnswers(store))


def _configured_models(settings: Settings) -> set[str]:
    """Model names the configuration declares, as requests and usage records name them."""
    return {
        settings.assessment_model,
        *settings.model_aliases,
        *(model for alias in settings.model_aliases.values() for model in alias.models),
        *(f"bedrock/{model}" for model in settings.bedrock_models),
    }


def _route_finder(app: Flask, relay_routes: Iterable[str]) -> Callable[[str, str], str | None]:
    """The route template of a request that did not reach Flask's routing (refused before it, or
    a relay route), or None when no route matches: metrics never name a raw path."""
    relayed = frozenset(relay_routes)

    def route_of(method: str, path: str) -> str | None:
        if path in relayed:
            return path
        try:
            rule, _ = app.url_map.bind("localhost").match(path, method=method, return_rule=True)
        except Exception:  # no route, wrong method, a redirect: none is this request's route
            return None
        return rule.rule

    return route_of


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ProxyError)
    def _proxy_error(error: ProxyError) -> ClientResponse:
        return error_answer(error)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> ClientResponse:
        status = error.code or 500
        message = _MESSAGES.get(status) or error.description or error.name
        allowed = getattr(error, "valid_methods", None)  # set on 405 Method Not Allowed
        headers = {"Allow": ", ".join(allowed)} if allowed else None
        return error_answer(RequestRejected(message, status=status, headers=headers))

    # Registered for InternalServerError, not Exception, so Flask still logs the original
    # exception (which is how it reaches Honeybadger) before this shapes the answer.
    @app.errorhandler(InternalServerError)
    def _internal_error(error: InternalServerError) -> ClientResponse:
        return error_answer(ProxyError(SERVER_ERROR_MESSAGE))
